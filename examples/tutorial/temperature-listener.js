/**
 * The tutorial's Node.js listener: spawns the Python sensor and collects its readings.
 *
 *     node examples/tutorial/temperature-listener.js [--interval S] [--count N] [--seed S] [--json]
 *
 * What the tutorial got wrong: it did `parseFloat(data)` on each chunk of the child's stdout. A
 * chunk is whatever the pipe delivered, not one reading: two readings in one chunk became one
 * (the second lost), and a reading split across two chunks became two wrong numbers. Here the
 * bytes go through bothways' Decoder, which cuts them into lines whatever the chunking, parses
 * each line as JSON, and reports a bad line (with its line number) instead of guessing.
 *
 * The sensor's flags are passed on; `--json` prints only the final list, as one JSON line, when
 * the sensor ends. The Python interpreter is $BOTHWAYS_PYTHON, or python3. The exit code is the
 * sensor's.
 */

import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { Decoder, Messages } from "../../js/src/index.js";
import { flags as readFlags } from "./flags.js";

const flags = readFlags("Spawns sensor.py and prints the readings it sends, framed by bothways' Decoder.", {
  interval: { type: "string", help: "passed on to sensor.py: seconds between readings" },
  count: { type: "string", help: "passed on to sensor.py: stop after N readings" },
  seed: { type: "string", help: "passed on to sensor.py: seed its generator" },
  json: { type: "boolean", default: false, help: "print only the final list, as one JSON line" },
});
const sensorFlags = ["interval", "count", "seed"].flatMap((name) =>
  flags[name] === undefined ? [] : [`--${name}`, flags[name]],
);

// The tutorial's spawn('python', ['sensor.py']) only works from the sensor's own directory.
const python = process.env.BOTHWAYS_PYTHON || "python3";
const script = fileURLToPath(new URL("sensor.py", import.meta.url));
const sensor = spawn(python, ["-u", script, ...sensorFlags], { stdio: ["ignore", "pipe", "inherit"] });

const readings = [];
const decoder = new Decoder();

function show(list) {
  const last = list.slice(-10); // the array as it grows; only its end once it is long
  return `readings (${list.length}): [${list.length > last.length ? "…, " : ""}${last.join(", ")}]`;
}

function handle(events) {
  for (const event of events) {
    if (!(event instanceof Messages)) {
      console.error(`sensor.py sent a bad line: ${event.error.message}`); // Malformed or Truncated
      continue;
    }
    for (const [i, value] of event.values.entries()) {
      if (typeof value !== "number") {
        console.error(`sensor.py line ${event.line + i}: not a temperature: ${JSON.stringify(value)}`);
        continue;
      }
      readings.push(value);
      if (!flags.json) console.log(show(readings));
    }
  }
}

sensor.stdout.on("data", (chunk) => handle(decoder.feed(chunk)));
sensor.stdout.on("end", () => handle(decoder.feedEof()));
sensor.on("error", (error) => {
  console.error(`cannot run ${python}: ${error.message} (set BOTHWAYS_PYTHON)`);
  process.exitCode = 127;
});
sensor.on("close", (code, signal) => {
  if (flags.json) console.log(JSON.stringify(readings));
  process.exitCode ??= code ?? 128 + (constants.signals[signal] ?? 0);
});

// Ctrl-C or kill: stop the sensor too, then exit with its status (the "close" handler above).
for (const name of ["SIGINT", "SIGTERM"]) {
  process.on(name, () => sensor.kill(name));
}
