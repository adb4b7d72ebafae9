// Calls both ways: Peer over memoryPair(), python.import() over a real Python child, and
// js/bin/host.mjs served to a Node parent. Mirrors tests/unit/test_peer.py and
// tests/cross/test_host.py (tests/cross/test_node_require.py drives host.mjs from Python).
//
// The Python interpreter is $BOTHWAYS_PYTHON, else <repo>/.venv/bin/python, else python3; bothways
// must be importable from it. Every timeout is a multiple of $BOTHWAYS_TEST_TIMEOUT_FACTOR.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { CallTimeout, ChildExited, EncodeError, RemoteError, TransportClosed } from "../src/errors.js";
import { Peer } from "../src/peer.js";
import { importModule, python } from "../src/python.js";
import {
  CANCEL_METHOD,
  INTERNAL_ERROR,
  INVALID_PARAMS,
  METHOD_NOT_FOUND,
  REQUEST_CANCELLED,
  SERVER_ERROR,
} from "../src/rpc.js";
import { memoryPair } from "../src/transports/base.js";
import { spawn } from "../src/transports/stdio.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const FIXTURES = join(ROOT, "tests", "fixtures");
const HOST = join(ROOT, "js", "bin", "host.mjs");
const VENV_PYTHON = join(ROOT, ".venv", "bin", "python");
const PYTHON = process.env.BOTHWAYS_PYTHON ?? (existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");

/**
 * Runs `body` with two started peers on a memory pair, closed afterwards.
 * @param {(a: Peer, b: Peer) => Promise<void>} body
 */
async function withPair(body) {
  const [left, right] = memoryPair();
  const a = await new Peer(left).start();
  const b = await new Peer(right).start();
  try {
    await within(body(a, b), 20 * S);
  } finally {
    await a.close();
    await b.close();
  }
}

/**
 * `promise`, or a rejection after `ms` milliseconds.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @returns {Promise<T>}
 */
async function within(promise, ms) {
  const controller = new AbortController();
  const late = sleep(ms, undefined, { signal: controller.signal }).then(() => {
    throw new Error(`no result within ${ms} ms`);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    controller.abort();
    late.catch(() => {});
  }
}

/** Waits until `predicate()` holds or `ms` have passed; returns its last result. */
async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) {
    await sleep(10);
  }
  return predicate();
}

/**
 * The rejection reasons of settled promises (a fulfilled one is a test failure).
 * @param {PromiseSettledResult<unknown>[]} results
 */
function reasons(results) {
  return results.map((result) => {
    assert.equal(result.status, "rejected", `expected a failure, got ${JSON.stringify(result)}`);
    return /** @type {PromiseRejectedResult} */ (result).reason;
  });
}

describe("Peer over memoryPair", () => {
  test("10,000 concurrent calls pair up", () =>
    withPair(async (a, b) => {
      b.expose(async function slowDouble(x) {
        await sleep(x % 7); // answers come back out of order
        return 2 * x;
      });
      const n = 10_000;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => a.call("slowDouble", i)));
      assert.deepEqual(
        results,
        Array.from({ length: n }, (_, i) => 2 * i),
      );
      assert.deepEqual(a.endpoint.pending, []);
    }));

  test("both sides call each other; a callee calls back into its caller before answering", () =>
    withPair(async (a, b) => {
      a.expose(() => "a's name", { name: "name" });
      b.expose(async function greet(greeting) {
        const caller = await b.call("name"); // re-enters a while a waits for greet
        return `${greeting}, ${caller}`;
      });
      b.expose(() => "b's name", { name: "name" });
      assert.equal(await a.call("greet", "hello"), "hello, a's name");
      assert.equal(await b.call("name"), "a's name");
      assert.equal(await a.call("name"), "b's name");
      // named params arrive as one object; none as no argument
      b.expose((options) => options, { name: "echo" });
      assert.deepEqual(await a.callWith("echo", { x: 1, y: [2] }), { x: 1, y: [2] });
      b.expose((...args) => args.length, { name: "count" });
      assert.equal(await a.call("count"), 0);
    }));

  test("a remote exception carries its type, message and stack", () =>
    withPair(async (a, b) => {
      b.expose(function divide(x, y) {
        if (y === 0) {
          throw new RangeError("division by zero");
        }
        return x / y;
      });
      b.expose(async function later() {
        await sleep(1);
        throw new TypeError("not today");
      });
      const error = await a.call("divide", 1, 0).then(assert.fail, (e) => e);
      assert.ok(error instanceof RemoteError);
      assert.equal(error.rpcCode, SERVER_ERROR);
      assert.equal(error.remoteType, "RangeError");
      assert.equal(error.reason, "division by zero");
      assert.match(error.remoteTraceback, /^RangeError: division by zero\n\s+at divide \(.*peer\.test\.js/);
      assert.ok(error.message.startsWith("RangeError: division by zero\n--- remote traceback ---\n"));
      await assert.rejects(a.call("later"), { name: "RemoteError", remoteType: "TypeError", reason: "not today" });
      await assert.rejects(a.call("nope"), {
        name: "RemoteError",
        rpcCode: METHOD_NOT_FOUND,
        reason: "Method not found: nope",
      });
      b.expose(
        () => {
          throw "a string";
        },
        { name: "odd" },
      );
      await assert.rejects(a.call("odd"), { remoteType: "string", reason: "a string" });
    }));

  test("arguments that do not fit are refused INVALID_PARAMS without running the function", () =>
    withPair(async (a, b) => {
      const ran = [];
      b.expose(function add(x, y = 0) {
        ran.push([x, y]);
        return x + y;
      });
      b.expose((...numbers) => numbers.reduce((sum, n) => sum + n, 0), { name: "total" });
      b.expose(({ x, y }) => x * y, { name: "named" });
      b.expose(
        function legacy() {
          return arguments.length;
        },
        { name: "legacy" },
      );
      b.expose(Math.max, { name: "max" }); // native: no source, not checked
      b.expose(((x) => x).bind(null), { name: "bound" }); // bound: not checked either
      b.expose(
        (a = "(,", /* b, */ c = [1, 2]) => [a, c], // strings, comments, nesting
        { name: "tricky" },
      );
      assert.equal(await a.call("add", 1), 1);
      assert.equal(await a.call("add", 1, 2), 3);
      for (const [name, args, reason] of [
        ["add", [], "missing a required argument: 'x'"],
        ["add", [1, 2, 3], "too many positional arguments"],
        ["named", [], "missing a required argument: argument 1"],
        ["tricky", [1, 2, 3], "too many positional arguments"],
      ]) {
        await assert.rejects(a.call(name, ...args), (error) => {
          assert.ok(error instanceof RemoteError, String(error));
          assert.equal(error.rpcCode, INVALID_PARAMS);
          assert.equal(error.reason, `Invalid params: ${reason}`);
          return true;
        });
      }
      assert.deepEqual(ran, [
        [1, 0],
        [1, 2],
      ]);
      assert.equal(await a.call("total", ...Array.from({ length: 100 }, (_, i) => i)), 4950);
      assert.equal(await a.callWith("named", { x: 6, y: 7 }), 42); // named params: one argument
      assert.equal(await a.call("legacy", 1, 2, 3), 3);
      assert.equal(await a.call("max", 1, 5, 3), 5);
      assert.equal(await a.call("bound", 1, 2), 1);
      assert.deepEqual(await a.call("tricky"), ["(,", [1, 2]]);
    }));

  test("a batch whose result cannot be encoded gets an error answer for that item", async () => {
    const [raw, end] = memoryPair();
    const peer = await new Peer(end).start();
    peer.expose((x) => x * 2, { name: "double" });
    peer.expose(() => 10n, { name: "big" });
    await raw.send([
      { jsonrpc: "2.0", method: "double", params: [1], id: "a" },
      { jsonrpc: "2.0", method: "big", id: "b" },
      { jsonrpc: "2.0", method: "double", params: [3], id: "c" },
    ]);
    const [first, second, third] = await within(raw.receive(), S);
    assert.deepEqual(first, { jsonrpc: "2.0", result: 2, id: "a" });
    assert.deepEqual(third, { jsonrpc: "2.0", result: 6, id: "c" });
    assert.equal(second.id, "b");
    assert.equal(second.error.code, INTERNAL_ERROR);
    assert.match(second.error.message, /^result: .*BigInt/);
    assert.equal(second.error.data.type, "EncodeError");
    await raw.close();
    await peer.close();
  });

  test("a result that cannot be encoded is an INTERNAL_ERROR answer, not a hang", () =>
    withPair(async (a, b) => {
      b.expose(() => 10n, { name: "big" });
      b.expose(async () => ({ n: 2n }), { name: "nested" });
      await assert.rejects(a.call("big"), (error) => {
        assert.ok(error instanceof RemoteError);
        assert.equal(error.rpcCode, INTERNAL_ERROR);
        assert.equal(error.remoteType, "EncodeError");
        assert.match(error.reason, /^result: .*BigInt/);
        return true;
      });
      await assert.rejects(a.call("nested"), { rpcCode: INTERNAL_ERROR, reason: /^result: \$\.result\.n: BigInt/ });
      b.expose(() => "fine", { name: "ok" });
      assert.equal(await a.call("ok"), "fine"); // the peer goes on
    }));

  test("arguments that cannot be encoded fail the call at once; nothing is left pending", () =>
    withPair(async (a, b) => {
      b.expose((x) => x, { name: "echo" });
      await assert.rejects(a.call("echo", 1n), EncodeError);
      assert.deepEqual(a.endpoint.pending, []);
      assert.equal(await a.call("echo", 7), 7);
    }));

  test("a timeout and an AbortSignal reach the callee", () =>
    withPair(async (a, b) => {
      const seen = [];
      b.expose(
        async function forever(tag, signal) {
          await new Promise((resolve) =>
            signal.addEventListener("abort", () => {
              seen.push([tag, signal.reason.name]);
              resolve();
            }),
          );
          return "too late";
        },
        { signal: true },
      );
      const started = Date.now();
      await assert.rejects(a.callWith("forever", ["timeout"], { timeout: 50 }), (error) => {
        assert.ok(error instanceof CallTimeout);
        assert.equal(error.message, "forever: no answer within 50 ms");
        return true;
      });
      assert.ok(Date.now() - started < 2 * S);
      const controller = new AbortController();
      const call = a.callWith("forever", ["abort"], { signal: controller.signal });
      await sleep(20);
      controller.abort(new Error("changed my mind"));
      await assert.rejects(call, { message: "changed my mind" });
      await assert.rejects(a.callWith("forever", ["never sent"], { signal: controller.signal }), {
        message: "changed my mind",
      });
      assert.ok(await until(() => seen.length === 2, 2 * S), `seen: ${JSON.stringify(seen)}`);
      assert.deepEqual(seen.sort(), [
        ["abort", "AbortError"],
        ["timeout", "AbortError"],
      ]);
      assert.deepEqual(a.endpoint.pending, []);
      // the signal is the last declared parameter, even when the caller left out an optional one
      b.expose((x, y = null, signal) => [x, y, signal instanceof AbortSignal], { name: "arity", signal: true });
      assert.deepEqual(await a.call("arity", 1), [1, null, true]);
      assert.deepEqual(await a.call("arity", 1, 2), [1, 2, true]);
      await assert.rejects(a.call("arity"), { rpcCode: INVALID_PARAMS, reason: "Invalid params: missing a required argument: 'x'" });
      await assert.rejects(a.call("arity", 1, 2, 3), { rpcCode: INVALID_PARAMS });
    }));

  test("a cancelled request is answered REQUEST_CANCELLED at once; its late result is dropped", async () => {
    const [raw, right] = memoryPair();
    const peer = await new Peer(right).start();
    let finish = () => {};
    peer.expose(() => new Promise((resolve) => (finish = () => resolve("late"))), { name: "slow" });
    await raw.send({ jsonrpc: "2.0", method: "slow", id: 1 });
    await sleep(10);
    await raw.send({ jsonrpc: "2.0", method: CANCEL_METHOD, params: { id: 1 } });
    assert.deepEqual(await within(raw.receive(), S), {
      jsonrpc: "2.0",
      error: { code: REQUEST_CANCELLED, message: "Request cancelled" },
      id: 1,
    });
    finish();
    await raw.send({ jsonrpc: "2.0", method: "$/functions", id: 2 }); // not exposed here
    const next = await within(raw.receive(), S);
    assert.equal(next.id, 2, `the late result was sent: ${JSON.stringify(next)}`);
    assert.equal(next.error.code, METHOD_NOT_FOUND);
    // a batch is answered as one array
    peer.expose((x) => x * 2, { name: "double" });
    await raw.send([
      { jsonrpc: "2.0", method: "double", params: [1], id: "a" },
      { jsonrpc: "2.0", method: "double", params: [2], id: "b" },
    ]);
    assert.deepEqual(await within(raw.receive(), S), [
      { jsonrpc: "2.0", result: 2, id: "a" },
      { jsonrpc: "2.0", result: 4, id: "b" },
    ]);
    await raw.close();
    await peer.close();
  });

  test("a peer that goes fails every pending call within 1 s, and later calls at once", async () => {
    const [left, right] = memoryPair();
    const a = await new Peer(left).start();
    const b = await new Peer(right).start();
    let aborted = 0;
    b.expose(
      (signal) =>
        new Promise((resolve) =>
          signal.addEventListener("abort", () => {
            aborted++;
            resolve(null);
          }),
        ),
      { name: "hang", signal: true },
    );
    const calls = Array.from({ length: 5 }, () => a.call("hang"));
    await sleep(50);
    const started = Date.now();
    await b.close();
    const failures = reasons(await within(Promise.allSettled(calls), S));
    assert.ok(Date.now() - started < S);
    assert.ok(
      failures.every((error) => error instanceof TransportClosed),
      failures.join("\n"),
    );
    assert.equal(aborted, 5); // b's handlers were told too
    await assert.rejects(a.call("hang"), TransportClosed);
    await a.close();
    await a.run(); // returns at once on a closed peer
  });

  test("notifications reach the notification handler; a failing handler does not stop the peer", () =>
    withPair(async (a, b) => {
      const got = [];
      b.notificationHandler = (method, params) => {
        got.push([method, params]);
        if (method === "bad") {
          throw new Error("handler bug");
        }
      };
      const errors = [];
      const original = console.error;
      console.error = (...args) => errors.push(args.join(" "));
      try {
        await a.notify("progress", 50);
        await a.notify("bad");
        await a.notifyWith("named", { done: true });
        assert.ok(await until(() => got.length === 3, S));
      } finally {
        console.error = original;
      }
      assert.deepEqual(got, [
        ["progress", [50]],
        ["bad", null],
        ["named", { done: true }],
      ]);
      assert.equal(errors.length, 1);
      assert.match(errors[0], /notification handler threw on bad/);
      b.expose(() => "alive", { name: "ping" });
      assert.equal(await a.call("ping"), "alive");
    }));
});

describe("python.import: Node calls a Python child", () => {
  test("statistics: calls, keyword arguments, and StatisticsError as a RemoteError", async () => {
    const lines = [];
    const m = await python.import("statistics", { python: PYTHON, stderr: (line) => lines.push(line) });
    try {
      await statistics(m);
    } finally {
      await m[Symbol.asyncDispose]();
    }
    assert.equal(m.peer.channel.returncode, 0);
  });

  /** @param {import("../src/python.js").PythonModule} m */
  async function statistics(m) {
    assert.equal(await m.mean([1, 2, 3, 4]), 2.5);
    assert.equal(await m.median([3, 1, 2]), 2);
    assert.ok(m.functions.includes("fmean"));
    assert.ok(Object.keys(m).includes("mean"));
    assert.deepEqual(await m.callWith("quantiles", { data: [1, 2, 3, 4], n: 2 }), [2.5]);
    const error = await m.mean([]).then(assert.fail, (e) => e);
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteType, "StatisticsError");
    assert.match(error.remoteTraceback, /^Traceback \(most recent call last\):/);
    assert.match(error.remoteTraceback, /statistics\.py/);
    assert.match(error.message, /^StatisticsError: mean requires at least one data point/);
  }

  test("print() in the module does not corrupt 200 concurrent calls", async () => {
    const lines = [];
    const m = await importModule("py_module", { python: PYTHON, cwd: FIXTURES, stderr: (line) => lines.push(line) });
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => m.shout(`x${i}`)));
      assert.deepEqual(
        results,
        Array.from({ length: 200 }, (_, i) => `X${i}`),
      );
      await assert.rejects(m.fail("nothing here"), { remoteType: "LookupError", reason: "nothing here" });
    } finally {
      await m.close();
    }
    assert.ok(lines.includes("debug: shouting 'x0'"), lines.slice(0, 5).join("\n"));
    assert.ok(lines.includes("debug: shouting 'x199'"));
  });

  test("a child killed by SIGKILL mid-call fails every pending call with ChildExited within 1 s", async () => {
    const m = await python.import("py_module", { python: PYTHON, cwd: FIXTURES, stderr: "keep" });
    try {
      const calls = Array.from({ length: 3 }, () => m.nap(30));
      await sleep(300);
      const started = Date.now();
      process.kill(/** @type {number} */ (m.peer.channel.pid), "SIGKILL");
      const failures = reasons(await within(Promise.allSettled(calls), S));
      assert.ok(Date.now() - started < S);
      for (const error of failures) {
        assert.ok(error instanceof ChildExited, String(error));
        assert.equal(error.signal, "SIGKILL");
      }
      await assert.rejects(m.shout("x"), ChildExited);
    } finally {
      await m.close();
    }
  });

  test("a module that does not exist: ChildExited with the Python error in the stderr tail", async () => {
    await assert.rejects(python.import("no_such_module_here", { python: PYTHON, stderr: "keep" }), (error) => {
      assert.ok(error instanceof ChildExited, String(error));
      assert.match(error.stderrTail, /No module named 'no_such_module_here'/);
      return true;
    });
  });
});

describe("js/bin/host.mjs: a JavaScript module served to a parent", () => {
  test("calls, errors with their stack, and console.log kept out of the protocol", async () => {
    const lines = [];
    const child = spawn([process.execPath, HOST, "js_module.mjs"], {
      cwd: FIXTURES,
      stderr: (line) => lines.push(line),
    });
    const peer = await new Peer(child).start();
    try {
      await hosted(peer);
    } finally {
      await peer[Symbol.asyncDispose]();
    }
    assert.equal(child.returncode, 0);
    assert.ok(lines.includes('debug: shouting "x0"'), lines.slice(0, 5).join("\n"));
    assert.ok(lines.includes('debug: shouting "x199"'));
  });

  /** @param {Peer} peer */
  async function hosted(peer) {
    assert.deepEqual(await peer.call("$/functions"), ["fail", "mean", "nap", "shout"]);
    assert.equal(await peer.call("mean", [1, 2, 3, 4]), 2.5);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => peer.call("shout", `x${i}`)));
    assert.deepEqual(
      results,
      Array.from({ length: 200 }, (_, i) => `X${i}`),
    );
    const error = await peer.call("fail", "too far").then(assert.fail, (e) => e);
    assert.ok(error instanceof RemoteError, String(error));
    assert.equal(error.remoteType, "RangeError");
    assert.equal(error.reason, "too far");
    assert.match(error.remoteTraceback, /at fail \(.*js_module\.mjs/);
    await assert.rejects(peer.call("mean", []), { remoteType: "RangeError" });
    await assert.rejects(peer.callWith("nap", [10 * S], { timeout: 100 }), CallTimeout);
    assert.equal(await peer.call("nap", 1), 1);
  }

  test("the host ends when its stdin closes; a host killed mid-call fails pending calls", async () => {
    const child = spawn([process.execPath, HOST, join(FIXTURES, "js_module.mjs")], { stderr: "keep" });
    const peer = await new Peer(child).start();
    assert.equal(await peer.call("shout", "hi"), "HI");
    const calls = Array.from({ length: 3 }, () => peer.call("nap", 30 * S));
    await sleep(100);
    process.kill(/** @type {number} */ (child.pid), "SIGKILL");
    const failures = reasons(await within(Promise.allSettled(calls), S));
    assert.ok(failures.every((error) => error instanceof ChildExited && error.signal === "SIGKILL"));
    await peer.close();

    const clean = spawn([process.execPath, HOST, join(FIXTURES, "js_module.mjs")], { stderr: "keep" });
    const served = await new Peer(clean).start();
    const pending = served.call("nap", 30 * S); // abandoned: the host does not wait for it
    await sleep(100);
    clean.closeStdin();
    assert.equal(await within(clean.wait(), 5 * S), 0);
    await assert.rejects(pending, TransportClosed);
    await served.close();
  });

  test("bad usage and a module that cannot be loaded", async () => {
    const usage = spawn([process.execPath, HOST], { stderr: "keep" });
    assert.equal(await within(usage.wait(), 5 * S), 2);
    assert.match(usage.stderrTail, /usage: node host\.mjs/);
    await usage.close();
    const missing = spawn([process.execPath, HOST, join(FIXTURES, "nope.mjs")], { stderr: "keep" });
    const peer = await new Peer(missing).start();
    await assert.rejects(peer.call("$/functions"), (error) => {
      assert.ok(error instanceof ChildExited, String(error));
      assert.equal(error.returncode, 1);
      assert.match(error.stderrTail, /cannot serve .*nope\.mjs/);
      return true;
    });
    await peer.close();
  });
});
