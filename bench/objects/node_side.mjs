// Node using a Python module's objects, one way and one group per run (driven by bench/objects.py):
//
//   node node_side.mjs WAY GROUP PYTHON COUNTS_JSON
//
// WAY: ours (python.import("fixture"), served from this folder) or pythonia (JSPyBridge's Node
// side, importing the same fixture.py by path).
// GROUP: "latency" (a method on a handle, sequential: p50/p99; making objects and letting them go
// or releasing them; callbacks the Python side calls one after the other: µs each), run pinned
// to one CPU by the parent; "stream" (a generator pulled: items/s); "transfer" (100 MB of bytes
// and 80 MB of float64 both ways, the floats also as a list of JSON numbers: seconds each).
// COUNTS: {"warmup", "calls", "objects", "callbacks", "stream", "bytes", "floats"}.
// Prints one JSON line of results, or {"missing": name, "error": text}.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { release } from "../../js/src/objects.js";
import { importModule } from "../../js/src/python.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const [way, group, python, countsText] = process.argv.slice(2);
const COUNTS = JSON.parse(countsText);
// the comparison libraries are development dependencies of js/: resolve them from there
const requireFromJs = createRequire(new URL("../../js/package.json", import.meta.url));

const clock = () => process.hrtime.bigint();
const micros = (/** @type {bigint} */ ns) => Number(ns) / 1000;
const seconds = (/** @type {bigint} */ start) => Number(clock() - start) / 1e9;

/**
 * p50 and p99 of `calls` sequential calls of `one`, after `warmup` unmeasured ones.
 * @param {() => Promise<unknown>} one
 */
async function latencies(one, warmup, calls) {
  for (let i = 0; i < warmup; i += 1) await one();
  const times = new Float64Array(calls);
  for (let i = 0; i < calls; i += 1) {
    const start = clock();
    await one();
    times[i] = micros(clock() - start);
  }
  times.sort();
  return { p50: times[calls >> 1], p99: times[Math.floor(calls * 0.99)] };
}

/** µs per step of `n` steps of `step(i)`, one after the other (after n/4 unmeasured ones). */
async function perStep(step, n) {
  for (let i = 0; i < n >> 2; i += 1) await step(i);
  const start = clock();
  for (let i = 0; i < n; i += 1) await step(i);
  return micros(clock() - start) / n;
}

function expect(got, wanted, what) {
  if (got !== wanted) throw new Error(`${what}: got ${got}, wanted ${wanted}`);
}

/** The latency group, through a module handle `m` (ours or pythonia's), `slow`: fewer calls. */
async function latencyGroup(m, { releaseOne, slow }) {
  const scale = slow ? COUNTS.slow / COUNTS.calls : 1;
  const calls = Math.max(100, Math.round(COUNTS.calls * scale));
  const counter = await m.Counter(0);
  const method = await latencies(() => counter.add(1), Math.round(COUNTS.warmup * scale), calls);
  expect(await counter.add(0), Math.round(COUNTS.warmup * scale) + calls, "counter");
  const objects = Math.max(100, Math.round(COUNTS.objects * scale));
  const letGo = await perStep(async () => {
    await m.Counter(1);
  }, objects);
  const released =
    releaseOne === null
      ? null
      : await perStep(async () => {
          releaseOne(await m.Counter(1));
        }, objects);
  const callbacks = Math.max(100, Math.round(COUNTS.callbacks * scale));
  await m.call_back((/** @type {number} */ i) => i, callbacks >> 2); // warm-up
  const start = clock();
  expect(await m.call_back((/** @type {number} */ i) => i, callbacks), (callbacks * (callbacks - 1)) / 2, "call_back");
  const callback = micros(clock() - start) / callbacks;
  return { method, let_go: letGo, released, callback };
}

/** items/s pulling `n` items of the Python generator. */
async function streamGroup(m, n) {
  const start = clock();
  let count = 0;
  let total = 0;
  for await (const item of await m.numbers(n)) {
    count += 1;
    total += item;
  }
  expect(count, n, "items");
  expect(total, (n * (n - 1)) / 2, "sum");
  return { stream: n / seconds(start) };
}

/** Seconds for each one-way transfer, Python -> Node (`*_in`) and Node -> Python (`*_out`). */
async function transferGroup(m) {
  await m.prepare(COUNTS.bytes, COUNTS.floats);
  const buffer = Buffer.alloc(COUNTS.bytes, 7);
  const floats = new Float64Array(COUNTS.floats).map((_, i) => i * 0.25 + 0.1);
  const list = Array.from(floats);
  const out = {};
  let start = clock();
  const bytes = await m.data();
  out.bytes_in = seconds(start);
  expect(bytes.length, COUNTS.bytes, "bytes in");
  start = clock();
  expect(await m.size(buffer), COUNTS.bytes, "bytes out");
  out.bytes_out = seconds(start);
  start = clock();
  const array = await m.floats();
  out.floats_in = seconds(start);
  expect(array.length, COUNTS.floats, "floats in");
  expect(array instanceof Float64Array, true, "a Float64Array");
  start = clock();
  const numbers = await m.float_list();
  out.list_in = seconds(start);
  expect(numbers.length, COUNTS.floats, "list in");
  start = clock();
  expect(await m.size(floats), COUNTS.floats, "floats out");
  out.floats_out = seconds(start);
  start = clock();
  expect(await m.size(list), COUNTS.floats, "list out");
  out.list_out = seconds(start);
  return out;
}

async function ours() {
  const m = await importModule("fixture", { python, cwd: HERE, stderr: "keep" });
  try {
    if (group === "latency") return await latencyGroup(m, { releaseOne: release, slow: false });
    if (group === "stream") return await streamGroup(m, COUNTS.stream);
    return await transferGroup(m);
  } finally {
    await m.close();
  }
}

async function pythonia() {
  let bridge;
  try {
    bridge = requireFromJs("pythonia");
  } catch (error) {
    return { missing: "pythonia (npm)", error: String(error) };
  }
  process.env.PYTHON_BIN = python;
  const m = await bridge.python(`${HERE}/fixture.py`);
  try {
    // pythonia has no explicit release: its proxies are let go of by the garbage collector
    if (group === "latency") return await latencyGroup(m, { releaseOne: null, slow: true });
    if (group === "stream") return await streamGroup(m, COUNTS.slow_stream);
    return {};
  } finally {
    bridge.python.exit();
  }
}

process.stdout.write(`${JSON.stringify(await { ours, pythonia }[way]())}\n`);
process.exit(0);
