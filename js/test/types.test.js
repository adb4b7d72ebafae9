// The TypeScript declarations, as a TypeScript user gets them: generated from the JSDoc with
// tsconfig.types.json (what `npm run types` runs at pack time) into a temporary
// node_modules/bothways next to the fixtures of test/types/, then resolved through the package's
// `exports` map ("types" condition, `moduleResolution: nodenext`) and type-checked with
// `tsc --noEmit`, library files included (`skipLibCheck: false`, no @types/node): the README's
// uses compile, and each wrong use in misuse.ts is an error on its own line.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, posix, relative, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const JS = resolve(fileURLToPath(import.meta.url), "../..");
const FIXTURES = join(JS, "test", "types");
const TSC = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const PACKAGE = JSON.parse(readFileSync(join(JS, "package.json"), "utf8"));

/** What the consumer's tsconfig says: a plain strict ESM project, without @types/node. */
const CONSUMER_OPTIONS = {
  strict: true,
  noEmit: true,
  target: "es2022",
  lib: ["es2023", "esnext.disposable", "dom"],
  module: "nodenext",
  moduleResolution: "nodenext",
  types: ["node"], // a Node user has @types/node (the transports name Node's types)
  skipLibCheck: false,
};

/**
 * Runs tsc with `args` in `cwd`.
 * @param {string[]} args
 * @param {string} cwd
 * @returns {Promise<{code: number, output: string}>} the exit code, stdout and stderr together.
 */
function tsc(args, cwd) {
  return new Promise((done) => {
    execFile(process.execPath, [TSC, ...args], { cwd, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
      done({ code, output: `${stdout}${stderr}` });
    });
  });
}

/**
 * The errors tsc reported in `file`: line number and TS code of each (`--pretty false` output).
 * @param {string} output
 * @param {string} file
 * @returns {{line: number, code: string, text: string}[]}
 */
function errorsIn(output, file) {
  const pattern = new RegExp(`^${file.replace(".", "\\.")}\\((\\d+),\\d+\\): error (TS\\d+): (.*)$`, "gm");
  return [...output.matchAll(pattern)].map((m) => ({ line: Number(m[1]), code: m[2], text: m[3] }));
}

/**
 * Every file under `dir` whose name ends with `suffix`, as paths relative to `dir`.
 * @param {string} dir
 * @param {string} suffix
 * @returns {string[]}
 */
function filesUnder(dir, suffix) {
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((name) => name.endsWith(suffix))
    .sort();
}

describe("TypeScript declarations", { timeout: 60_000 * UNIT }, () => {
  /** @type {string} */
  let project;
  /** @type {string} */
  let types;
  /** @type {{code: number, output: string}} */
  let generated;

  before(async () => {
    project = mkdtempSync(join(tmpdir(), "bothways-types-"));
    const installed = join(project, "node_modules", "bothways");
    mkdirSync(installed, { recursive: true });
    copyFileSync(join(JS, "package.json"), join(installed, "package.json"));
    symlinkSync(join(JS, "src"), join(installed, "src"), "dir");
    // A TypeScript user on Node has Node's own declarations (the transports' types name them).
    mkdirSync(join(project, "node_modules", "@types"), { recursive: true });
    symlinkSync(join(JS, "node_modules", "@types", "node"), join(project, "node_modules", "@types", "node"), "dir");
    types = join(installed, "types");
    generated = await tsc(["-p", join(JS, "tsconfig.types.json"), "--outDir", types, "--pretty", "false"], JS);
    writeFileSync(join(project, "package.json"), JSON.stringify({ private: true, type: "module" }));
    for (const name of ["usage.ts", "misuse.ts"]) {
      copyFileSync(join(FIXTURES, name), join(project, name));
    }
    // Every subpath of the exports map imported once: each declaration file is checked.
    const subpaths = Object.keys(PACKAGE.exports).filter((key) => key !== "./package.json");
    const imports = subpaths.map((key, i) => `import * as m${i} from "${posix.join("bothways", key)}";`);
    const uses = `export const modules = [${subpaths.map((_, i) => `m${i}`).join(", ")}];`;
    writeFileSync(join(project, "subpaths.ts"), `${imports.join("\n")}\n${uses}\n`);
    for (const [name, files] of [
      ["tsconfig.usage.json", ["usage.ts", "subpaths.ts"]],
      ["tsconfig.misuse.json", ["misuse.ts"]],
    ]) {
      writeFileSync(join(project, name), JSON.stringify({ compilerOptions: CONSUMER_OPTIONS, files }));
    }
  });

  after(() => {
    if (project !== undefined) {
      rmSync(project, { recursive: true, force: true });
    }
  });

  test("tsc generates them from the JSDoc, without an error", () => {
    assert.equal(generated.code, 0, generated.output);
    assert.equal(generated.output, "");
    const sources = filesUnder(join(JS, "src"), ".js").map((name) => name.replace(/\.js$/, ".d.ts"));
    assert.deepEqual(filesUnder(types, ".d.ts"), sources);
  });

  test("the exports map gives each subpath its declarations, types condition first", () => {
    assert.equal(PACKAGE.types, PACKAGE.exports["."].types);
    for (const [key, target] of Object.entries(PACKAGE.exports)) {
      if (key === "./package.json") {
        assert.equal(target, "./package.json");
        continue;
      }
      assert.deepEqual(Object.keys(target), ["types", "default"], key);
      assert.match(target.default, /^\.\/src\/.*\.js$/, key);
      assert.equal(target.types, target.default.replace(/^\.\/src\//, "./types/").replace(/\.js$/, ".d.ts"), key);
      assert.ok(existsSync(join(JS, target.default)), `${key}: ${target.default}`);
      assert.ok(existsSync(join(types, relative("./types", target.types))), `${key}: ${target.types}`);
    }
  });

  test("the README's uses compile, every subpath resolves", async () => {
    assert.equal(generated.code, 0, generated.output);
    const { code, output } = await tsc(["-p", "tsconfig.usage.json", "--pretty", "false"], project);
    assert.equal(output, "");
    assert.equal(code, 0);
  });

  test("wrong uses do not compile, each on its own line", async () => {
    assert.equal(generated.code, 0, generated.output);
    const { code, output } = await tsc(["-p", "tsconfig.misuse.json", "--pretty", "false"], project);
    assert.notEqual(code, 0, "tsc accepted misuse.ts");
    const source = readFileSync(join(FIXTURES, "misuse.ts"), "utf8").split("\n");
    const marked = source.flatMap((text, i) => (/^\s*[^/\s].*\/\/ wrong:/.test(text) ? [i + 1] : []));
    assert.ok(marked.length >= 10, `only ${marked.length} wrong lines`);
    const errors = errorsIn(output, "misuse.ts");
    const reported = [...new Set(errors.map((error) => error.line))].sort((a, b) => a - b);
    assert.deepEqual(reported, marked, output);
    assert.equal(output.match(/error TS\d+/g)?.length, errors.length, `errors outside misuse.ts:\n${output}`);
  });
});
