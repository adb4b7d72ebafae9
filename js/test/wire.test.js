// Unit tests of the wire core and the error tree (src/wire.js, src/errors.js).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import * as bothways from "../src/index.js";
import {
  Binary,
  BothwaysError,
  CallTimeout,
  ChildExited,
  ConnectError,
  DecodeError,
  Decoder,
  EncodeError,
  Event,
  FrameTooLarge,
  MAX_LINE,
  MAX_SAFE_INTEGER,
  Malformed,
  Messages,
  RemoteError,
  TransportClosed,
  TransportError,
  Truncated,
  TruncatedLine,
  decode,
  encode,
  encodeMany,
} from "../src/index.js";
import { Inbox } from "../src/transports/base.js";
import { feedAll, flat } from "./support.js";

const STRESS_SKIPPED = process.env.BOTHWAYS_QUICK === "1" && "a stress case (BOTHWAYS_QUICK=1)";

const bytes = (text) => new TextEncoder().encode(text);

describe("errors", () => {
  // [error, name, message, toJson()] exactly as Python's errors.py builds them
  // (computed with src/bothways/errors.py, then written here by hand).
  const cases = [
    [
      new EncodeError("string contains a lone surrogate", { path: '$.readings[3]["a b"]' }),
      "EncodeError",
      '$.readings[3]["a b"]: string contains a lone surrogate',
      { code: "ENCODE_ERROR", path: '$.readings[3]["a b"]' },
    ],
    [
      new DecodeError("expected value", { line: 3, column: 9, excerpt: '{"a": 1 "b"…' }),
      "DecodeError",
      `line 3, col 9: expected value in '{"a": 1 "b"…'`,
      { code: "DECODE_ERROR", line: 3, column: 9, excerpt: '{"a": 1 "b"…' },
    ],
    [
      new DecodeError("bad", { line: 2 }),
      "DecodeError",
      "line 2: bad",
      { code: "DECODE_ERROR", line: 2, column: 0, excerpt: "" },
    ],
    [
      new DecodeError("bad", { line: 2, excerpt: "it's" }),
      "DecodeError",
      `line 2: bad in "it's"`,
      { code: "DECODE_ERROR", line: 2, column: 0, excerpt: "it's" },
    ],
    [
      new DecodeError("bad", {
        line: 1,
        column: 4,
        excerpt: "it's \"q\" \\ \t\n\r\x01\x7f\x85\u200b\u2028é😀\ufeff\u{e0001}\ue000",
      }),
      "DecodeError",
      String.raw`line 1, col 4: bad in 'it\'s "q" \\ \t\n\r\x01\x7f\x85\u200b\u2028é😀\ufeff\U000e0001\ue000'`,
      {
        code: "DECODE_ERROR",
        line: 1,
        column: 4,
        excerpt: "it's \"q\" \\ \t\n\r\x01\x7f\x85\u200b\u2028é😀\ufeff\u{e0001}\ue000",
      },
    ],
    [
      new FrameTooLarge({ line: 4, limit: 10, excerpt: "xxxx" }),
      "FrameTooLarge",
      "line 4: line is longer than the limit of 10 bytes (skipped up to the next newline) in 'xxxx'",
      { code: "FRAME_TOO_LARGE", line: 4, column: 0, excerpt: "xxxx", limit: 10 },
    ],
    [
      new TruncatedLine("stream ended", { line: 2, excerpt: "4", delivered: true }),
      "TruncatedLine",
      "line 2: stream ended in '4'",
      { code: "TRUNCATED_LINE", line: 2, column: 0, excerpt: "4", delivered: true },
    ],
    [new TransportError("pipe broke"), "TransportError", "pipe broke", { code: "TRANSPORT_ERROR" }],
    [
      new ConnectError("connection refused", { url: "tcp://127.0.0.1:9" }),
      "ConnectError",
      "tcp://127.0.0.1:9: connection refused",
      { code: "CONNECT_ERROR", url: "tcp://127.0.0.1:9" },
    ],
    [new TransportClosed("closed"), "TransportClosed", "closed", { code: "TRANSPORT_CLOSED" }],
    [
      new ChildExited("python exited with code 1", { returncode: 1, stderrTail: "Traceback...\nValueError: x" }),
      "ChildExited",
      "python exited with code 1\n--- stderr tail ---\nTraceback...\nValueError: x",
      { code: "CHILD_EXITED", returncode: 1, signal: null, stderr_tail: "Traceback...\nValueError: x" },
    ],
    [
      new ChildExited("killed", { returncode: null, signal: "SIGKILL" }),
      "ChildExited",
      "killed",
      { code: "CHILD_EXITED", returncode: null, signal: "SIGKILL", stderr_tail: "" },
    ],
    [
      new RemoteError("division by zero", {
        rpcCode: -32000,
        remoteType: "ZeroDivisionError",
        remoteTraceback: "Traceback ...",
        data: { x: 1 },
      }),
      "RemoteError",
      "ZeroDivisionError: division by zero\n--- remote traceback ---\nTraceback ...",
      {
        code: "REMOTE_ERROR",
        rpc_code: -32000,
        remote_type: "ZeroDivisionError",
        remote_traceback: "Traceback ...",
        data: { x: 1 },
      },
    ],
    [
      new RemoteError("plain"),
      "RemoteError",
      "plain",
      { code: "REMOTE_ERROR", rpc_code: -32000, remote_type: "", remote_traceback: "", data: null },
    ],
    [new CallTimeout("no answer in 5 s"), "CallTimeout", "no answer in 5 s", { code: "CALL_TIMEOUT" }],
    [new BothwaysError("base"), "BothwaysError", "base", { code: "BOTHWAYS_ERROR" }],
  ];

  for (const [error, name, message, fields] of cases) {
    test(`${name}: ${JSON.stringify(message).slice(0, 50)}`, () => {
      assert.equal(error.name, name);
      assert.equal(error.message, message);
      assert.equal(error.code, error.constructor.code);
      const { code, ...details } = fields;
      assert.deepEqual(error.toJson(), { code, message, ...details });
      assert.deepEqual(error.details(), details);
      assert.deepEqual(JSON.parse(JSON.stringify(error)), JSON.parse(JSON.stringify(error.toJson())));
      assert.ok(error instanceof Error && error instanceof BothwaysError);
      assert.equal(String(error), `${name}: ${message}`);
    });
  }

  test("the tree and the codes match errors.py", () => {
    const tree = [
      [BothwaysError, Error, "BOTHWAYS_ERROR"],
      [EncodeError, BothwaysError, "ENCODE_ERROR"],
      [DecodeError, BothwaysError, "DECODE_ERROR"],
      [FrameTooLarge, DecodeError, "FRAME_TOO_LARGE"],
      [TruncatedLine, DecodeError, "TRUNCATED_LINE"],
      [TransportError, BothwaysError, "TRANSPORT_ERROR"],
      [ConnectError, TransportError, "CONNECT_ERROR"],
      [TransportClosed, TransportError, "TRANSPORT_CLOSED"],
      [ChildExited, TransportError, "CHILD_EXITED"],
      [RemoteError, BothwaysError, "REMOTE_ERROR"],
      [CallTimeout, BothwaysError, "CALL_TIMEOUT"],
    ];
    for (const [cls, parent, code] of tree) {
      assert.equal(Object.getPrototypeOf(cls), parent, cls.name);
      assert.equal(cls.code, code);
    }
  });

  test("cause, as Error's options", () => {
    const cause = new TypeError("low level");
    assert.equal(new TransportClosed("closed", { cause }).cause, cause);
    assert.equal(new EncodeError("bad", { path: "$.a", cause }).cause, cause);
    assert.equal(new ConnectError("refused", { url: "tcp://h:1", cause }).cause, cause);
    assert.ok(!("cause" in new EncodeError("bad")));
  });

  test("code and fields are own properties, name is not", () => {
    const error = new FrameTooLarge({ line: 1, limit: 5 });
    assert.deepEqual(Object.keys(error).sort(), ["code", "column", "excerpt", "limit", "line", "reason"]);
  });
});

describe("encode", () => {
  test("one line: JSON.stringify plus a newline", () => {
    const reading = { sensor: "s1", seq: 7, t: 1732470000.5, celsius: -3.25 };
    assert.equal(encode(reading), '{"sensor":"s1","seq":7,"t":1732470000.5,"celsius":-3.25}\n');
    assert.equal(typeof encode(1), "string");
    assert.equal(encode("a\nb"), '"a\\nb"\n');
  });

  test("JSON.stringify semantics: toJSON, dropped members, holes, -0", () => {
    assert.equal(encode({ d: new Date(0) }), '{"d":"1970-01-01T00:00:00.000Z"}\n');
    assert.equal(encode({ a: undefined, f() {}, s: Symbol("x"), b: 1 }), '{"b":1}\n');
    assert.equal(encode([undefined, () => 1, Symbol("y")]), "[null,null,null]\n");
    assert.equal(encode(-0), "0\n");
    assert.equal(encode([new Number(1), new String("s"), new Boolean(false)]), '[1,"s",false]\n');
  });

  test("NaN and Infinity send null, or throw in strict mode with the path", () => {
    assert.equal(encode([NaN, Infinity, -Infinity]), "[null,null,null]\n");
    assert.throws(() => encode({ readings: [{ celsius: 1 }, { celsius: NaN }] }, { strict: true }), {
      code: "ENCODE_ERROR",
      path: "$.readings[1].celsius",
      message: "$.readings[1].celsius: NaN is not a JSON number (strict mode; the default sends null)",
    });
    assert.throws(() => encode(-Infinity, { strict: true }), { path: "$" });
    // "null" in the text is only a hint: real nulls and "null" strings pass in strict mode
    assert.equal(encode({ a: null, b: "null" }, { strict: true }), '{"a":null,"b":"null"}\n');
    assert.throws(() => encode({ toJSON: () => NaN }, { strict: true }), { path: "$" });
  });

  test("BigInt, anywhere, names its path", () => {
    assert.throws(() => encode(1n), { code: "ENCODE_ERROR", path: "$" });
    assert.throws(() => encode({ a: [1, { "b c": 2n ** 64n }] }), { path: '$.a[1]["b c"]' });
    assert.throws(() => encode([Object(5n)]), { path: "$[0]" });
    assert.throws(
      () => encode({ id: 1n }),
      (error) => error instanceof EncodeError && error.cause instanceof TypeError,
    );
  });

  test("paths: identifiers, other keys, indices", () => {
    const at = (value) => {
      try {
        encode(value);
      } catch (error) {
        return error.path;
      }
      return null;
    };
    assert.equal(at({ _ok$1: [0n] }), "$._ok$1[0]");
    assert.equal(at({ "1a": 0n }), '$["1a"]');
    assert.equal(at({ "": 0n }), '$[""]');
    assert.equal(at({ 'q"uote': 0n }), '$["q\\"uote"]');
    assert.equal(at({ é: 0n }), '$["é"]');
  });

  test("lone surrogates in strings and keys throw; pairs pass", () => {
    assert.throws(() => encode("\ud800"), {
      path: "$",
      message: "$: string contains a lone surrogate",
    });
    assert.throws(() => encode(["ok", { "a b": "x\udc00" }]), { path: '$[1]["a b"]' });
    assert.throws(() => encode({ "k\ud800": 1 }), {
      path: '$["k\\ud800"]',
      message: '$["k\\ud800"]: object key contains a lone surrogate',
    });
    assert.equal(encode("\ud83d\ude00"), '"\ud83d\ude00"\n');
    // a literal backslash-u text is no surrogate (the hint fires, the walk clears it)
    assert.equal(encode({ a: "\\ud800" }), '{"a":"\\\\ud800"}\n');
    // a dropped member's key does not count
    assert.equal(encode({ "\ud800": undefined }), "{}\n");
  });

  test("cycles, and top-level values JSON cannot hold", () => {
    const loop = { a: [] };
    loop.a.push(loop);
    assert.throws(() => encode(loop), { code: "ENCODE_ERROR", path: "$.a[0]" });
    assert.throws(() => encode(undefined), { path: "$", message: "$: undefined is not JSON serializable" });
    assert.throws(() => encode(() => 1), { message: "$: function is not JSON serializable" });
    assert.throws(() => encode(Symbol("s")), { message: "$: symbol is not JSON serializable" });
    assert.throws(() => encode({ toJSON: () => undefined }), { code: "ENCODE_ERROR" });
  });

  test("nesting: 1024 levels pass, 1025 throw (the decoders' limit)", () => {
    let ok = [];
    for (let i = 1; i < 1024; i++) ok = [ok];
    assert.equal(encode(ok), "[".repeat(1024) + "]".repeat(1024) + "\n");
    assert.throws(() => encode([ok]), (error) => error.code === "ENCODE_ERROR" && error.path === "$" + "[0]".repeat(1024));
    // many containers side by side are fine
    const wide = Array.from({ length: 3000 }, () => ({ a: [] }));
    assert.equal(encode(wide).length, 3000 * 9 + 2);
  });

  test("errors thrown by the value's own code pass through", () => {
    const bad = {
      toJSON() {
        throw new RangeError("mine");
      },
    };
    assert.throws(() => encode(bad), { name: "RangeError", message: "mine" });
  });

  test("the constants", () => {
    assert.equal(MAX_LINE, 16 * 1024 * 1024);
    assert.equal(MAX_SAFE_INTEGER, 2 ** 53 - 1);
  });
});

describe("decode", () => {
  test("strings, bytes, ArrayBuffer and views", () => {
    const text = '{"a":[1,2.5,"é"],"b":null}';
    const value = { a: [1, 2.5, "é"], b: null };
    assert.deepEqual(decode(text), value);
    assert.deepEqual(decode(bytes(text)), value);
    assert.deepEqual(decode(Buffer.from(text)), value);
    assert.deepEqual(decode(bytes(text).buffer), value);
    assert.deepEqual(decode(new DataView(bytes(text).buffer)), value);
    assert.throws(() => decode(42), TypeError);
  });

  test("one leading BOM is skipped, a second one is an error", () => {
    assert.equal(decode("\ufeff1"), 1);
    assert.equal(decode(Uint8Array.of(0xef, 0xbb, 0xbf, 0x31)), 1);
    assert.throws(() => decode("\ufeff\ufeff1"), { code: "DECODE_ERROR", line: 1, column: 1 });
  });

  test("errors name the line, the column (in characters) and an excerpt", () => {
    assert.throws(() => decode('{"a":1 "b":2}'), {
      code: "DECODE_ERROR",
      line: 1,
      column: 8,
      excerpt: '{"a":1 "b":2}',
      message: `line 1, col 8: expected ',' or '}' in '{"a":1 "b":2}'`,
    });
    assert.throws(() => decode("[1,\n2,\r\n3 4]"), { line: 3, column: 3, excerpt: "3 4]" });
    assert.throws(() => decode('["😀😀", x]'), { line: 1, column: 8 }); // an emoji is one character
    assert.throws(() => decode("[1,]"), { line: 1, column: 3, reason: "trailing comma before ']'" });
    assert.throws(() => decode(""), { line: 1, column: 1 });
    assert.throws(() => decode("nul"), { line: 1, column: 4 });
  });

  test("excerpts are at most 40 characters, with … where cut", () => {
    const long = '["' + "a".repeat(50) + '" x' + "b".repeat(50) + "]";
    assert.throws(
      () => decode(long),
      (error) => {
        assert.equal(error.column, 55);
        assert.equal(error.excerpt, "…" + "a".repeat(18) + '" x' + "b".repeat(19) + "…");
        return true;
      },
    );
    assert.throws(() => decode("x" + "y".repeat(60)), { excerpt: "x" + "y".repeat(39) + "…" });
  });

  test("invalid UTF-8 is rejected where it stands", () => {
    const data = Uint8Array.of(0x5b, 0x31, 0x2c, 0x0a, 0x22, 0xc3, 0xa9, 0xff, 0x22, 0x5d); // [1,\n"é\xff"]
    assert.throws(() => decode(data), {
      code: "DECODE_ERROR",
      reason: "invalid UTF-8 (byte 0xff)",
      line: 2,
      column: 3,
      excerpt: '"é\ufffd"]',
    });
    assert.throws(() => decode(Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22)), { reason: "invalid UTF-8 (byte 0xed)" });
    assert.throws(() => decode(Uint8Array.of(0x31, 0xe2, 0x82)), { column: 2 });
  });

  test("lone surrogate escapes are rejected (JSON.parse takes them, orjson does not)", () => {
    for (const text of ['"\\ud800"', '"\\udc00\\ud800"', '{"\\ud800":1}', '["ok", ["\\udfff"]]', '"\\ud800\\u0041"']) {
      assert.throws(() => decode(text), { code: "DECODE_ERROR" }, text);
    }
    assert.throws(() => decode('["ok", "\\udc00"]'), { column: 9, reason: "lone surrogate \\udc00 in string" });
    assert.equal(decode('"\\ud83d\\ude00 \\u00e9"'), "😀 é");
    assert.equal(decode('"\\\\ud800"'), "\\ud800"); // an escaped backslash, then text
    assert.throws(() => decode('"a\ud800"'), { code: "DECODE_ERROR" }); // raw, in a string input
  });

  test("numbers: overflow rejected, underflow and big integers accepted", () => {
    assert.throws(() => decode("1e400"), { reason: "number too large (it overflows to infinity)", column: 1 });
    assert.throws(() => decode('{"a": [0, -1E+400]}'), { column: 11 });
    assert.throws(() => decode("1" + "0".repeat(250) + "e99"), { code: "DECODE_ERROR" });
    assert.throws(() => decode("1.7976931348623159e308"), { code: "DECODE_ERROR" });
    assert.equal(decode("1.7976931348623157e308"), 1.7976931348623157e308);
    assert.equal(decode("1e-400"), 0);
    assert.equal(decode("123456789012345678901234567890"), 1.2345678901234568e29);
    assert.equal(decode('"1e400"'), "1e400");
  });

  test("nesting: 1024 accepted, 1025 rejected, objects and arrays together", () => {
    assert.equal(decode("[".repeat(1024) + "]".repeat(1024)).length, 1);
    assert.throws(() => decode("[".repeat(1025) + "]".repeat(1025)), { column: 1025 });
    assert.throws(() => decode("[".repeat(1023) + '{"a":[]}' + "]".repeat(1023)), { code: "DECODE_ERROR" });
    assert.ok(decode("[".repeat(1023) + '{"a":1}' + "]".repeat(1023)));
    assert.throws(() => decode("[".repeat(100000) + "]".repeat(100000)), { code: "DECODE_ERROR" });
    assert.throws(() => decode("[".repeat(100000)), { code: "DECODE_ERROR" });
  });

  test("the grammar is strict RFC 8259", () => {
    for (const text of ["NaN", "[1,]", "{'a':1}", "01", "+1", "// c\n1", "1 2", " ", '"\\x41"', '"a\tb"', "{a:1}"]) {
      assert.throws(() => decode(text), DecodeError, JSON.stringify(text));
    }
  });
});

describe("Decoder", () => {
  test("one Messages event per run of good lines", () => {
    const decoder = new Decoder();
    const events = decoder.feed('1\n{"a":2}\n"x"\n');
    assert.equal(events.length, 1);
    assert.ok(events[0] instanceof Messages && events[0] instanceof Event);
    assert.deepEqual(events[0].values, [1, { a: 2 }, "x"]);
    assert.equal(events[0].line, 1);
    assert.ok(Object.isFrozen(events[0]));
    assert.equal(decoder.line, 3);
    assert.equal(decoder.buffered, 0);
    assert.deepEqual(decoder.feedEof(), []);
  });

  test("blank lines end a run and are counted; bad lines are Malformed", () => {
    const events = new Decoder().feed("1\n2\n\n3\n{bad\n \t\r\n4\n");
    assert.deepEqual(
      events.map((e) => (e instanceof Messages ? [e.line, e.values] : [e.constructor.name, e.error.line])),
      [
        [1, [1, 2]],
        [4, [3]],
        ["Malformed", 5],
        [7, [4]],
      ],
    );
    assert.ok(events[2].error instanceof DecodeError);
    assert.match(events[2].error.message, /^line 5, col 2: /);
  });

  test("partial lines are held, as bytes, and counted in buffered", () => {
    const decoder = new Decoder();
    assert.deepEqual(decoder.feed('{"a"'), []);
    assert.equal(decoder.buffered, 4);
    assert.equal(decoder.line, 0);
    assert.deepEqual(flat(decoder.feed(":1}\n")), [{ message: { a: 1 }, line: 1 }]);
    assert.equal(decoder.buffered, 0);
  });

  test("a multi-byte character split across chunks", () => {
    const data = bytes('"é€😀"\n');
    for (let cut = 1; cut < data.length; cut++) {
      assert.deepEqual(flat(feedAll(new Decoder(), data, [cut])), [{ message: "é€😀", line: 1 }], `cut ${cut}`);
    }
  });

  test("CRLF, also with the CR and LF in different chunks", () => {
    assert.deepEqual(flat(feedAll(new Decoder(), bytes("1\r\n2\r\n"), [2, 5])), [
      { message: 1, line: 1 },
      { message: 2, line: 2 },
    ]);
  });

  test("a BOM is skipped at the start, even split, and only there", () => {
    const data = Uint8Array.of(0xef, 0xbb, 0xbf, 0x37, 0x0a);
    for (const cuts of [[], [1], [2], [1, 2], [3], [1, 2, 3, 4]]) {
      assert.deepEqual(flat(feedAll(new Decoder(), data, cuts)), [{ message: 7, line: 1 }], `cuts ${cuts}`);
    }
    const decoder = new Decoder();
    decoder.feed("1\n");
    assert.deepEqual(flat(decoder.feed("\ufeff2\n")), [{ error: "DECODE_ERROR", line: 2 }]);
    assert.deepEqual(flat(feedAll(new Decoder(), Uint8Array.of(0xef, 0xbb))), [
      { error: "TRUNCATED_LINE", line: 1, delivered: false },
    ]);
  });

  test("an over-long line is reported at once and skipped without buffering it", () => {
    const decoder = new Decoder({ maxLine: 100 });
    const chunk = bytes("x".repeat(64));
    const first = decoder.feed(chunk);
    assert.deepEqual(first, []);
    const second = decoder.feed(chunk);
    assert.equal(second.length, 1);
    assert.ok(second[0] instanceof Malformed && second[0].error instanceof FrameTooLarge);
    assert.equal(second[0].error.line, 1);
    assert.equal(second[0].error.limit, 100);
    assert.equal(second[0].error.excerpt, "x".repeat(40) + "…");
    for (let i = 0; i < 1000; i++) {
      assert.deepEqual(decoder.feed(chunk), []);
      assert.equal(decoder.buffered, 0);
    }
    assert.deepEqual(flat(decoder.feed("xx\n5\n")), [{ message: 5, line: 2 }]);
    assert.equal(decoder.line, 2);
  });

  test("the limit counts bytes before the newline, CR included", () => {
    assert.deepEqual(flat(feedAll(new Decoder({ maxLine: 3 }), bytes("123\n"))), [{ message: 123, line: 1 }]);
    assert.deepEqual(flat(feedAll(new Decoder({ maxLine: 3 }), bytes("123\r\n"))), [
      { error: "FRAME_TOO_LARGE", line: 1 },
    ]);
    assert.deepEqual(flat(feedAll(new Decoder({ maxLine: 3 }), bytes('"é"\n'))), [{ error: "FRAME_TOO_LARGE", line: 1 }]);
    assert.throws(() => new Decoder({ maxLine: 0 }), RangeError);
  });

  test("a final line without newline: delivered when it parses", () => {
    const decoder = new Decoder();
    assert.deepEqual(flat(decoder.feed("1\n42")), [{ message: 1, line: 1 }]);
    assert.equal(decoder.buffered, 2);
    const events = decoder.feedEof();
    assert.equal(events.length, 2);
    assert.ok(events[0] instanceof Messages);
    assert.deepEqual([events[0].values, events[0].line], [[42], 2]);
    assert.ok(events[1] instanceof Truncated && events[1].error instanceof TruncatedLine);
    assert.equal(events[1].error.delivered, true);
    assert.equal(
      events[1].error.message,
      "line 2: stream ended without a final newline (the line parsed and was delivered) in '42'",
    );
  });

  test("a final line without newline: reported when it does not parse", () => {
    const decoder = new Decoder();
    decoder.feed('{"a":');
    const events = decoder.feedEof();
    assert.equal(events.length, 1);
    assert.ok(events[0] instanceof Truncated);
    assert.equal(events[0].error.delivered, false);
    assert.equal(events[0].error.line, 1);
    assert.match(events[0].error.reason, /^stream ended in the middle of a line \(.+\)$/);
    assert.equal(events[0].error.excerpt, '{"a":');
    const bad = new Decoder();
    bad.feed(Uint8Array.of(0x31, 0x0a, 0x22, 0xfe));
    assert.equal(
      bad.feedEof()[0].error.reason,
      "stream ended in the middle of a line (invalid UTF-8 (byte 0xfe))",
    );
  });

  test("feedEof ends the stream: feed throws, a second feedEof gives nothing", () => {
    const decoder = new Decoder();
    decoder.feed("1");
    assert.equal(decoder.feedEof().length, 2);
    assert.deepEqual(decoder.feedEof(), []);
    assert.throws(() => decoder.feed("2\n"), /feed\(\) after feedEof\(\)/);
  });

  test("chunks: Buffer, Uint8Array, ArrayBuffer, DataView, string", () => {
    const decoder = new Decoder();
    const events = [
      ...decoder.feed(Buffer.from("1\n")),
      ...decoder.feed(bytes("2\n")),
      ...decoder.feed(bytes("3\n").buffer),
      ...decoder.feed(new DataView(bytes("4\n").buffer)),
      ...decoder.feed("5\n"),
    ];
    assert.deepEqual(flat(events).map((e) => e.message), [1, 2, 3, 4, 5]);
    assert.throws(() => decoder.feed(5), TypeError);
  });

  test("held bytes are copied: the caller may reuse its buffer", () => {
    const decoder = new Decoder();
    const buffer = Buffer.from('"abc');
    decoder.feed(buffer);
    buffer.write('"xyz');
    assert.deepEqual(flat(decoder.feed('"\n')), [{ message: "abc", line: 1 }]);
  });

  test("what the fast path cannot see goes through the slow path", () => {
    const text = '1\n"\\ud800"\n[1e400]\n' + "[".repeat(1025) + "]".repeat(1025) + "\n2\n";
    assert.deepEqual(flat(new Decoder().feed(text)), [
      { message: 1, line: 1 },
      { error: "DECODE_ERROR", line: 2 },
      { error: "DECODE_ERROR", line: 3 },
      { error: "DECODE_ERROR", line: 4 },
      { message: 2, line: 5 },
    ]);
    const utf8 = Uint8Array.of(0x31, 0x0a, 0xff, 0x0a, 0x32, 0x0a);
    const events = new Decoder().feed(utf8);
    assert.deepEqual(flat(events), [
      { message: 1, line: 1 },
      { error: "DECODE_ERROR", line: 2 },
      { message: 2, line: 3 },
    ]);
    assert.equal(events[1].error.reason, "invalid UTF-8 (byte 0xff)");
  });

  // (BOTHWAYS_QUICK=1, make mutation: 2.5 s per mutant, and no branch the others miss)
  test("many chunks of one huge line cost linear time", { skip: STRESS_SKIPPED }, () => {
    const decoder = new Decoder();
    const chunk = bytes("[" + "1,".repeat(32767));
    const started = performance.now();
    for (let i = 0; i < 256; i++) decoder.feed(chunk); // 16 MiB held
    assert.equal(decoder.buffered, 256 * chunk.length);
    assert.ok(performance.now() - started < 5000);
    decoder.feed("1]\n");
    assert.equal(decoder.buffered, 0);
  });
});

describe("binary frames", () => {
  /**
   * @param {number} size
   * @returns {Uint8Array} bytes of every value, newlines and "#blob " among them.
   */
  const noise = (size) => {
    const out = new Uint8Array(size);
    for (let i = 0; i < size; i++) out[i] = (i * 131 + (i >> 8)) & 0xff;
    out.set(bytes("\n#blob 3\n"), Math.min(100, Math.max(0, size - 9)));
    return out;
  };
  /**
   * @param {...(string | Uint8Array)} parts
   * @returns {Uint8Array}
   */
  const stream = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => (typeof p === "string" ? bytes(p) : p))));

  test("a 10 MB frame among messages, in 64 KiB chunks: one Binary, its own bytes, lines counted", () => {
    const data = noise(10_000_000);
    const input = stream('{"a": 1}\n2\n', `#blob ${data.length}\n`, data, "3\n4\n");
    for (const size of [65536, 65537, 1_000_003]) {
      const cuts = [];
      for (let at = size; at < input.length; at += size) cuts.push(at);
      const events = feedAll(new Decoder({ binary: true }), input, cuts);
      const frames = events.filter((event) => event instanceof Binary);
      assert.equal(frames.length, 1);
      assert.equal(frames[0].line, 3);
      assert.ok(Buffer.from(frames[0].data).equals(Buffer.from(data)), `chunks of ${size}`);
      assert.deepEqual(
        flat(events.filter((event) => !(event instanceof Binary))),
        [
          { message: { a: 1 }, line: 1 },
          { message: 2, line: 2 },
          { message: 3, line: 4 },
          { message: 4, line: 5 },
        ],
      );
    }
  });

  test("a frame's bytes are its own: the chunk they came in may be reused", () => {
    const chunk = stream("#blob 3\nabc", "1\n");
    const decoder = new Decoder({ binary: true });
    const events = decoder.feed(chunk);
    chunk.fill(0);
    assert.equal(Buffer.from(events[0].data).toString(), "abc");
    assert.equal(events[0].data.byteOffset, 0);
    assert.equal(events[0].data.buffer.byteLength, 3);
    assert.ok(Object.isFrozen(events[0]));
    assert.ok(events[0] instanceof bothways.Event);
  });

  test('"#blob " anywhere but at a line\'s start is text: the lines stay one batch', () => {
    const events = new Decoder({ binary: true }).feed('"#blob 3"\n{"k": "x #blob 2"}\n5\n');
    assert.equal(events.length, 1);
    assert.deepEqual(events[0].values, ["#blob 3", { k: "x #blob 2" }, 5]);
  });

  test("a header split from its line, its bytes and its count across chunks", () => {
    const input = stream("1\n#bl", "ob 1", "2\n", "abcdefghijk", "l7\n");
    const decoder = new Decoder({ binary: true });
    const events = [];
    for (const chunk of [input.subarray(0, 5), input.subarray(5, 9), input.subarray(9, 12), input.subarray(12)]) {
      events.push(...decoder.feed(chunk));
    }
    events.push(...decoder.feedEof());
    assert.deepEqual(flat(events), [
      { message: 1, line: 1 },
      { binary: Buffer.from("abcdefghijkl").toString("hex"), line: 2 },
      { message: 7, line: 3 },
    ]);
  });

  test("a frame over the limit is dropped as it comes, never held", () => {
    const decoder = new Decoder({ maxLine: 1000, binary: true });
    const events = [...decoder.feed("#blob 1000000\n")];
    for (let i = 0; i < 100; i++) events.push(...decoder.feed(new Uint8Array(10_000).fill(10)));
    assert.equal(decoder.buffered, 0);
    events.push(...decoder.feed("8\n"), ...decoder.feedEof());
    assert.deepEqual(flat(events, true), [
      {
        error: "FRAME_TOO_LARGE",
        line: 1,
        column: 0,
        reason: "binary frame of 1000000 bytes is over the limit of 1000 bytes (skipped)",
      },
      { message: 8, line: 2 },
    ]);
    const big = flat(new Decoder({ binary: true }).feed("#blob 9999999999999999999\n"), true);
    assert.equal(big[0].reason, `binary frame of 9999999999999999999 bytes is over the limit of ${MAX_LINE} bytes (skipped)`);
  });

  test("headers that are no headers", () => {
    for (const header of ["#blob ", "#blob -1", "#blob 1 ", "#blob  1", "#blob 1e3", "#blob 0x10", "#blob 12345678901234567890"]) {
      const events = new Decoder({ binary: true }).feed(`${header}\n1\n`);
      assert.deepEqual(flat(events, true), [
        { error: "DECODE_ERROR", line: 1, column: 1, reason: "invalid binary frame header" },
        { message: 1, line: 2 },
      ], header);
      assert.equal(events[0].error.excerpt, header);
    }
    // an over-long line is that, header or not, in one chunk as in many
    for (const cuts of [[], [3], [1, 2, 3, 4, 5, 6, 7]]) {
      assert.deepEqual(flat(feedAll(new Decoder({ maxLine: 6, binary: true }), bytes("#blob 1\nx\n2\n"), cuts)), [
        { error: "FRAME_TOO_LARGE", line: 1 },
        { error: "DECODE_ERROR", line: 2 },
        { message: 2, line: 3 },
      ]);
    }
  });

  test("the stream ends inside a frame over the limit: truncated too", () => {
    const events = feedAll(new Decoder({ maxLine: 8, binary: true }), bytes("#blob 50\nabc"));
    assert.deepEqual(flat(events, true), [
      {
        error: "FRAME_TOO_LARGE",
        line: 1,
        column: 0,
        reason: "binary frame of 50 bytes is over the limit of 8 bytes (skipped)",
      },
      {
        error: "TRUNCATED_LINE",
        line: 1,
        delivered: false,
        reason: "stream ended inside a binary frame (3 of 50 bytes)",
      },
    ]);
  });

  test("the Inbox hands a frame out as its Binary, among the values, in order", () => {
    const inbox = new Inbox({ binary: true });
    inbox.feed(stream("1\n#blob 2\nxy2\n#blob 0\n", "3"));
    inbox.feedEof();
    const values = [];
    while (inbox.length > 0) values.push(inbox.pop());
    assert.equal(values.length, 5);
    assert.deepEqual([values[0], values[2], values[4]], [1, 2, 3]);
    assert.ok(values[1] instanceof Binary && values[3] instanceof Binary);
    assert.equal(Buffer.from(values[1].data).toString(), "xy");
    assert.equal(values[3].data.length, 0);
    // without `binary`, a header is a bad line and its bytes are lines
    const plain = new Inbox({ onError: () => {} });
    plain.feed("#blob 2\n[]\n");
    assert.equal(plain.length, 1);
    assert.deepEqual(plain.pop(), []);
  });
});

describe("module", () => {
  test("the core imports nothing but itself (browser-safe, sans-I/O)", (t) => {
    for (const file of ["index.js", "wire.js", "errors.js"]) {
      const source = readFileSync(new URL(`../src/${file}`, import.meta.url), "utf8");
      if (source.includes("stryMutAct_")) {
        t.skip("instrumented by Stryker (make mutation): not the source as shipped");
        return;
      }
      const specifiers = [...source.matchAll(/^\s*(?:import|export)\b[^;]*?from\s+"([^"]+)"/gm)].map((m) => m[1]);
      for (const specifier of specifiers) {
        assert.match(specifier, /^\.\/[a-z]+\.js$/, `${file} imports ${specifier}`);
      }
      assert.doesNotMatch(source, /\brequire\(|\bimport\(|\bprocess\.|\bDate\.now\(|\bperformance\./, file);
    }
  });

  test("exports mirror wire.py, errors.py and channels.py name for name", () => {
    assert.deepEqual(Object.keys(bothways).sort(), [
      "Binary",
      "BothwaysError",
      "CallTimeout",
      "ChildExited",
      "ConnectError",
      "DecodeError",
      "Decoder",
      "EncodeError",
      "Event",
      "FrameTooLarge",
      "HandleError",
      "MAX_LINE",
      "MAX_SAFE_INTEGER",
      "Malformed",
      "Messages",
      "RemoteError",
      "TransportClosed",
      "TransportError",
      "Truncated",
      "TruncatedLine",
      "UrlError",
      "connect",
      "decode",
      "encode",
      "encodeMany",
      "listen",
    ]);
  });
});

test("encodeMany is the lines of encode", async () => {
  const { encodeMany, encode: enc, EncodeError: EE } = await import("../src/index.js");
  const values = [{ a: 1 }, [2.5, null], "x\u2028", NaN];
  assert.equal(encodeMany(values), values.map((v) => enc(v)).join(""));
  assert.equal(encodeMany([]), "");
  assert.throws(() => encodeMany(values, { strict: true }), EE);
});

describe("mutation testing's finds (docs/mutation.md)", () => {
  test("encodeMany passes strict on to every value", () => {
    assert.equal(encodeMany([1, 2], { strict: true }), "1\n2\n");
    assert.equal(encodeMany([1, NaN]), "1\nnull\n");
    assert.throws(() => encodeMany([1, NaN], { strict: true }), /strict mode/);
  });

  test("frames among lines keep the line count and name bad headers", () => {
    const decoder = new Decoder({ binary: true, maxLine: 64 });
    assert.deepStrictEqual(decoder.feed(utf8("1\n2\n")).map((e) => e.constructor.name), ["Messages"]);
    const events = decoder.feed(utf8("3\n#blob 2\nab4\nx\n#blob z\n#blob 99\n"));
    assert.deepStrictEqual(
      events.map((e) => e.constructor.name),
      ["Messages", "Binary", "Messages", "Malformed", "Malformed", "Malformed"],
    );
    const [messages, binary, after, bad, header, tooLarge] = events;
    assert.deepStrictEqual(
      [messages.values, messages.line, [...binary.data], binary.line, after.values, after.line],
      [[3], 3, [97, 98], 4, [4], 5],
    );
    assert.equal(bad.error.line, 6);
    assert.ok(header.error instanceof DecodeError && !(header.error instanceof FrameTooLarge));
    assert.deepStrictEqual(
      [header.error.line, header.error.column, header.error.reason, header.error.excerpt],
      [7, 1, "invalid binary frame header", "#blob z"],
    );
    assert.ok(tooLarge.error instanceof FrameTooLarge);
    assert.deepStrictEqual([tooLarge.error.line, tooLarge.error.limit], [8, 64]);
    assert.equal(tooLarge.error.message, "line 8: binary frame of 99 bytes is over the limit of 64 bytes (skipped)");
    assert.deepStrictEqual(decoder.feed(utf8("y\n")), []); // the skipped frame's bytes
    assert.equal(decoder.line, 8);
  });

  test("a text is decoded after one BOM, and a lone surrogate in it is named where it is", () => {
    assert.deepStrictEqual(decode("\ufeff[1]"), [1]);
    assert.throws(() => decode("\ufeff\ufeff[1]"), { line: 1, column: 1 });
    assert.throws(() => decode('["ok", "a\ud800"]'), { line: 1, column: 10, reason: "lone surrogate in string" });
  });

  test("the excerpt of a decode error is centred on it and keeps its line", () => {
    const bad = new Uint8Array([...utf8('["' + "a".repeat(70)), 0xff, ...utf8("b".repeat(30) + '"]')]);
    assert.throws(() => decode(bad), { column: 73, excerpt: "…" + "a".repeat(20) + "\ufffd" + "b".repeat(19) + "…" });
    assert.throws(() => decode(utf8("[1 X\r\n")), { column: 4, excerpt: "[1 X" }); // its CR left out
  });

  test("a decoder takes no frames and one-byte lines at least by default", () => {
    const events = new Decoder().feed(utf8("#blob 1\nx\n"));
    assert.deepStrictEqual(
      events.map((e) => [e.constructor.name, e.error.line]),
      [["Malformed", 1], ["Malformed", 2]],
    );
    assert.throws(() => new Decoder({ maxLine: 0 }), { name: "RangeError", message: "maxLine must be at least 1" });
    assert.deepStrictEqual(flat(new Decoder({ maxLine: 1 }).feed(utf8("1\n"))), flat(new Decoder().feed(utf8("1\n"))));
  });

  test("lines around frames keep their numbers in any chunk", () => {
    const decoder = new Decoder({ binary: true });
    decoder.feed(utf8("1\n2\n"));
    let events = decoder.feed(utf8("3\n4\n#blob 1\nx5\n6\n"));
    assert.deepStrictEqual(
      events.map((e) => [e.constructor.name, e.line]),
      [["Messages", 3], ["Binary", 5], ["Messages", 6]],
    );
    assert.deepStrictEqual([events[0].values, [...events[1].data], events[2].values, decoder.line], [[3, 4], [120], [5, 6], 7]);
    events = decoder.feed(utf8("\n#blob 1\ny7\n")); // a chunk that starts with a blank line
    assert.deepStrictEqual(
      events.map((e) => [e.constructor.name, e.line]),
      [["Binary", 9], ["Messages", 10]],
    );
    assert.deepStrictEqual([[...events[0].data], events[1].values, decoder.line], [[121], [7], 10]);
  });

  test("the excerpt of an over-long line marks the cut whatever its characters", () => {
    // characters of 4 bytes: the first 160 bytes hold 40 of them exactly, and more follow; a line
    // held over the limit (cut by the chunks) goes on too
    const line = "😀".repeat(41);
    for (const data of [utf8(`${line}\n`), utf8(`"${line}"\n`), utf8(`#blob xx${line}\n`)]) {
      const cuts = [[data], [data.subarray(0, -1), utf8("\n")], [data.subarray(0, 100), data.subarray(100)]];
      for (const chunks of cuts) {
        const decoder = new Decoder({ binary: true, maxLine: 64 });
        const events = chunks.flatMap((chunk) => decoder.feed(chunk));
        assert.equal(events.length, 1);
        assert.ok(events[0].error instanceof FrameTooLarge);
        assert.ok(events[0].error.excerpt.endsWith("…"), events[0].error.excerpt);
      }
    }
  });

  // Encoding: the walk that names the problem (findProblem), and when it runs.

  test("encode's reasons for a BigInt, a cycle and too deep a value", () => {
    assert.throws(() => encode({ id: 2n ** 64n }), {
      path: "$.id",
      reason:
        "BigInt 18446744073709551616n cannot be sent (JSON has no BigInt: send it as a string, " +
        "or as a Number within ±(2**53-1))",
    });
    const loop = [];
    loop.push(loop);
    assert.throws(() => encode(loop), { path: "$[0]", message: "$[0]: circular reference" });
    let deep = [];
    for (let i = 0; i < 1024; i++) deep = [deep];
    assert.throws(() => encode(deep), { reason: "nesting deeper than 1024 arrays/objects (the decoders' limit)" });
  });

  test("the first problem in document order is named, strict or not, also when JSON.stringify throws", () => {
    assert.throws(() => encode([NaN, 1n]), { path: "$[1]", reason: /^BigInt 1n / });
    assert.throws(() => encode([NaN, 1n], { strict: true }), {
      path: "$[0]",
      reason: "NaN is not a JSON number (strict mode; the default sends null)",
    });
    assert.throws(() => encode([true, false, null, 0, "\ud800"]), { path: "$[4]", reason: "string contains a lone surrogate" });
    assert.throws(() => encode({ a: 1, b: "ok", c: "\ud800" }), { path: "$.c" });
    // options given, strict not: NaN still sends null, on the slow path too
    assert.equal(encode([NaN], {}), "[null]\n");
    assert.equal(encode([NaN, "x".repeat(3000)]), `[null,"${"x".repeat(3000)}"]\n`);
  });

  test("members JSON.stringify drops, or writes as null, are not looked at", () => {
    assert.throws(() => encode([undefined, () => 1, Symbol("s"), "\ud800"]), { path: "$[3]" });
    assert.throws(() => encode({ u: undefined, f() {}, s: Symbol("s"), bad: "\ud800" }), { path: "$.bad" });
    assert.throws(() => encode({ "\ud800": undefined, a: "\ud800" }), {
      path: "$.a",
      reason: "string contains a lone surrogate",
    });
    assert.equal(encode([undefined, null], { strict: true }), "[null,null]\n");
    assert.equal(encode({ u: undefined, n: null }, { strict: true }), '{"n":null}\n');
  });

  test("a value met twice, not inside itself, is no cycle", () => {
    const shared = { x: 1 };
    assert.equal(encode([shared, shared]), '[{"x":1},{"x":1}]\n');
    assert.throws(() => encode([shared, { y: shared }, "\ud800"]), { path: "$[2]", reason: "string contains a lone surrogate" });
  });

  test("toJSON gets its key, the empty string at the top level", () => {
    const value = { toJSON: (key) => (key === "" ? NaN : 0) };
    assert.throws(() => encode(value, { strict: true }), { path: "$", reason: /^NaN is not a JSON number/ });
    assert.equal(encode([value], { strict: true }), "[0]\n");
  });

  test("boxed primitives are what they box: leaves, even at the deepest level", () => {
    for (const [boxed, written] of [
      [new Boolean(true), "true"],
      [new Number(1), "1"],
      [new String("s"), '"s"'],
    ]) {
      let inner = boxed;
      for (let i = 1; i < 1024; i++) inner = [inner];
      // ({} adds an opener: more than 1024 of them make encode look closer)
      assert.equal(encode([{}, inner]), `[{},${"[".repeat(1023)}${written}${"]".repeat(1023)}]\n`, written);
    }
    assert.throws(() => encode(new String("a\ud800")), { path: "$" });
    assert.throws(() => encode([new Number(NaN)], { strict: true }), { path: "$[0]" });
  });

  test("an object without a prototype is walked as any other", () => {
    const map = Object.assign(Object.create(null), { ok: 1, k: "\ud800" });
    assert.throws(() => encode({ map }), { path: "$.map.k" });
  });

  test("a BigInt.prototype.toJSON of the application's is honoured", () => {
    let deep = [];
    for (let i = 0; i < 1024; i++) deep = [deep];
    BigInt.prototype.toJSON = function () {
      return this === 7n ? deep : String(this);
    };
    try {
      assert.equal(encode({ id: 5n }), '{"id":"5"}\n');
      assert.throws(() => encode([1n, NaN], { strict: true }), { path: "$[1]" });
      assert.throws(() => encode(7n), { path: "$" + "[0]".repeat(1024), reason: /^nesting deeper/ });
    } finally {
      delete BigInt.prototype.toJSON;
    }
  });

  test("a function's toJSON is honoured as JSON.stringify honours it", () => {
    const fn = (result) => Object.assign(() => {}, { toJSON: () => result });
    let deep = [];
    for (let i = 0; i < 1024; i++) deep = [deep];
    assert.throws(() => encode({ a: fn("\ud800") }), { path: "$.a", reason: "string contains a lone surrogate" });
    assert.throws(() => encode([fn(NaN)], { strict: true }), { path: "$[0]", reason: /^NaN is not a JSON number/ });
    assert.throws(() => encode(fn(NaN), { strict: true }), { path: "$", reason: /^NaN is not a JSON number/ });
    assert.throws(() => encode([fn(1n)]), { name: "EncodeError", path: "$[0]", reason: /^BigInt 1n / });
    assert.throws(() => encode([fn(deep)]), { path: "$" + "[0]".repeat(1024), reason: /^nesting deeper/ });
    assert.equal(encode([fn("ok"), () => {}]), '["ok",null]\n');
  });

  test("too deep is found whatever the containers: objects, both kinds, a toJSON's result", () => {
    let objects = {};
    for (let i = 0; i < 1023; i++) objects = { a: objects };
    assert.equal(encode(objects), '{"a":'.repeat(1023) + "{}" + "}".repeat(1023) + "\n");
    assert.throws(() => encode({ a: objects }), { path: "$" + ".a".repeat(1024), reason: /^nesting deeper/ });
    let mixed = {};
    for (let i = 0; i < 1024; i++) mixed = [mixed];
    assert.throws(() => encode(mixed), { path: "$" + "[0]".repeat(1024) });
    let arrays = [];
    for (let i = 0; i < 1024; i++) arrays = [arrays];
    assert.throws(() => encode({ toJSON: () => arrays }), { path: "$" + "[0]".repeat(1024) });
  });

  // Decoding one text

  test("decode skips three bytes only when they are a whole BOM", () => {
    for (const [start, reason] of [
      [[0xe0, 0xbb, 0xbf], "unexpected character U+0EFF"],
      [[0xef, 0xbc, 0xbf], "unexpected character U+FF3F"],
      [[0xef, 0xbb, 0x80], "unexpected character U+FEC0"],
    ]) {
      assert.throws(() => decode(Uint8Array.of(...start, 0x31)), { line: 1, column: 1, reason }, reason);
    }
    // a second BOM is a character: in the excerpt too
    assert.throws(() => decode(Uint8Array.of(0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0xff)), {
      column: 2,
      reason: "invalid UTF-8 (byte 0xff)",
      excerpt: "\ufeff\ufffd",
    });
  });

  test("the checks after JSON.parse look at every kind of member", () => {
    assert.throws(() => decode('{"a": 1e400}'), { column: 7, reason: "number too large (it overflows to infinity)" });
    assert.throws(() => decode('{"a": "\\ud800"}'), { column: 8, reason: "lone surrogate \\ud800 in string" });
    assert.deepStrictEqual(decode('{"t": true, "f": false, "s": "\\u00e9", "n": null, "x": 1}'), {
      t: true,
      f: false,
      s: "é",
      n: null,
      x: 1,
    });
    assert.deepStrictEqual(decode('[true, "\\u00e9", null, 1, {}]'), [true, "é", null, 1, {}]);
    // any leaf inside 1024 levels is fine: only containers count
    for (const leaf of ['"s"', "null", "true", "1"]) {
      assert.equal(decode("[".repeat(1024) + leaf + "]".repeat(1024)).length, 1, leaf);
    }
    assert.ok(decode("[".repeat(1023) + '{"n": null, "s": "s", "t": true}' + "]".repeat(1023)));
  });

  test("the excerpt of a decode error is its own line, only its final CRs left out", () => {
    assert.throws(() => decode("[1,\n2 3\n]"), { line: 2, column: 3, excerpt: "2 3" });
    assert.throws(() => decode("[1,\r2 3]"), { line: 1, column: 7, excerpt: "[1,\r2 3]" });
    assert.throws(() => decode("[1 X\r\r\n"), { line: 1, column: 4, excerpt: "[1 X" });
  });

  test("the excerpt near the end of a long line shows its last 40 characters", () => {
    const text = "[" + "1,".repeat(30) + "x]";
    assert.throws(() => decode(text), { column: 62, excerpt: "…" + text.slice(-40) });
    const forty = "x" + "y".repeat(39);
    assert.throws(() => decode(forty), { column: 1, excerpt: forty });
  });

  test("columns and excerpts count characters: a pair is one, a lone surrogate one", () => {
    assert.throws(() => decode("[😀]"), { column: 2, reason: "unexpected character U+1F600" });
    assert.throws(() => decode("😀".repeat(30)), { column: 1, excerpt: "😀".repeat(30) });
    assert.throws(() => decode("😀".repeat(50)), { column: 1, excerpt: "😀".repeat(40) + "…" });
    // 40 characters then the end (no "…"), or 41 (cut after the 40th)
    const head = "x" + "y".repeat(38);
    for (const [end, excerpt] of [
      ["\u{10000}", head + "\u{10000}"],
      ["\u{10ffff}", head + "\u{10ffff}"],
      ["a\udc00", head + "a…"],
      ["\udc00\udc00", head + "\udc00…"],
      ["\ud800a", head + "\ud800…"],
      ["\ud800\ue000", head + "\ud800…"],
      ["\ud800\udc00\ud800", head + "\u{10000}…"],
    ]) {
      assert.throws(() => decode(head + end), { column: 1, excerpt }, JSON.stringify(end));
    }
  });

  test("invalid UTF-8: the first byte of the first bad sequence, as Python names it", () => {
    // [bytes, column, the byte named]
    const cases = [
      [[0x5b, 0x80, 0x5d], 2, 0x80], // a continuation byte alone
      [[0x80, 0x80, 0x80, 0x80, 0xff], 1, 0x80],
      [[0x31, 0xc3], 2, 0xc3], // cut short
      [[0x31, 0xc3, 0x31], 2, 0xc3],
      [[0x31, 0xe2, 0x82, 0xc0, 0x31], 2, 0xe2],
      [[0x31, 0xe0, 0x80, 0x80], 2, 0xe0], // overlong
      [[0x31, 0xf0, 0x80, 0x80, 0x80], 2, 0xf0],
      [[0x31, 0xf4, 0x90, 0x80, 0x80], 2, 0xf4], // beyond U+10FFFF
      [[0x31, 0xf5, 0x80, 0x80, 0x80], 2, 0xf5],
      // good characters at the edges of their ranges, then a bad byte
      [[0xc2, 0xa9, 0xff], 2, 0xff],
      [[0xc3, 0x80, 0xff], 2, 0xff],
      [[0xc3, 0xbf, 0xff], 2, 0xff],
      [[0xdf, 0xbf, 0xff], 2, 0xff],
      [[0xe0, 0xa0, 0x80, 0xff], 2, 0xff],
      [[0xe2, 0x82, 0x80, 0xff], 2, 0xff],
      [[0xe2, 0x82, 0xac, 0xff], 2, 0xff],
      [[0xe2, 0x82, 0xbf, 0xff], 2, 0xff],
      [[0xed, 0x9f, 0xbf, 0xff], 2, 0xff],
      [[0xef, 0xbc, 0xbf, 0xff], 2, 0xff],
      [[0xf0, 0x9f, 0x98, 0x80, 0xff], 2, 0xff],
      [[0xf1, 0x80, 0x80, 0x80, 0xff], 2, 0xff],
      [[0xf4, 0x8f, 0xbf, 0xbf, 0xff], 2, 0xff],
    ];
    for (const [data, column, byte] of cases) {
      const reason = `invalid UTF-8 (byte 0x${byte.toString(16)})`;
      assert.throws(() => decode(Uint8Array.from(data)), { line: 1, column, reason }, String(data));
    }
  });

  test("the scan goes past every kind of good value to the error", () => {
    // [text, column, reason]
    const cases = [
      ["[[], {}, x]", 10, "unexpected character 'x'"],
      ["[19, 9, -1, 1e-5, 1E+5, x]", 25, "unexpected character 'x'"],
      ["[true, false, null, x]", 21, "unexpected character 'x'"],
      ["[1,\t2 3]", 7, "expected ',' or ']'"],
      ['["\\n\\"", "a b", x]', 17, "unexpected character 'x'"],
      ['["\\u0041", "\\ud800\\udc00", x]', 28, "unexpected character 'x'"],
      ['["\ufffd", "\u{10000}", "\u{10ffff}", x]', 17, "unexpected character 'x'"],
      // and stops at what is wrong
      ["1.", 3, "unexpected end of data"],
      ["-", 2, "unexpected end of data"],
      ["fal", 4, "unexpected end of data"],
      ["[tr", 4, "unexpected end of data"],
      ["{", 2, "unexpected end of data"],
      ['{"a": 1,', 9, "unexpected end of data"],
      ["{x", 2, "expected a string key"],
      ['"abc\\', 5, "invalid escape in string"],
      ['"\\x0041"', 2, "invalid escape in string"],
      ['"\\uzzzz"', 2, "invalid escape in string"],
      ['"\\ud800xxdc00"', 2, "lone surrogate \\ud800 in string"],
      ['"\\ud800\\uzzzz"', 2, "lone surrogate \\ud800 in string"],
      ['["\udfff", x]', 3, "lone surrogate in string"],
      ['"\udc00\udc00"', 2, "lone surrogate in string"],
      ['"\ud800\ue000"', 2, "lone surrogate in string"],
    ];
    for (const [text, column, reason] of cases) {
      assert.throws(() => decode(text), { line: 1, column, reason }, JSON.stringify(text));
    }
  });

  test("decode takes a SharedArrayBuffer, and names what it cannot take", () => {
    const shared = new SharedArrayBuffer(3);
    new Uint8Array(shared).set(bytes("[1]"));
    assert.deepStrictEqual(decode(shared), [1]);
    assert.throws(() => decode(42), {
      name: "TypeError",
      message: "expected bytes (Uint8Array, ArrayBuffer) or a string, got number",
    });
  });

  // Decoding a stream

  test("a first chunk is held for a BOM only when it may start one", () => {
    assert.deepStrictEqual(flat(new Decoder().feed("1\n")), [{ message: 1, line: 1 }]);
    const blank = new Decoder();
    assert.deepStrictEqual(blank.feed("\n"), []);
    assert.equal(blank.line, 1);
    const empty = new Decoder();
    assert.deepStrictEqual(empty.feed(new Uint8Array(0)), []);
    assert.deepStrictEqual(flat(empty.feed(Uint8Array.of(0xef, 0xbb, 0xbf, 0x31, 0x0a))), [{ message: 1, line: 1 }]);
  });

  test("the stream's first three bytes are skipped only when they are a whole BOM", () => {
    for (const start of [[0xe0, 0xbb, 0xbf], [0xef, 0xbc, 0xbf], [0xef, 0xbb, 0x80]]) {
      const events = new Decoder().feed(Uint8Array.of(...start, 0x31, 0x0a));
      assert.deepStrictEqual(flat(events), [{ error: "DECODE_ERROR", line: 1 }], String(start));
    }
    assert.deepStrictEqual(flat(new Decoder().feed('"¿"\n')), [{ message: "¿", line: 1 }]); // 22 c2 bf 22
  });

  test("the limit holds for one whole line in a chunk, and a line of the limit passes the slow path", () => {
    const decoder = new Decoder({ maxLine: 3 });
    decoder.feed("1\n");
    assert.deepStrictEqual(flat(decoder.feed("12345\n")), [{ error: "FRAME_TOO_LARGE", line: 2 }]);
    assert.deepStrictEqual(flat(new Decoder({ maxLine: 3 }).feed("123\nx\n")), [
      { message: 123, line: 1 },
      { error: "DECODE_ERROR", line: 2 },
    ]);
  });

  test("booleans and strings with escapes as whole lines, in one batch", () => {
    const events = new Decoder().feed('true\n"\\u00e9"\nfalse\n');
    assert.equal(events.length, 1);
    assert.deepStrictEqual(events[0].values, [true, "é", false]);
  });

  test("the excerpt of an over-long line: its first 40 characters, and … only when it goes on", () => {
    const excerpt = (maxLine, ...chunks) => {
      const decoder = new Decoder({ maxLine });
      const events = chunks.flatMap((chunk) => decoder.feed(chunk));
      assert.equal(events.length, 1);
      assert.ok(events[0].error instanceof FrameTooLarge);
      return events[0].error.excerpt;
    };
    assert.equal(excerpt(10, "1".repeat(40) + "\n"), "1".repeat(40));
    assert.equal(excerpt(10, "1".repeat(41) + "\n"), "1".repeat(40) + "…");
    assert.equal(excerpt(10, "😀".repeat(30) + "\n"), "😀".repeat(30));
    assert.equal(excerpt(100, "😀".repeat(40) + "\n"), "😀".repeat(40)); // 160 bytes, all shown
    // held across chunks: the line goes on
    assert.equal(excerpt(10, "x".repeat(11)), "x".repeat(11) + "…");
    assert.equal(excerpt(100, "x".repeat(64), "y".repeat(200)), "x".repeat(40) + "…");
  });

  test("feedEof: the excerpt keeps a BOM inside the stream; an unfinished frame is reported once", () => {
    const decoder = new Decoder();
    decoder.feed("1\n");
    decoder.feed(Uint8Array.of(0xef, 0xbb, 0xbf, 0x32));
    const [truncated] = decoder.feedEof();
    assert.deepStrictEqual([truncated.error.line, truncated.error.excerpt], [2, "\ufeff2"]);
    const framed = new Decoder({ binary: true });
    framed.feed("#blob 5\nab");
    const events = framed.feedEof();
    assert.equal(events.length, 1);
    assert.deepStrictEqual([events[0].error.reason, events[0].error.excerpt], ["stream ended inside a binary frame (2 of 5 bytes)", ""]);
    assert.deepStrictEqual(framed.feedEof(), []);
  });

  test("a header counts only at a line's start, also in a chunk that is not all UTF-8", () => {
    // without binary, a header is a bad line, in a chunk that is not UTF-8 too
    assert.deepStrictEqual(flat(new Decoder().feed(Uint8Array.of(0xff, ...bytes("\n#blob 1\nx\n2\n")))), [
      { error: "DECODE_ERROR", line: 1 },
      { error: "DECODE_ERROR", line: 2 },
      { error: "DECODE_ERROR", line: 3 },
      { message: 2, line: 4 },
    ]);
    // "#blob " or "#" within a line after a frame is text
    assert.deepStrictEqual(flat(new Decoder({ binary: true }).feed('#blob 1\nx"#blob 2"\n3\n')), [
      { binary: "78", line: 1 },
      { message: "#blob 2", line: 2 },
      { message: 3, line: 3 },
    ]);
    const events = new Decoder({ binary: true }).feed("#blob 1\nx#1\n");
    assert.deepStrictEqual(flat(events, true)[1], { error: "DECODE_ERROR", line: 2, column: 1, reason: "unexpected character '#'" });
    // a bad header as the last line of a chunk that is not UTF-8
    assert.deepStrictEqual(flat(new Decoder({ binary: true }).feed(Uint8Array.of(0xff, ...bytes("\n#blob \n"))), true), [
      { error: "DECODE_ERROR", line: 1, column: 1, reason: "invalid UTF-8 (byte 0xff)" },
      { error: "DECODE_ERROR", line: 2, column: 1, reason: "invalid binary frame header" },
    ]);
  });

  test("the newline right after a frame ends a line, also as the chunk's last one", () => {
    const decoder = new Decoder({ binary: true });
    assert.deepStrictEqual(flat(decoder.feed("#blob 1\nx\n5")), [{ binary: "78", line: 1 }]);
    assert.deepStrictEqual(flat(decoder.feed("\n")), [{ message: 5, line: 3 }]);
    assert.equal(decoder.line, 3);
  });

  test("an error JSON.stringify throws but the walk does not meet (a toJSON failing once) is rethrown as is", () => {
    let calls = 0;
    const value = {
      toJSON() {
        if (calls++ === 0) throw new RangeError("only the first time");
        return 1;
      },
    };
    assert.throws(() => encode(value), (error) => error instanceof RangeError && error.message === "only the first time");
  });

  test("a value whose toJSON gives undefined only to JSON.stringify is still not sent", () => {
    let calls = 0;
    const value = { toJSON: () => (calls++ === 0 ? undefined : 1) };
    assert.throws(() => encode(value), (error) => error instanceof EncodeError && error.reason === "value is not JSON serializable");
  });

  test("undefined members among many containers do not trouble the depth check", () => {
    const many = Array.from({ length: 1100 }, () => []);
    assert.equal(encode([undefined, ...many]), `[null,${JSON.stringify(many).slice(1)}\n`);
    assert.equal(encode({ a: undefined, b: many }), `{"b":${JSON.stringify(many)}}\n`);
  });
});

/** @param {string} text */
function utf8(text) {
  return new TextEncoder().encode(text);
}
