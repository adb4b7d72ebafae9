// The sans-I/O JSON-RPC endpoint, driven by spec/vectors/rpc.json (tests/unit/test_rpc.py too).
//
// Steps: `receive` + `events` (flat form below); `request: [method, params]` + `id`; `notify`;
// `cancel` or `forget` + `returns`; `respond: [id, result]`; `respond_error: [id, code, message, data?]`;
// `parse_error`; `send`: what messagesToSend() drains; `pending`.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { ChildExited, RemoteError } from "../src/errors.js";
import {
  CANCEL_METHOD,
  Cancelled,
  ErrorResponse,
  INTERNAL_ERROR,
  Notification,
  PROTOCOL,
  Request,
  Response,
  RpcEndpoint,
  RpcEvent,
  hello,
  helloRefusal,
  remoteError,
  speaksBinary,
} from "../src/rpc.js";
import { same } from "./support.js";

const VECTORS = fileURLToPath(new URL("../../spec/vectors/rpc.json", import.meta.url));

/** @returns {{name: string, steps: object[]}[]} */
function load() {
  if (!existsSync(VECTORS)) {
    // Fail loudly: a missing contract must never pass as "nothing to check".
    throw new Error(`shared vector file ${VECTORS} is missing (spec/vectors/generate.py writes it)`);
  }
  return JSON.parse(readFileSync(VECTORS, "utf8")).cases;
}

const CASES = load();

/**
 * The flat event form of tests/unit/test_rpc.py (snake_case keys, as in the vectors).
 * @param {RpcEvent} event
 * @returns {object}
 */
function flat(event) {
  if (event instanceof Request) {
    return { request: { id: event.id, method: event.method, params: event.params } };
  }
  if (event instanceof Notification) {
    return { notification: { method: event.method, params: event.params } };
  }
  if (event instanceof Cancelled) {
    return { cancelled: event.id };
  }
  if (event instanceof Response) {
    return { response: { id: event.id, result: event.result } };
  }
  assert.ok(event instanceof ErrorResponse && event.error instanceof RemoteError, `unknown event ${event}`);
  const error = event.error;
  return {
    error_response: {
      id: event.id,
      rpc_code: error.rpcCode,
      message: error.reason,
      remote_type: error.remoteType,
      remote_traceback: error.remoteTraceback,
    },
  };
}

/**
 * Deep equality, then key order too (what goes on the wire keeps the order of the vectors).
 * @param {unknown} got
 * @param {unknown} expected
 */
function assertSame(got, expected) {
  assert.deepStrictEqual(got, expected);
  assert.ok(same(got, expected), `key order: ${JSON.stringify(got)}`);
}

test("enough cases", () => {
  assert.ok(CASES.length >= 25);
  assert.ok(CASES.filter((c) => c.name.startsWith("spec:")).length >= 10);
});

describe("rpc vectors", () => {
  for (const case_ of CASES) {
    test(case_.name, () => {
      const endpoint = new RpcEndpoint();
      for (const step of case_.steps) {
        if ("receive" in step) {
          assertSame(endpoint.receive(step.receive).map(flat), step.events);
        } else if ("request" in step) {
          assert.equal(endpoint.request(...step.request), step.id);
        } else if ("notify" in step) {
          endpoint.notify(...step.notify);
        } else if ("cancel" in step) {
          assert.equal(endpoint.cancel(step.cancel), step.returns);
        } else if ("forget" in step) {
          assert.equal(endpoint.forget(step.forget), step.returns);
        } else if ("respond" in step) {
          endpoint.respond(...step.respond);
        } else if ("respond_error" in step) {
          endpoint.respondError(...step.respond_error);
        } else if ("parse_error" in step) {
          endpoint.parseError();
        } else if ("send" in step) {
          assertSame(endpoint.messagesToSend(), step.send);
        } else if ("pending" in step) {
          assert.deepStrictEqual(endpoint.pending, step.pending);
        } else {
          throw new Error(`unknown step ${JSON.stringify(step)}`); // a new step kind must be taught here
        }
      }
    });
  }
});

test("failAll gives the cause to every pending call", () => {
  const endpoint = new RpcEndpoint();
  const ids = [0, 1, 2].map((i) => endpoint.request("work", [i]));
  const cause = new ChildExited("node worker.js exited with code 1", { returncode: 1, stderrTail: "Error: boom" });
  const failed = endpoint.failAll(cause);
  assert.deepStrictEqual(
    failed.map((f) => f.id),
    ids,
  );
  assert.ok(failed.every((f) => f instanceof ErrorResponse && f.error === cause));
  assert.deepStrictEqual(endpoint.pending, []);
  assert.deepStrictEqual(endpoint.failAll(cause), []);
});

test("a remote error reads well in a stack trace", () => {
  const endpoint = new RpcEndpoint();
  endpoint.request("divide", [1, 0]);
  const events = endpoint.receive({
    jsonrpc: "2.0",
    id: 1,
    error: {
      code: -32000,
      message: "division by zero",
      data: { type: "ZeroDivisionError", traceback: "tb" },
    },
  });
  assert.equal(events.length, 1);
  const [event] = events;
  assert.ok(event instanceof ErrorResponse);
  assert.ok(event.error instanceof RemoteError);
  assert.equal(event.error.message, "ZeroDivisionError: division by zero\n--- remote traceback ---\ntb");
  assert.equal(String(event.error), "RemoteError: ZeroDivisionError: division by zero\n--- remote traceback ---\ntb");
  assert.equal(event.error.reason, "division by zero");
  assert.deepStrictEqual(event.error.data, { type: "ZeroDivisionError", traceback: "tb" });
});

// What follows is JS-only: the places where JavaScript can say something Python cannot.
describe("JavaScript specifics", () => {
  test("events are frozen RpcEvents", () => {
    for (const event of [
      new Request(1, "m"),
      new Notification("m"),
      new Cancelled(1),
      new Response(1, null),
      new ErrorResponse(null, new RemoteError("x")),
    ]) {
      assert.ok(event instanceof RpcEvent);
      assert.ok(Object.isFrozen(event));
    }
    assert.equal(new Request(1, "m").params, null);
    assert.equal(new Notification("m").params, null);
  });

  test("undefined never drops a key from a message", () => {
    const endpoint = new RpcEndpoint();
    endpoint.request("ping");
    endpoint.notify("tick", undefined);
    endpoint.receive({ jsonrpc: "2.0", method: "ask", id: "a" });
    endpoint.respond("a", undefined);
    endpoint.respondError(undefined, -32000, "boom", undefined);
    assertSame(endpoint.messagesToSend(), [
      { jsonrpc: "2.0", method: "ping", id: 1 },
      { jsonrpc: "2.0", method: "tick" },
      { jsonrpc: "2.0", result: null, id: "a" },
      { jsonrpc: "2.0", error: { code: -32000, message: "boom" }, id: null },
    ]);
  });

  test("1 and '1' are different calls", () => {
    const endpoint = new RpcEndpoint();
    endpoint.request("m");
    assert.deepStrictEqual(endpoint.receive({ jsonrpc: "2.0", result: 0, id: "1" }), []);
    assert.deepStrictEqual(endpoint.pending, [1]);
    assert.equal(endpoint.cancel("1"), false);
  });

  test("inherited members are not members of the message", () => {
    const endpoint = new RpcEndpoint();
    const message = Object.assign(Object.create({ id: 5, method: "inherited" }), { jsonrpc: "2.0" });
    assert.deepStrictEqual(endpoint.receive(message), []);
    assertSame(endpoint.messagesToSend(), [
      {
        jsonrpc: "2.0",
        error: { code: -32600, message: "Invalid Request", data: { reason: "neither a request nor a response" } },
        id: null,
      },
    ]);
  });

  test("a cancel notification without a valid id is a plain notification", () => {
    const endpoint = new RpcEndpoint();
    const events = endpoint.receive({ jsonrpc: "2.0", method: CANCEL_METHOD, params: { id: true } });
    assert.deepStrictEqual(events.map(flat), [{ notification: { method: CANCEL_METHOD, params: { id: true } } }]);
  });

  test("a malformed error object still gives a RemoteError", () => {
    const error = remoteError("oops");
    assert.equal(error.rpcCode, INTERNAL_ERROR);
    assert.equal(error.message, 'malformed error object: "oops"');
    const partial = remoteError({ code: 1.5, data: [1] });
    assert.deepStrictEqual([partial.rpcCode, partial.reason, partial.remoteType, partial.data], [INTERNAL_ERROR, "", "", [1]]);
    // a boolean is no code; a null message, type or traceback is empty; others are shown as JSON
    const odd = remoteError({ code: true, message: null, data: { type: [1], traceback: null } });
    assert.deepStrictEqual([odd.rpcCode, odd.reason, odd.remoteType, odd.remoteTraceback], [INTERNAL_ERROR, "", "[1]", ""]);
    assert.deepStrictEqual(odd.data, { type: [1], traceback: null });
    assert.equal(remoteError({ code: 7, message: { a: 1 } }).reason, '{"a":1}');
    assert.equal(remoteError({ code: -32001, message: "m" }).rpcCode, -32001);
  });

  for (const [message, named] of [[null, "null"], [true, "boolean"], [3, "number"], [1.5, "number"], ["x", "string"], [[1], "array"]]) {
    test(`a message that is not an object is answered with its JSON type (${named})`, () => {
      const endpoint = new RpcEndpoint();
      assert.deepStrictEqual(endpoint.receive([message, { jsonrpc: "2.0", method: "n" }]).map(flat), [
        { notification: { method: "n", params: null } },
      ]);
      const data = { reason: `expected an object, got ${named}` };
      assertSame(endpoint.messagesToSend(), [[{ jsonrpc: "2.0", error: { code: -32600, message: "Invalid Request", data }, id: null }]]);
    });
  }

  test("the handshake refuses another protocol, naming both sides", () => {
    const ours = hello("0.1.0", "javascript");
    assert.deepStrictEqual(ours, { protocol: PROTOCOL, version: "0.1.0", language: "javascript", binary: true });
    assert.equal(helloRefusal(ours, hello("9.9.9", "python")), null);
    assert.ok(speaksBinary(ours) && !speaksBinary({ ...ours, binary: 1 }) && !speaksBinary([ours]));
    const theirs = { protocol: PROTOCOL + 1, version: "2.0.0", language: null };
    assert.equal(
      helloRefusal(ours, theirs),
      `protocol mismatch: bothways 0.1.0 for javascript (protocol ${PROTOCOL}) cannot talk to ` +
        `bothways 2.0.0 for ? (protocol ${PROTOCOL + 1})`,
    );
    assert.equal(
      helloRefusal(ours, { version: 3 }),
      `protocol mismatch: bothways 0.1.0 for javascript (protocol ${PROTOCOL}) cannot talk to bothways 3 for ? (protocol ?)`,
    );
    assert.ok(helloRefusal(ours, ["x"]).endsWith('cannot talk to a peer without the handshake (it said ["x"])'));
  });

  test("the core imports nothing but the core (it loads in a browser)", (t) => {
    const source = readFileSync(fileURLToPath(new URL("../src/rpc.js", import.meta.url)), "utf8");
    if (source.includes("stryMutAct_")) {
      t.skip("instrumented by Stryker (make mutation): not the source as shipped");
      return;
    }
    const code = source.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, ""); // comments may name them
    const imports = [...code.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]);
    assert.deepStrictEqual(imports, ["./errors.js"]);
    assert.ok(!/require\(|process\.|Date\.now|performance\.now|setTimeout/.test(code));
  });
});

const ABSENT = Symbol("absent"); // the key is missing
/** Every value a field takes below (mirror of tests/unit/test_rpc.py). */
const FIELDS = {
  jsonrpc: ["2.0", "1.0", 2, ABSENT],
  id: [1, 7, "a", null, true, 1.5, [1], ABSENT], // 1: pending; 7, "a": not
  method: ["add", CANCEL_METHOD, null, 3, ABSENT],
  params: [[1, 2], { id: 1 }, {}, null, 5, "x", ABSENT],
  result: [3, null, ABSENT],
  error: [{ code: -32000, message: "boom" }, ABSENT],
};

test("the quick path of receive agrees with the full checks on every message shape", () => {
  // receive() tells the usual request and answer apart in a few steps before its full checks;
  // a batch of one message always takes the full checks. Both must say the same of every
  // combination of fields, valid or not: the same events, the same error answers.
  /** @type {Record<string, unknown>[]} */
  let messages = [{}];
  for (const [key, values] of Object.entries(FIELDS)) {
    messages = messages.flatMap((m) => values.map((v) => (v === ABSENT ? m : { ...m, [key]: v })));
  }
  assert.equal(messages.length, 6720);
  for (const message of messages) {
    const quick = new RpcEndpoint();
    const full = new RpcEndpoint();
    for (const endpoint of [quick, full]) {
      assert.equal(endpoint.request("add", [1, 2]), 1);
      endpoint.messagesToSend();
    }
    const text = JSON.stringify(message);
    assert.deepStrictEqual(quick.receive(message).map(flat), full.receive([message]).map(flat), text);
    const answers = full.messagesToSend(); // a batch's error answers come as one array
    assert.deepStrictEqual(quick.messagesToSend(), answers.length > 0 ? answers[0] : [], text);
    assert.deepStrictEqual(quick.pending, full.pending, text);
  }
});
