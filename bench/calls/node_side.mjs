// Node calling add(a, b) in a Python child, one way per run (driven by bench/calls.py):
//
//   node node_side.mjs WAY PYTHON WARMUP CALLS PIPELINED
//
// WAY:
//   ours       python.import("add"): a plain `def add`, served by the host without an event loop
//              (a blocking read), over the channel socket python.import makes.
//   ours-async python.import("add_async"): `async def add` on the host's event loop.
//   ours-threads  python.import("add", {threads: 4}): `def add` run in the host's thread pool.
//   pipe       our Peer to our asyncio Peer over the child's stdio pipe: bench/calls/serve.py
//              serves a plain `def add`, called inline as each request is decoded.
//   raw        a pipe ping-pong of the same bytes, no JSON-RPC; asyncio on the Python side.
//   raw-blocking  the same with blocking os.read/os.write on the Python side.
//   pythonia   JSPyBridge's Node side.   pyshell   python-shell's JSON mode.
// Prints one JSON line: {"p1": us, "p10", "p25", "p50", "p75", "p90", "p99", "rate": calls/s or
// null} (sequential round trips, then PIPELINED calls in flight at once), or {"missing": name, "error": text} when a comparison
// library is not installed.
import { spawn as rawSpawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { Peer } from "../../js/src/peer.js";
import { importModule } from "../../js/src/python.js";
import { spawn } from "../../js/src/transports/stdio.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const [way, python, warmupText, callsText, pipelinedText] = process.argv.slice(2);
const WARMUP = Number(warmupText);
const CALLS = Number(callsText);
const PIPELINED = Number(pipelinedText);
// the comparison libraries are development dependencies of js/: resolve them from there
const requireFromJs = createRequire(new URL("../../js/package.json", import.meta.url));
export const REQUEST = '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}';
export const ANSWER = '{"jsonrpc":"2.0","result":3,"id":1}';

/**
 * Sequential round trips (after WARMUP unmeasured ones), then PIPELINED calls at once.
 * @param {(i: number) => Promise<unknown>} one a round trip.
 * @param {((n: number) => Promise<void>) | null} many PIPELINED calls in flight together.
 */
async function measure(one, many) {
  for (let i = 0; i < WARMUP; i++) {
    await one(i);
  }
  const latencies = new Float64Array(CALLS);
  for (let i = 0; i < CALLS; i++) {
    const start = process.hrtime.bigint();
    await one(i);
    latencies[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  latencies.sort();
  let rate = null;
  if (many !== null && PIPELINED > 0) {
    const start = process.hrtime.bigint();
    await many(PIPELINED);
    rate = PIPELINED / (Number(process.hrtime.bigint() - start) / 1e9);
  }
  const result = { rate };
  for (const q of [1, 10, 25, 50, 75, 90, 99]) {
    result[`p${q}`] = latencies[Math.floor((CALLS * q) / 100)];
  }
  return result;
}

/** @param {number} i */
function check(result, i) {
  if (result !== i + 1) {
    throw new Error(`add(${i}, 1) gave ${result}`);
  }
}

/**
 * @param {string} module
 * @param {number} threads
 */
async function ours(module, threads = 0) {
  const m = await importModule(module, { python, cwd: HERE, stderr: "keep", threads });
  try {
    return await measure(
      async (i) => check(await m.add(i, 1), i),
      async (n) => {
        const results = await Promise.all(Array.from({ length: n }, (_, i) => m.add(i, 1)));
        results.forEach(check);
      },
    );
  } finally {
    await m.close();
  }
}

async function pipe() {
  const child = spawn([python, `${HERE}/serve.py`], { stderr: "keep" });
  const peer = await new Peer(child).start();
  try {
    return await measure(
      async (i) => check(await peer.call("add", i, 1), i),
      async (n) => {
        const results = await Promise.all(Array.from({ length: n }, (_, i) => peer.call("add", i, 1)));
        results.forEach(check);
      },
    );
  } finally {
    await peer.close();
  }
}

/** @param {string} script */
async function raw(script = "echo_asyncio.py") {
  const child = rawSpawn(python, [`${HERE}/${script}`, ANSWER], { stdio: ["pipe", "pipe", "inherit"] });
  const request = Buffer.from(`${REQUEST}\n`);
  let wanted = 0;
  let wake = () => {};
  child.stdout.on("data", (chunk) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
      wanted--;
    }
    if (wanted <= 0) {
      wake();
    }
  });
  const exchange = (/** @type {number} */ n) =>
    new Promise((resolve) => {
      wanted = n;
      wake = resolve;
      child.stdin.write(n === 1 ? request : Buffer.concat(Array(n).fill(request)));
    });
  try {
    return await measure(
      () => exchange(1),
      (n) => exchange(n),
    );
  } finally {
    child.stdin.end();
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
  const m = await bridge.python(`${HERE}/add.py`);
  try {
    return await measure(
      async (i) => check(await m.add(i, 1), i),
      async (n) => {
        const results = await Promise.all(Array.from({ length: n }, (_, i) => m.add(i, 1)));
        results.forEach(check);
      },
    );
  } finally {
    bridge.python.exit();
  }
}

async function pyshell() {
  let PythonShell;
  try {
    ({ PythonShell } = requireFromJs("python-shell"));
  } catch (error) {
    return { missing: "python-shell (npm)", error: String(error) };
  }
  const shell = new PythonShell(`${HERE}/pyshell_add.py`, { mode: "json", pythonPath: python });
  /** @type {unknown[]} */
  let answers = [];
  let wanted = 0;
  let wake = () => {};
  shell.on("message", (message) => {
    answers.push(message);
    if (answers.length >= wanted) {
      wake();
    }
  });
  const exchange = (/** @type {number} */ first, /** @type {number} */ n) =>
    new Promise((resolve) => {
      answers = [];
      wanted = n;
      wake = () => resolve(answers);
      for (let i = first; i < first + n; i++) {
        shell.send({ a: i, b: 1 });
      }
    });
  try {
    return await measure(
      async (i) => check((await exchange(i, 1))[0], i),
      async (n) => {
        const results = await exchange(0, n);
        results.forEach(check);
      },
    );
  } finally {
    shell.end(() => {});
  }
}

const ways = {
  ours: () => ours("add"),
  "ours-async": () => ours("add_async"),
  "ours-threads": () => ours("add", 4),
  pipe,
  raw: () => raw(),
  "raw-blocking": () => raw("echo.py"),
  pythonia,
  pyshell,
};
process.stdout.write(`${JSON.stringify(await ways[way]())}\n`);
process.exit(0);
