/**
 * The tutorial's Node programs read their flags here: `--help` prints what the program does and
 * its options (as the Python programs' argparse does), and a wrong flag prints the usage and
 * exits 2 instead of a stack trace.
 */

import { basename } from "node:path";
import { parseArgs } from "node:util";

/**
 * @param {string} description one line: what the program does.
 * @param {Record<string, {type: "string" | "boolean", default?: string | boolean, help: string}>} options
 * @returns {Record<string, string | boolean | undefined>} the flags given.
 */
export function flags(description, options) {
  const program = basename(process.argv[1]);
  const usage = [
    `usage: node ${program} [--help]${Object.entries(options)
      .map(([name, o]) => ` [--${name}${o.type === "string" ? ` ${name.toUpperCase()}` : ""}]`)
      .join("")}`,
    "",
    description,
    "",
    "options:",
    "  --help            show this help message and exit",
    ...Object.entries(options).map(([name, o]) => {
      const flag = `--${name}${o.type === "string" ? ` ${name.toUpperCase()}` : ""}`;
      return `  ${flag.length < 18 ? flag.padEnd(18) : `${flag}  `}${o.help}`;
    }),
  ].join("\n");
  const spec = Object.fromEntries(
    Object.entries(options).map(([name, o]) => [name, { type: o.type, default: o.default }]),
  );
  let values;
  try {
    ({ values } = parseArgs({ options: { ...spec, help: { type: "boolean", default: false } } }));
  } catch (error) {
    process.stderr.write(`${usage}\n\n${program}: error: ${error.message}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  return values;
}
