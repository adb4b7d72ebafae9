// Fuzz targets (fast-check), the JavaScript half of tests/fuzz/: the decoder's chunking
// invariance (with and without binary frames), RpcEndpoint's invariants, urls.parse, fromTree.
// Each replays its corpus (tests/fuzz/corpus/<target>/, shared with Python) first. By default a
// few hundred runs each, seeded (about a second in all); `BOTHWAYS_FUZZ_SECONDS=N` (make fuzz)
// runs each for N seconds with a fresh seed. `open-*` corpus files are bugs reported and not
// fixed yet (see tests/fuzz/common.py): skipped here.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import fc from "fast-check";

import { Decoder } from "../src/wire.js";
import { ErrorResponse, INVALID_REQUEST, Request, Response, RpcEndpoint } from "../src/rpc.js";
import { parse } from "../src/urls.js";
import { Handles, fromTree } from "../src/objects.js";
import { flat } from "./support.js";

const CORPUS = fileURLToPath(new URL("../../tests/fuzz/corpus/", import.meta.url));
const SECONDS = Number(process.env.BOTHWAYS_FUZZ_SECONDS || 0);
const MARK = "$bothways";

/**
 * fast-check settings: seeded and brief for `npm test`, time-bound when fuzzing.
 * @param {number} runs
 */
function budget(runs) {
  return SECONDS > 0
    ? { numRuns: 1e9, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false }
    : { seed: 20260624, numRuns: runs };
}

/**
 * The files of a corpus folder that are not open bugs.
 * @param {string} name
 */
function corpus(name) {
  return readdirSync(CORPUS + name)
    .filter((f) => !f.startsWith("open-"))
    .sort()
    .map((f) => ({ name: f, path: CORPUS + name + "/" + f }));
}

/** @param {string} path */
function lines(path) {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

// -- the decoder -----------------------------------------------------------------------------

const enc = new TextEncoder();
const jsonText = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null");
const piece = fc.oneof(
  jsonText.map((t) => enc.encode(t + "\n")),
  jsonText.map((t) => enc.encode(t + "\r\n")),
  fc.string({ unit: fc.constantFrom(..."{}[]\",:0123456789.eE+-truefalsn\\ \t\rx#é€\u2028"), maxLength: 20 }).map((t) => enc.encode(t + "\n")),
  fc.constantFrom("\n", "  \t\r\n", "\r\n", "\r", " ").map((t) => enc.encode(t)),
  fc.constantFrom([0xff], [0xc3], [0xed, 0xa0, 0x80], [0xf0, 0x9f], [0x80], [0xef, 0xbb, 0xbf]).map((b) => new Uint8Array(b)),
  fc.uint8Array({ maxLength: 12 }),
  fc.tuple(fc.uint8Array({ maxLength: 20 }), fc.nat(5), fc.nat(30), fc.boolean()).map(([data, exact, size, cr]) => {
    const n = exact ? data.length : size;
    return new Uint8Array([...enc.encode(`#blob ${n}${cr ? "\r" : ""}\n`), ...data]);
  }),
  fc.constantFrom("#blob x\n", "#blob 01\n", "#blob -1\n", "#blob \n", "#blob", '["#blob 2"]\n').map((t) => enc.encode(t)),
  fc.nat(300).map((n) => enc.encode(`"${"x".repeat(n)}"\n`)),
);
const stream = fc
  .tuple(fc.array(piece, { maxLength: 12 }), fc.boolean())
  .map(([pieces, bom]) => {
    const parts = bom ? [new Uint8Array([0xef, 0xbb, 0xbf]), ...pieces] : pieces;
    return new Uint8Array(parts.flatMap((p) => [...p]));
  });
const MAX_LINES = [1, 2, 3, 4, 6, 8, 12, 16, 40, 64, 200, 16 * 1024 * 1024];

/**
 * The flat events (every detail; a too-long line's excerpt left out: it shows the bytes held
 * when the line passed the limit, so it depends on the chunks).
 * @param {Uint8Array} data
 * @param {{maxLine: number, binary: boolean}} options
 * @param {number[]} cuts
 */
function events(data, options, cuts) {
  const decoder = new Decoder(options);
  const out = [];
  let start = 0;
  for (const cut of [...cuts, data.length]) {
    out.push(...decoder.feed(data.subarray(start, cut)));
    start = cut;
  }
  out.push(...decoder.feedEof());
  const errors = out.filter((e) => e.error !== undefined).map((e) => e.error);
  const events = flat(out, true);
  let next = 0;
  for (const item of events) {
    if (item.error !== undefined) {
      const error = errors[next++];
      if (item.error !== "FRAME_TOO_LARGE") item.excerpt = error.excerpt;
    }
  }
  return events;
}

/**
 * @param {Uint8Array} data
 * @param {{maxLine: number, binary: boolean}} options
 * @param {number[]} cuts
 */
function checkChunks(data, options, cuts) {
  assert.deepStrictEqual(events(data, options, cuts), events(data, options, []), `cuts ${cuts}`);
}

for (const binary of [false, true]) {
  test(`fuzz: decoder chunking invariance${binary ? ", binary frames" : ""}`, () => {
    fc.assert(
      fc.property(
        stream.chain((data) =>
          fc.tuple(
            fc.constant(data),
            fc.constantFrom(...MAX_LINES),
            fc.oneof(
              fc.uniqueArray(fc.integer({ min: 0, max: data.length }), { maxLength: 8 }).map((a) => a.sort((x, y) => x - y)),
              fc.constant(Array.from({ length: Math.max(0, data.length - 1) }, (_, i) => i + 1)),
            ),
          ),
        ),
        ([data, maxLine, cuts]) => checkChunks(data, { maxLine, binary }, cuts),
      ),
      budget(150),
    );
  });
}

test("fuzz: the decoder corpus, whole vs cut anywhere", () => {
  for (const { name, path } of corpus("wire")) {
    const data = new Uint8Array(readFileSync(path));
    const maxLine = Number(/\.max_line-(\d+)/.exec(name)?.[1] ?? 16 * 1024 * 1024);
    const options = { maxLine, binary: name.includes(".binary") };
    checkChunks(data, options, Array.from({ length: Math.max(0, data.length - 1) }, (_, i) => i + 1));
    const step = Math.max(1, Math.floor(data.length / 64));
    for (let cut = 1; cut < data.length; cut += step) checkChunks(data, options, [cut]);
  }
});

// -- the RPC endpoint ------------------------------------------------------------------------

const ids = fc.oneof(fc.integer({ min: -2, max: 6 }), fc.constantFrom("a", "b", "1", ""));
const anyValue = fc.jsonValue({ maxDepth: 2 });
const peerMessage = fc.oneof(
  fc.record({ jsonrpc: fc.constant("2.0"), method: fc.constantFrom("f", "g"), id: ids, params: fc.array(anyValue, { maxLength: 2 }) }, { requiredKeys: ["jsonrpc", "method", "id"] }),
  fc.record({ jsonrpc: fc.constant("2.0"), method: fc.constant("n") }),
  fc.record({ jsonrpc: fc.constant("2.0"), method: fc.constant("$/cancelRequest"), params: fc.record({ id: fc.oneof(ids, anyValue) }) }),
  fc.record({ jsonrpc: fc.constant("2.0"), id: ids, result: anyValue }),
  fc.record({ jsonrpc: fc.constant("2.0"), id: fc.oneof(ids, fc.constant(null)), error: anyValue }),
  anyValue,
  fc.tuple(ids, fc.constantFrom("jsonrpc", "id", "method", "params", "result", "error", "x"), fc.boolean(), anyValue).map(([id, key, drop, value]) => {
    const message = { jsonrpc: "2.0", method: "f", id };
    if (drop) delete message[key];
    else message[key] = value;
    return message;
  }),
);
const op = fc.oneof(
  fc.tuple(fc.constant("receive"), peerMessage),
  fc.tuple(fc.constant("batch"), fc.array(peerMessage, { maxLength: 5 })),
  fc.tuple(fc.constantFrom("request", "notify", "parseError", "drain", "failAll"), fc.constant(0)),
  fc.tuple(fc.constantFrom("cancel", "forget", "respond", "respondError"), fc.nat(8)),
);

/** The model of tests/fuzz/test_rpc.py: answers carry tokens; each must leave exactly once. */
class Model {
  constructor() {
    this.endpoint = new RpcEndpoint();
    this.pending = [];
    this.owed = []; // [Request, batch number | null, place]
    this.batches = new Map(); // number -> {size, answered: Map(place -> token)}
    this.given = new Map(); // token -> batch number | null
    this.sent = new Map();
    this.tokens = 0;
  }

  fresh(message) {
    if (typeof message !== "object" || message === null || Array.isArray(message) || !("method" in message)) return true;
    return !this.owed.some(([r]) => r.id === message.id);
  }

  step([name, arg]) {
    const e = this.endpoint;
    if (name === "receive" || name === "batch") {
      if (name === "batch") arg = arg.filter((m) => this.fresh(m));
      else if (!this.fresh(arg)) return;
      const events = e.receive(arg); // never throws
      const requests = events.filter((ev) => ev instanceof Request);
      const number = name === "batch" && requests.length > 0 ? this.batches.size : null;
      if (number !== null) this.batches.set(number, { size: requests.length, answered: new Map() });
      requests.forEach((r, place) => this.owed.push([r, number, place]));
      for (const ev of events) {
        if ((ev instanceof Response || ev instanceof ErrorResponse) && ev.id !== null) {
          assert.ok(this.pending.includes(ev.id), `an answer to ${ev.id}, not in flight`);
          this.pending.splice(this.pending.indexOf(ev.id), 1);
        }
      }
    } else if (name === "request") {
      this.pending.push(e.request("m", [1]));
    } else if (name === "notify") {
      e.notify("n", { x: 1 });
    } else if (name === "cancel" || name === "forget") {
      const id = this.pending.length > 0 && arg < 6 ? this.pending[arg % this.pending.length] : arg + 100;
      const done = e[name](id);
      assert.equal(done, this.pending.includes(id));
      if (done) this.pending.splice(this.pending.indexOf(id), 1);
    } else if (name === "respond" || name === "respondError") {
      if (this.owed.length === 0) return;
      const [request, number, place] = this.owed.splice(arg % this.owed.length, 1)[0];
      const token = this.tokens++;
      this.given.set(token, number);
      if (number !== null) this.batches.get(number).answered.set(place, token);
      if (name === "respond") e.respond(request.id, { token });
      else e.respondError(request.id, -32000, "no", { token });
    } else if (name === "parseError") {
      e.parseError();
    } else if (name === "drain") {
      this.drain();
    } else if (name === "failAll") {
      assert.deepEqual(e.failAll(new Error("gone")).map((ev) => ev.id), this.pending);
      this.pending = [];
    }
    assert.deepEqual(e.pending, this.pending);
  }

  drain() {
    for (const out of this.endpoint.messagesToSend()) {
      if (!Array.isArray(out) && "method" in out) continue;
      const answers = Array.isArray(out) ? out : [out];
      const tokens = answers.map((a) => {
        const carried = "result" in a ? a.result : a.error.data;
        return typeof carried === "object" && carried !== null && "token" in carried ? carried.token : null;
      });
      const mine = tokens.filter((t) => t !== null);
      for (const t of mine) {
        this.sent.set(t, (this.sent.get(t) ?? 0) + 1);
        assert.equal(this.sent.get(t), 1, `answer ${t} sent twice`);
      }
      if (Array.isArray(out)) {
        const numbers = new Set(mine.map((t) => this.given.get(t)));
        assert.ok(numbers.size <= 1 && !numbers.has(null), "one array mixes batches");
        if (numbers.size === 1) {
          const batch = this.batches.get([...numbers][0]);
          const expected = [...batch.answered.keys()].sort((a, b) => a - b).map((p) => batch.answered.get(p));
          assert.deepEqual(mine, expected, "a batch's answers out of order");
          assert.equal(mine.length, batch.size, "a batch answered before all its answers");
        }
        answers.forEach((a, i) => tokens[i] === null && assert.equal(a.error.code, INVALID_REQUEST));
      } else {
        assert.ok(mine.length === 0 || this.given.get(mine[0]) === null, "a batch's answer sent alone");
      }
    }
  }

  finish() {
    while (this.owed.length > 0) this.step(["respond", 0]);
    this.drain();
    assert.equal(this.sent.size, this.tokens, "an answer was lost");
  }
}

test("fuzz: RpcEndpoint answers each request once, batches together, leaks no pending call", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 40 }), (program) => {
      const model = new Model();
      for (const step of program) model.step(step);
      model.finish();
    }),
    budget(150),
  );
});

test("fuzz: the RPC corpus", () => {
  for (const { path } of corpus("rpc")) {
    const model = new Model();
    for (const [name, arg] of lines(path)) model.step([name === "respond_error" ? "respondError" : name === "parse_error" ? "parseError" : name === "fail_all" ? "failAll" : name, arg]);
    model.finish();
  }
});

// -- urls ------------------------------------------------------------------------------------

const urlPiece = fc.oneof(
  fc.constantFrom(..."aZ09.-_~/:@[]%+#?&=! é😀\u0000\t"),
  fc.constantFrom("%2", "%zz", "%ff", "%C3%A9"),
);
const urlText = fc.array(urlPiece, { maxLength: 8 }).map((a) => a.join(""));
const OPTIONS = ["max_line", "token", "reconnect", "timeout", "backlog", "reopen", "state", "poll", "follow", "max_bytes", "keep", "qos", "client_id", "clean", "session", "share", "protocol", "keepalive", "ws_path", "typo"];
const url = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc
    .record({
      scheme: fc.constantFrom("stdio", "tcp", "ws", "fifo", "file", "mqtt", "mqtts", "mqtt+ws", "mqtt+wss", "TCP", "http", ""),
      start: fc.constantFrom("//", "", "///", "/"),
      host: fc.oneof(fc.constantFrom("", "localhost", "127.0.0.1", "[::1]", "[::1", "Host.Example"), urlText),
      port: fc.oneof(fc.constantFrom("", ":", ":0", ":80", ":65536", ":0x1"), urlText.map((t) => ":" + t)),
      path: fc.oneof(fc.constantFrom("", "/", "/p", "/a/+/#", "//", "/tmp/r%20x"), urlText),
      query: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...OPTIONS), urlText), fc.oneof(urlText, fc.constantFrom("0", "1", "yes", "0.5", "1e3", "3.1.1", "/p"), fc.stringMatching(/^[0-9]{1,25}(\.[0-9]{1,25})?$/))), { maxLength: 3 }),
    })
    .map(({ scheme, start, host, port, path, query }) => `${scheme}:${start}${host}${port}${path}` + (query.length ? "?" + query.map(([k, v]) => `${k}=${v}`).join("&") : "")),
);

/** Open bugs (tests/fuzz/corpus/urls/open-*): a lone surrogate (parse takes it, `url` throws
 * URIError), a run of 300 digits (a timeout of 310 digits reads as Infinity and its canonical
 * form does not parse). */
function openUrlBug(text) {
  if (/^(fifo|file):(\/\/)?(\/|%2f){2}/i.test(text)) return true; // a path "//...": canonical form names a host
  return !text.isWellFormed() || /[0-9]{300}/.test(text);
}

/** @param {string} text */
function checkUrl(text) {
  let address;
  try {
    address = parse(text);
  } catch (error) {
    assert.equal(error.code, "URL_ERROR", `${JSON.stringify(text)}: ${error}`);
    return;
  }
  const again = parse(address.url);
  assert.deepEqual(again, address, JSON.stringify(text));
  assert.equal(again.url, address.url);
}

test("fuzz: urls.parse throws only UrlError, and its canonical form reads back the same", () => {
  fc.assert(
    fc.property(url, (text) => {
      fc.pre(!openUrlBug(text));
      checkUrl(text);
    }),
    budget(400),
  );
  for (const { path } of corpus("urls")) for (const text of lines(path)) checkUrl(text);
});

// -- fromTree --------------------------------------------------------------------------------

const scalar = fc.oneof(fc.constant(null), fc.boolean(), fc.integer({ min: -3, max: 2 ** 40 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ maxLength: 4 }));
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof({ depthSize: "small", withCrossShrink: true }, scalar, fc.array(tie("tree"), { maxLength: 3 }), fc.dictionary(fc.constantFrom("a", "b c", MARK, "0", "value"), tie("tree"), { maxKeys: 3 }), tie("marker")),
  marker: fc
    .record(
      {
        [MARK]: fc.constantFrom("ref", "yours", "bytes", "array", "object", "tree", "", null, 1),
        id: fc.oneof(fc.integer({ min: -1, max: 3 }), scalar),
        kind: fc.oneof(fc.constantFrom("function", "class", "object", "iterator", "thing"), scalar),
        type: fc.oneof(fc.string({ maxLength: 4 }), scalar),
        class: fc.oneof(fc.integer({ min: 0, max: 3 }), scalar),
        methods: fc.oneof(fc.array(fc.string({ maxLength: 3 }), { maxLength: 3 }), scalar),
        base64: fc.oneof(fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b).toString("base64")), fc.constantFrom("", "A", "AA=", "A===", "AB=A", "@@@@"), scalar),
        blob: fc.oneof(fc.integer({ min: -1, max: 3 }), scalar),
        dtype: fc.constantFrom("bool", "uint8", "int16", "int64", "uint64", "float32", "float64", "float16", "", null),
        shape: fc.oneof(fc.array(fc.nat(4), { maxLength: 3 }), fc.array(scalar, { maxLength: 2 }), scalar),
        value: tie("tree"),
      },
      { requiredKeys: [MARK] },
    ),
}));

/** @param {unknown} value @param {Uint8Array[] | undefined} blobs */
function checkTree(value, blobs) {
  const handles = new Handles();
  handles.lend({});
  try {
    fromTree(value, handles, (marker) => ({ ref: marker.id }), blobs);
  } catch (error) {
    assert.equal(error.code, "HANDLE_ERROR", String(error));
  }
}

test("fuzz: fromTree throws only HandleError", () => {
  fc.assert(
    fc.property(tree, fc.option(fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 3 }), { nil: undefined }), checkTree),
    budget(300),
  );
  for (const { path } of corpus("objects")) {
    for (const { tree: value, blobs } of lines(path)) checkTree(value, blobs?.map((b) => Buffer.from(b, "hex")));
  }
});
