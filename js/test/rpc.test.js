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
  HELLO_METHOD,
  INTERNAL_ERROR,
  INVALID_PARAMS,
  INVALID_REQUEST,
  METHOD_NOT_FOUND,
  Notification,
  PARSE_ERROR,
  PROTOCOL,
  REQUEST_CANCELLED,
  Request,
  Response,
  RpcEndpoint,
  RpcEvent,
  SERVER_ERROR,
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

  const notObjects = [[null, "null"], [true, "boolean"], [3, "number"], [1.5, "number"], [2n ** 70n, "number"], ["x", "string"], [[1], "array"]];
  for (const [message, named] of notObjects) {
    test(`a message that is not an object is answered with its JSON type (${named})`, () => {
      const endpoint = new RpcEndpoint();
      assert.deepStrictEqual(endpoint.receive([message, { jsonrpc: "2.0", method: "n" }]).map(flat), [
        { notification: { method: "n", params: null } },
      ]);
      const data = { reason: `expected an object, got ${named}` };
      const answer = { jsonrpc: "2.0", error: { code: -32600, message: "Invalid Request", data }, id: null };
      assertSame(endpoint.messagesToSend(), [[answer]]);
      if (!Array.isArray(message)) {
        // alone, not in a batch (an array alone is a batch)
        assert.deepStrictEqual(endpoint.receive(message), []);
        assertSame(endpoint.messagesToSend(), [answer]);
      }
    });
  }

  test("receive never throws, even on undefined (not a JSON value)", () => {
    const endpoint = new RpcEndpoint();
    assert.deepStrictEqual(endpoint.receive(undefined), []);
    assert.equal(endpoint.messagesToSend().length, 1);
  });

  test("an absent params or data is no member at all, not an undefined one", () => {
    const endpoint = new RpcEndpoint();
    endpoint.notify("tick");
    endpoint.notify("tick", undefined);
    endpoint.request("ping", undefined);
    endpoint.respondError(null, -32000, "boom", undefined);
    const [tick, tick2, ping, answer] = endpoint.messagesToSend();
    assert.deepStrictEqual([tick, tick2, ping].map(Object.keys), [["jsonrpc", "method"], ["jsonrpc", "method"], ["jsonrpc", "method", "id"]]);
    assert.deepStrictEqual(Object.keys(answer.error), ["code", "message"]);
  });

  test("a malformed error object that JSON cannot show is shown as text", () => {
    assert.equal(remoteError(2n ** 70n).reason, "malformed error object: 1180591620717411303424");
  });

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

  test("a protocol given as a boolean is refused, and shown as JSON", () => {
    // true == 1 in Python, not in JavaScript: both refuse it, and name it as JSON does.
    const ours = hello("0.1.0", "javascript");
    assert.equal(PROTOCOL, 1);
    assert.equal(
      helloRefusal(ours, { protocol: true, version: ["1.0.0"], language: "python" }),
      `protocol mismatch: bothways 0.1.0 for javascript (protocol ${PROTOCOL}) cannot talk to ` +
        'bothways ["1.0.0"] for python (protocol true)',
    );
  });

  test("the error codes and method names are the specification's", () => {
    assert.deepStrictEqual(
      [PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR, SERVER_ERROR, REQUEST_CANCELLED],
      [-32700, -32600, -32601, -32602, -32603, -32000, -32800],
    );
    assert.deepStrictEqual([CANCEL_METHOD, HELLO_METHOD], ["$/cancelRequest", "$/hello"]);
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
  jsonrpc: ["2.0", "1.0", "", 2, ABSENT],
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
  assert.equal(messages.length, 8400);
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

test("an error answer frees the id of the request it answers", () => {
  const endpoint = new RpcEndpoint();
  for (const answer of [() => endpoint.respondError(1, -32000, "boom"), () => endpoint.respond(1, 3)]) {
    assert.deepStrictEqual(endpoint.receive({ jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] }).map(flat), [
      { request: { id: 1, method: "add", params: [1, 2] } },
    ]);
    answer();
    assert.equal(endpoint.messagesToSend().length, 1);
  }
  // and the same inside a batch (answers go through the batch's bookkeeping)
  for (let i = 0; i < 2; i++) {
    assert.deepStrictEqual(endpoint.receive([{ jsonrpc: "2.0", id: 1, method: "m", params: [] }]).map(flat), [
      { request: { id: 1, method: "m", params: [] } },
    ]);
    endpoint.respondError(1, -32000, "boom");
    const [[answer]] = endpoint.messagesToSend();
    assert.ok(answer.id === 1 && answer.error.code === -32000);
  }
});

test("a duplicate id is named as written", () => {
  const endpoint = new RpcEndpoint();
  const request = { jsonrpc: "2.0", id: "café ✓", method: "m", params: [] };
  assert.deepStrictEqual(endpoint.receive(request).map(flat), [{ request: { id: "café ✓", method: "m", params: [] } }]);
  assert.deepStrictEqual(endpoint.receive(request), []);
  const [answer] = endpoint.messagesToSend();
  assert.equal(answer.id, "café ✓");
  assert.deepStrictEqual(answer.error.data, { reason: 'duplicate id "café ✓": a request with this id is still unanswered' });
});

for (const messageId of [7, "a"]) {
  for (const [fields, reason] of [
    [{ jsonrpc: "1.0", method: "m", params: [] }, '"jsonrpc" must be exactly "2.0"'],
    [{ jsonrpc: "2.0", method: 3, params: [] }, "method must be a string"],
    [{ jsonrpc: "2.0", method: "m", params: 5 }, "params must be an array or an object"],
    [{ jsonrpc: "2.0" }, "neither a request nor a response"],
  ]) {
    test(`an invalid request is answered with its id (${reason}, ${JSON.stringify(messageId)})`, () => {
      for (const message of [{ ...fields, id: messageId }, fields]) {
        // without an id: answered with null
        const endpoint = new RpcEndpoint();
        assert.deepStrictEqual(endpoint.receive(message), []);
        const error = { code: -32600, message: "Invalid Request", data: { reason } };
        const expectedId = "id" in message ? messageId : null;
        assert.deepStrictEqual(endpoint.messagesToSend(), [{ jsonrpc: "2.0", error, id: expectedId }]);
      }
    });
  }
}

for (const key of ["jsonrpc", "id", "method", "params", "result", "error"]) {
  test(`member names are case-sensitive (${key})`, () => {
    // A member spelled in capitals is an unknown member: the message means what it means
    // without that member (the quick path of receive() reads members by name too).
    const base = ["jsonrpc", "id", "method", "params"].includes(key)
      ? { jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] }
      : { jsonrpc: "2.0", id: 1, [key]: key === "result" ? 3 : { code: -32000, message: "boom" } };
    const capitals = Object.fromEntries(Object.entries(base).map(([k, v]) => [k === key ? k.toUpperCase() : k, v]));
    const without = Object.fromEntries(Object.entries(base).filter(([k]) => k !== key));
    const seen = [capitals, without].map((message) => {
      const endpoint = new RpcEndpoint();
      assert.equal(endpoint.request("add", [1, 2]), 1);
      endpoint.messagesToSend();
      return [endpoint.receive(message).map(flat), endpoint.messagesToSend(), endpoint.pending];
    });
    assert.deepStrictEqual(seen[0], seen[1]);
  });
}

test("forget takes back only the forgotten call's request", () => {
  const endpoint = new RpcEndpoint();
  endpoint.receive({ jsonrpc: "2.0", id: 1, method: "ask", params: [] });
  endpoint.respond(1, "answer to the peer's call 1"); // queued, same id as our call below
  assert.equal(endpoint.request("m", [1]), 1);
  endpoint.notify("n", { id: 1 });
  assert.equal(endpoint.request("k"), 2);
  assert.equal(endpoint.forget(1), true);
  assert.deepStrictEqual(endpoint.messagesToSend(), [
    { jsonrpc: "2.0", result: "answer to the peer's call 1", id: 1 },
    { jsonrpc: "2.0", method: "n", params: { id: 1 } },
    { jsonrpc: "2.0", method: "k", id: 2 },
  ]);
  assert.deepStrictEqual(endpoint.pending, [2]);
});

test("a notification whose params has an id is not a cancel", () => {
  const endpoint = new RpcEndpoint();
  assert.deepStrictEqual(endpoint.receive({ jsonrpc: "2.0", method: "progress", params: { id: 3 } }).map(flat), [
    { notification: { method: "progress", params: { id: 3 } } },
  ]);
  assert.deepStrictEqual(endpoint.receive({ jsonrpc: "2.0", method: CANCEL_METHOD, params: { id: 3 } }).map(flat), [
    { cancelled: 3 },
  ]);
});

test("answers to nothing we asked are dropped, alone or in a batch", () => {
  const endpoint = new RpcEndpoint();
  assert.equal(endpoint.request("m"), 1);
  endpoint.messagesToSend();
  const strays = [
    { jsonrpc: "2.0", id: 99, result: 3 },
    { jsonrpc: "2.0", id: 99, error: { code: -32000, message: "boom" } },
    { jsonrpc: "2.0", id: null, result: 3 },
  ];
  for (const stray of strays) {
    assert.deepStrictEqual(endpoint.receive(stray), []);
  }
  // in a batch, after a request: the request stays, and is answered alone
  const request = { jsonrpc: "2.0", id: 5, method: "add", params: [1, 2] };
  assert.deepStrictEqual(endpoint.receive([request, ...strays]).map(flat), [{ request: { id: 5, method: "add", params: [1, 2] } }]);
  assert.deepStrictEqual(endpoint.messagesToSend(), []);
  endpoint.respond(5, 3);
  assert.deepStrictEqual(endpoint.messagesToSend(), [[{ jsonrpc: "2.0", result: 3, id: 5 }]]);
  assert.deepStrictEqual(endpoint.pending, [1]);
});
