// The shared vectors (spec/vectors/*.json): the contract that tests/unit/test_vectors.py runs too.
//
// values.json: `value` + `text`: encode(value) is text + "\n" and decode(text) is `decodes_to`
// (default: value); `value` + `encode_error`: encode throws that code at `path`; `text`/`base64`
// alone: decode gives `decodes_to` or throws `decode_error` at `line` and `column` with `reason`. `text_js` overrides `text` here;
// `py_only` cases and the Python-only `big_ints` option are skipped.
// streams.json: the Decoder's flat events, fed whole, a byte at a time, split at every offset
// (inputs up to 300 bytes) and in 20 seeded random chunkings; `binary` cases with a decoder that
// takes binary frames.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { BothwaysError, Decoder, decode, encode } from "../src/index.js";
import { feedAll, flat, prng, same, utf8Bytes } from "./support.js";

const VECTORS = fileURLToPath(new URL("../../spec/vectors/", import.meta.url));

/**
 * @param {string} name
 * @returns {object[]}
 */
function load(name) {
  const path = VECTORS + name;
  if (!existsSync(path)) {
    // Fail loudly: a missing contract must never pass as "nothing to check".
    throw new Error(`shared vector file ${path} is missing (spec/vectors/generate.py writes it)`);
  }
  // JSON.parse, not our decode(): the files hold lone surrogates (as \u escapes) on purpose.
  return JSON.parse(readFileSync(path, "utf8")).cases;
}

/**
 * Replaces the vector tags with the values they stand for: {"$float": "nan"|"inf"|"-inf"|"-0"},
 * {"$bigint": "digits"} (a BigInt), {"$nested": n} (n arrays nested in each other).
 * @param {unknown} value
 * @returns {unknown}
 */
function untag(value) {
  if (Array.isArray(value)) {
    return value.map(untag);
  }
  if (typeof value !== "object" || value === null) {
    return value;
  }
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === "$float") {
    return { nan: NaN, inf: Infinity, "-inf": -Infinity, "-0": -0 }[value.$float] ?? Number(value.$float);
  }
  if (keys.length === 1 && keys[0] === "$bigint") {
    return BigInt(value.$bigint);
  }
  if (keys.length === 1 && keys[0] === "$nested") {
    let nested = [];
    for (let i = 1; i < value.$nested; i++) nested = [nested];
    return nested;
  }
  const out = {};
  for (const key of keys) {
    Object.defineProperty(out, key, { value: untag(value[key]), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * @param {object} case_
 * @returns {Uint8Array}
 */
function inputBytes(case_) {
  if ("base64" in case_) {
    return new Uint8Array(Buffer.from(case_.base64, "base64"));
  }
  return utf8Bytes("input" in case_ ? case_.input : case_.text);
}

/**
 * Flat events with messages compared by same() (type-strict, key order).
 * @param {object[]} got
 * @param {object[]} expected
 * @returns {boolean}
 */
function sameEvents(got, expected) {
  return (
    got.length === expected.length &&
    got.every((g, i) => {
      const e = expected[i];
      const keys = Object.keys(e);
      if (Object.keys(g).length !== keys.length || !keys.every((k) => k in g)) return false;
      return keys.every((k) => (k === "message" ? same(g.message, untag(e.message)) : g[k] === e[k]));
    })
  );
}

const VALUES = load("values.json").filter((c) => !c.py_only && !("big_ints" in (c.options ?? {})));
const STREAMS = load("streams.json");

test("the vector files are big enough", () => {
  assert.ok(load("values.json").length >= 60);
  assert.ok(STREAMS.length >= 40);
});

for (const case_ of VALUES) {
  test(`values: ${case_.name}`, () => {
    const options = case_.options;
    if ("value" in case_) {
      const value = untag(case_.value);
      if ("encode_error" in case_) {
        assert.throws(
          () => encode(value, options),
          (error) =>
            error instanceof BothwaysError &&
            error.code === case_.encode_error &&
            (!("path" in case_) || error.path === case_.path),
        );
        return;
      }
      const text = case_.text_js ?? case_.text;
      assert.equal(encode(value, options), text + "\n");
      const expected = "decodes_to" in case_ ? untag(case_.decodes_to) : value;
      assert.ok(same(decode(utf8Bytes(text)), expected), "decode(bytes)");
      assert.ok(same(decode(text), expected), "decode(string)");
      return;
    }
    const data = inputBytes(case_);
    if ("decode_error" in case_) {
      const where = { code: case_.decode_error, line: case_.line, column: case_.column, reason: case_.reason };
      assert.throws(
        () => decode(data),
        (error) =>
          error instanceof BothwaysError &&
          error.message.startsWith(`line ${case_.line}, col ${case_.column}: ${case_.reason}`),
      );
      assert.throws(() => decode(data), where, "decode(bytes)");
      if (!("base64" in case_)) {
        assert.throws(() => decode(case_.text), where, "decode(string)");
      }
    } else {
      assert.ok(same(decode(data), untag(case_.decodes_to)));
    }
  });
}

for (const case_ of STREAMS) {
  test(`streams: ${case_.name}`, () => {
    const data = inputBytes(case_);
    const options = { ...(case_.max_line ? { maxLine: case_.max_line } : {}), binary: case_.binary === true };
    const run = (cuts) => flat(feedAll(new Decoder(options), data, cuts), true);
    const expected = case_.events;
    const whole = run([]);
    assert.ok(sameEvents(whole, expected), `whole: ${JSON.stringify(whole).slice(0, 500)}`);
    const bytewise = [];
    for (let i = 1; i < data.length; i++) bytewise.push(i);
    assert.ok(sameEvents(run(bytewise), expected), "byte at a time");
    if (data.length <= 300) {
      for (let cut = 1; cut < data.length; cut++) {
        assert.ok(sameEvents(run([cut]), expected), `split at ${cut}`);
      }
    }
    const random = prng([...case_.name].reduce((h, ch) => Math.imul(h, 31) + ch.charCodeAt(0), 7));
    for (let round = 0; round < 20; round++) {
      const cuts = new Set();
      const count = data.length > 1 ? 1 + Math.floor(random() * 8) : 0;
      for (let i = 0; i < Math.min(count, data.length - 1); i++) cuts.add(1 + Math.floor(random() * (data.length - 1)));
      const sorted = [...cuts].sort((a, b) => a - b);
      assert.ok(sameEvents(run(sorted), expected), `cuts ${sorted}`);
    }
  });
}
