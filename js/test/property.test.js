// Property tests (fast-check, seeded, bounded): round trips, and the chunking invariant.
import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";

import { DecodeError, Decoder, EncodeError, MAX_LINE, Malformed, Messages, decode, encode } from "../src/index.js";
import { feedAll, same } from "./support.js";

const SETTINGS = { seed: 20241124, numRuns: 300 };

/**
 * Rebuilds a value as a JSON round trip gives it back: -0 becomes 0; with `fix`, lone
 * surrogates in strings and keys become U+FFFD. Keys are defined, not assigned, so that a
 * "__proto__" key stays a key.
 * @param {unknown} value
 * @param {boolean} [fix]
 * @returns {unknown}
 */
function normalize(value, fix = false) {
  if (Object.is(value, -0)) return 0;
  if (typeof value === "string") return fix ? value.toWellFormed() : value;
  if (Array.isArray(value)) return value.map((v) => normalize(v, fix));
  if (typeof value !== "object" || value === null) return value;
  const out = {};
  for (const [key, child] of Object.entries(value)) {
    Object.defineProperty(out, fix ? key.toWellFormed() : key, {
      value: normalize(child, fix),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * @param {unknown} value
 * @returns {boolean} whether some string or key holds a lone surrogate.
 */
function hasLoneSurrogate(value) {
  if (typeof value === "string") return !value.isWellFormed();
  if (Array.isArray(value)) return value.some(hasLoneSurrogate);
  if (typeof value !== "object" || value === null) return false;
  return Object.entries(value).some(([key, child]) => !key.isWellFormed() || hasLoneSurrogate(child));
}

// Any JSON value, strings drawn from all of Unicode ("binary"), made well-formed (fast-check
// does not promise to leave lone surrogates out): the values that can cross.
const goodJson = fc.jsonValue({ maxDepth: 4, stringUnit: "binary" }).map((value) => normalize(value, true));

test("any JSON value round-trips through encode and decode", () => {
  fc.assert(
    fc.property(goodJson, (value) => {
      const line = encode(value);
      assert.equal(line, JSON.stringify(value) + "\n");
      const expected = normalize(value);
      assert.ok(same(decode(line), expected), "decode(string)");
      assert.ok(same(decode(new TextEncoder().encode(line)), expected), "decode(bytes)");
      assert.ok(same(decode(line.slice(0, -1)), expected), "without the newline");
    }),
    SETTINGS,
  );
});

// A well-formed value with a lone surrogate put somewhere in a string or a key.
const loneSurrogate = fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "a\udc00\ud800b", "\ud83d");
const withLoneSurrogate = fc.oneof(
  fc.tuple(goodJson, loneSurrogate).map(([value, bad]) => [value, bad]),
  fc.tuple(goodJson, loneSurrogate).map(([value, bad]) => ({ ok: value, nested: [{ text: `x${bad}y` }] })),
  fc.tuple(goodJson, loneSurrogate).map(([value, bad]) => normalizeKey(`k${bad}`, value)),
);

/**
 * @param {string} key
 * @param {unknown} value
 * @returns {object} `{[key]: value}`, the key defined (never a prototype setter).
 */
function normalizeKey(key, value) {
  return Object.defineProperty({}, key, { value, enumerable: true, writable: true, configurable: true });
}

test("a lone surrogate anywhere is an EncodeError, and its escape a DecodeError", () => {
  fc.assert(
    fc.property(withLoneSurrogate, (value) => {
      assert.ok(hasLoneSurrogate(value));
      assert.throws(() => encode(value), EncodeError);
      assert.throws(() => decode(JSON.stringify(value)), DecodeError);
      assert.throws(() => decode(new TextEncoder().encode(JSON.stringify(value))), DecodeError);
    }),
    SETTINGS,
  );
});

test("a stream of encoded values decodes to those values, line by line", () => {
  fc.assert(
    fc.property(fc.array(goodJson, { maxLength: 30 }), fc.integer({ min: 1, max: 64 }), (values, size) => {
      const data = new TextEncoder().encode(values.map((v) => encode(v)).join(""));
      const cuts = [];
      for (let at = size; at < data.length; at += size) cuts.push(at);
      const got = feedAll(new Decoder(), data, cuts).flatMap((event) => {
        assert.ok(event instanceof Messages);
        return event.values.map((value, i) => [event.line + i, value]);
      });
      assert.equal(got.length, values.length);
      got.forEach(([line, value], i) => {
        assert.equal(line, i + 1);
        assert.ok(same(value, normalize(values[i])));
      });
    }),
    SETTINGS,
  );
});

const enc = (text) => new TextEncoder().encode(text);
const line = fc.oneof(
  { weight: 4, arbitrary: goodJson.map((value) => enc(encode(value).slice(0, -1))) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ...[
        "{bad",
        "[1,]",
        "NaN",
        '"\\ud800"',
        '{"k\\udc00": 1}',
        "1e400",
        "[-1E+400]",
        "[".repeat(1025) + "]".repeat(1025),
        "[".repeat(1024) + "]".repeat(1024),
        "\ufeff1",
        '"a\tb"',
        "1 2",
        "tru",
        '"é€😀"',
      ].map(enc),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      Uint8Array.of(0xff),
      Uint8Array.of(0x22, 0xc3, 0x22),
      Uint8Array.of(0x22, 0xed, 0xa0, 0x80, 0x22),
      Uint8Array.of(0xef, 0xbb, 0xbf, 0x31),
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom(...["", " ", "\t", " \r", "\r"].map(enc)) },
);
const stream = fc
  .record({
    bom: fc.boolean(),
    lines: fc.array(fc.tuple(line, fc.boolean()), { maxLength: 12 }),
    finalNewline: fc.boolean(),
  })
  .map(({ bom, lines, finalNewline }) => {
    const parts = bom ? [Uint8Array.of(0xef, 0xbb, 0xbf)] : [];
    lines.forEach(([bytes, crlf], i) => {
      parts.push(bytes);
      if (i < lines.length - 1 || finalNewline) parts.push(enc(crlf ? "\r\n" : "\n"));
    });
    const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      data.set(part, at);
      at += part.length;
    }
    return data;
  });

/**
 * Every field of every event, values and messages one by one, except the excerpt of a
 * FrameTooLarge: that one shows the bytes held when the line passed the limit, which depends on
 * the chunking when the limit is below 160 bytes (as in Python).
 * @param {import("../src/wire.js").Event[]} events
 */
function detailed(events) {
  return events.flatMap((event) => {
    if (event instanceof Messages) {
      return event.values.map((value, i) => ({ line: event.line + i, value }));
    }
    const { message, excerpt, ...fields } = event.error.toJson();
    const kind = event instanceof Malformed ? "Malformed" : "Truncated";
    return [fields.code === "FRAME_TOO_LARGE" ? { kind, ...fields } : { kind, message, excerpt, ...fields }];
  });
}

test("any chunking of any stream gives the events of feeding it whole", () => {
  fc.assert(
    fc.property(
      stream,
      fc.oneof(fc.constant(MAX_LINE), fc.integer({ min: 1, max: 200 })),
      fc.array(fc.nat(), { maxLength: 10 }),
      (data, maxLine, offsets) => {
        const cuts = [...new Set(offsets.map((n) => 1 + (n % Math.max(1, data.length - 1))))]
          .filter((cut) => cut < data.length)
          .sort((a, b) => a - b);
        const whole = detailed(feedAll(new Decoder({ maxLine }), data));
        assert.deepStrictEqual(detailed(feedAll(new Decoder({ maxLine }), data, cuts)), whole);
        if (data.length <= 400) {
          const bytewise = Array.from({ length: Math.max(0, data.length - 1) }, (_, i) => i + 1);
          assert.deepStrictEqual(detailed(feedAll(new Decoder({ maxLine }), data, bytewise)), whole);
        }
      },
    ),
    SETTINGS,
  );
});
