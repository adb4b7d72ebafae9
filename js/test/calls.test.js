// Calls across a real process boundary, at volume: Node's Peer against a Python child.
//
// 10,000 calls in flight at once, answered out of order, some with errors, must each get their
// own answer (tests/cross/test_calls.py drives the other direction: Python's Peer against Node).
// The Python interpreter is $BOTHWAYS_PYTHON, else <repo>/.venv/bin/python, else python3.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { RemoteError } from "../src/errors.js";
import { Peer } from "../src/peer.js";
import { importModule } from "../src/python.js";
import { spawn } from "../src/transports/stdio.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const FIXTURES = join(ROOT, "tests", "fixtures");
const VENV_PYTHON = join(ROOT, ".venv", "bin", "python");
const PYTHON = process.env.BOTHWAYS_PYTHON ?? (existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");
const N = 10_000;

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

/** @param {number} i */
function expected(i) {
  if (i % 97 === 0) return `LookupError: refused ${i}`;
  if (i % 3 === 0) return [i, `t${i}`];
  return { n: i, label: `l${i}` };
}

describe("Node's Peer against a Python child, 10,000 calls at once", () => {
  test("python.import: each call gets its own answer, out of order and with errors", async () => {
    const m = await importModule("calls_module", { python: PYTHON, cwd: FIXTURES, stderr: "keep" });
    try {
      /** @param {number} i */
      const one = async (i) => {
        if (i % 97 === 0) {
          const error = await m.refuse(i, i % 5).then(assert.fail, (e) => e);
          assert.ok(error instanceof RemoteError, String(error));
          return `${error.remoteType}: ${error.reason}`;
        }
        if (i % 3 === 0) return m.tag(i, `t${i}`);
        return m.later(i, `l${i}`, i % 7); // answers come back out of order
      };
      const results = await within(Promise.all(Array.from({ length: N }, (_, i) => one(i))), 20 * S);
      assert.deepEqual(
        results,
        Array.from({ length: N }, (_, i) => expected(i)),
      );
      assert.deepEqual(m.peer.endpoint.pending, []);
    } finally {
      await m.close();
    }
  });

  test("a function the module lacks is named, with those it has, as Python's handle names it", async () => {
    const m = await importModule("calls_module", { python: PYTHON, cwd: FIXTURES, stderr: "keep" });
    try {
      const functions = m.functions.join(", ");
      assert.ok(functions.includes("tag"), functions);
      assert.throws(() => m.nope(1), {
        name: "TypeError",
        message: `calls_module exports no function 'nope' (it has: ${functions})`,
      });
      assert.equal(m.then, undefined); // still not a promise to `await`
      assert.equal(m._private, undefined);
      assert.deepEqual(await m.call("tag", 1, "x"), await m.tag(1, "x")); // methods run through the handle
    } finally {
      await m.close();
    }
  });

  test("calls both ways over one pipe: each call calls back into us before it is answered", async () => {
    const child = spawn([PYTHON, join(FIXTURES, "calls_peer.py")], { stderr: "keep" });
    const peer = await new Peer(child).start();
    const squared = [];
    peer.expose(async function square(n) {
      squared.push(n);
      await sleep(n % 5);
      return n * n;
    });
    try {
      const calls = Array.from({ length: N }, (_, i) => peer.call("relay", i));
      const results = await within(Promise.all(calls), 20 * S);
      assert.deepEqual(
        results,
        Array.from({ length: N }, (_, i) => ({ n: i, square: i * i })),
      );
      assert.deepEqual(
        squared.sort((x, y) => x - y),
        Array.from({ length: N }, (_, i) => i),
      );
      assert.deepEqual(peer.endpoint.pending, []);
    } finally {
      await peer.close();
    }
    assert.equal(child.returncode, 0, child.stderrTail);
  });
});
