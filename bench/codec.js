// Codec benchmark for the JavaScript wire core (a benchmark, not a test).
//
// Compares bothways' encode() and Decoder with the bare built-ins they wrap, in messages/s:
//   encode  : encode(v)                          vs JSON.stringify(v) + "\n"
//   decode  : Decoder.feed() over 64 KiB chunks  vs JSON.parse() over pre-split line strings
// for small messages (one reading) and large ones (~100 KB: an object holding ~1000 readings).
// Each measurement runs for about a second, ours and the reference interleaved in 100 ms
// slices (so both see the same background load); three rounds, best of each kept. Targets: decode >= 70 %, encode >= 80 % of the reference (small).
//
// Usage: node bench/codec.js [--json PATH] [--seconds S]
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { Decoder, encode } from "../js/src/index.js";

const { values: args } = parseArgs({
  options: { json: { type: "string" }, seconds: { type: "string", default: "1" } },
});
const SECONDS = Number(args.seconds);
const ROUNDS = 3;
const SLICES = 10; // ours and the reference alternate every SECONDS / SLICES
const CHUNK = 64 * 1024;
const STREAM_BYTES = 20 * 1000 * 1000;

/** @param {number} n */
function reading(n) {
  return { sensor: `s${n % 10}`, seq: n, t: 1732470000.123 + n / 10, celsius: Math.round((n % 2000) - 500) / 100 + 0.01 };
}

/** @param {number} n about 100 KB: 1000 readings from greenhouse probes */
function batch(n) {
  const readings = [];
  for (let i = 0; i < 1000; i++) {
    const r = reading(n * 1000 + i);
    readings.push({ ...r, sensor: `greenhouse-${i % 4}/probe-${i % 16}`, battery: 0.5 + (i % 50) / 100 });
  }
  return { batch: n, source: "bench/codec.js", unit: "celsius", readings };
}

/**
 * Measures ours and the reference for about SECONDS each, alternating in short slices so that
 * both see the same machine (other processes, GC, CPU frequency); returns messages/s of each.
 * @param {{ours: () => void, reference: () => void, count: number}} c `ours` and `reference`
 *   each handle `count` messages per call.
 */
function measure(c) {
  c.ours(); // warm-up
  c.reference();
  const sides = [
    { run: c.ours, done: 0, time: 0 },
    { run: c.reference, done: 0, time: 0 },
  ];
  const slice = (SECONDS * 1000) / SLICES;
  for (let i = 0; i < SLICES; i++) {
    for (const side of sides) {
      const start = performance.now();
      let elapsed = 0;
      do {
        side.run();
        side.done += c.count;
        elapsed = performance.now() - start;
      } while (elapsed < slice);
      side.time += elapsed;
    }
  }
  return sides.map((side) => (side.done * 1000) / side.time);
}

let sink = 0; // keeps results alive

/** @param {object[]} values */
function encodeCase(values) {
  return {
    ours: () => {
      for (let i = 0; i < values.length; i++) sink += encode(values[i]).length;
    },
    reference: () => {
      for (let i = 0; i < values.length; i++) sink += (JSON.stringify(values[i]) + "\n").length;
    },
    count: values.length,
  };
}

/** @param {(n: number) => object} make */
function decodeCase(make) {
  const lines = [];
  let size = 0;
  for (let n = 0; size < STREAM_BYTES; n++) {
    const line = JSON.stringify(make(n));
    lines.push(line);
    size += Buffer.byteLength(line) + 1;
  }
  const stream = Buffer.from(lines.join("\n") + "\n");
  const chunks = [];
  for (let at = 0; at < stream.length; at += CHUNK) chunks.push(stream.subarray(at, at + CHUNK));
  return {
    ours: () => {
      const decoder = new Decoder();
      for (const chunk of chunks) {
        for (const event of decoder.feed(chunk)) sink += event.values.length;
      }
    },
    reference: () => {
      for (let i = 0; i < lines.length; i++) sink += JSON.parse(lines[i]) === null ? 0 : 1;
    },
    count: lines.length,
  };
}

const small = [];
for (let n = 0; n < 10000; n++) small.push(reading(n));
const large = [];
for (let n = 0; n < 20; n++) large.push(batch(n));

const cases = [
  ["encode small", encodeCase(small)],
  ["decode stream small", decodeCase(reading)],
  ["encode large", encodeCase(large)],
  ["decode stream large", decodeCase(batch)],
];

const rows = [];
for (const [name, c] of cases) {
  let ours = 0;
  let reference = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const [o, r] = measure(c);
    ours = Math.max(ours, o);
    reference = Math.max(reference, r);
  }
  rows.push({ name, ours: Math.round(ours), reference: Math.round(reference), ratio: Number((ours / reference).toFixed(3)) });
}

const largeBytes = Buffer.byteLength(JSON.stringify(large[0]));
console.log(`node ${process.version}, ${SECONDS}s per measurement, best of ${ROUNDS}; large message = ${largeBytes} bytes`);
console.log(`${"case".padEnd(22)}${"ours msg/s".padStart(14)}${"reference msg/s".padStart(18)}${"ratio".padStart(8)}`);
for (const row of rows) {
  console.log(
    `${row.name.padEnd(22)}${row.ours.toLocaleString("en").padStart(14)}` +
      `${row.reference.toLocaleString("en").padStart(18)}${(row.ratio * 100).toFixed(0).padStart(7)}%`,
  );
}
if (args.json) {
  writeFileSync(args.json, JSON.stringify({ language: "js", rows }, null, 2) + "\n");
}
if (sink === -1) console.log(sink);
