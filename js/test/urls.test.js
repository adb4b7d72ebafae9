// The channel URL parser against spec/vectors/urls.json (tests/unit/test_urls.py runs them too),
// and the dispatch table of connect/listen.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { TRANSPORTS, connect } from "../src/channels.js";
import { UrlError } from "../src/errors.js";
import { Address, SCHEMES, parse } from "../src/urls.js";

const FILE = fileURLToPath(new URL("../../spec/vectors/urls.json", import.meta.url));
const CASES = JSON.parse(readFileSync(FILE, "utf8")).cases;

test("the vectors cover every scheme and many errors", () => {
  const parsed = new Set(CASES.filter((c) => c.address).map((c) => c.address.scheme));
  assert.deepEqual([...parsed].sort(), [...SCHEMES].sort());
  assert.deepEqual(Object.keys(TRANSPORTS).sort(), [...SCHEMES].sort());
  assert.ok(CASES.filter((c) => "error" in c).length >= 30);
});

for (const c of CASES) {
  test(`url ${JSON.stringify(c.url)}`, () => {
    if ("error" in c) {
      assert.throws(
        () => parse(c.url),
        (error) =>
          error instanceof UrlError &&
          error.reason === c.error &&
          error.url === c.url &&
          error.code === "URL_ERROR",
      );
      return;
    }
    const address = parse(c.url);
    const { scheme, host, port, path, params, url } = address;
    assert.deepEqual({ scheme, host, port, path, params, url }, c.address);
    assert.deepEqual(parse(address.url), address); // the canonical form reads back the same
  });
}

test("options() speaks JavaScript: camelCase names, milliseconds", () => {
  const address = parse("file:/tmp/r?poll=0.05&max_line=10");
  assert.deepEqual(address.options(), { poll: 50, maxLine: 10 });
  assert.deepEqual(parse("tcp://h:1?timeout=2&reconnect=no").options(), {
    timeout: 2000,
    reconnect: false,
  });
});

test("withPort keeps the rest", () => {
  const address = parse("ws://localhost:0/readings?token=t");
  assert.equal(address.withPort(8765).url, "ws://localhost:8765/readings?token=t");
  assert.equal(String(address), address.url);
  assert.ok(address.withPort(1) instanceof Address);
});

test("a non-string is refused clearly", () => {
  assert.throws(() => parse(/** @type {any} */ (9000)), /expected a string, got number/);
});

test("connect refuses a bad URL before any I/O", async () => {
  await assert.rejects(connect("http://127.0.0.1:1/x"), /unknown scheme 'http:'/);
});

test("one URL serves both ends", () => {
  const address = parse("file:/log/r?state=/log/r.pos&max_bytes=100&max_line=50");
  assert.deepEqual(address.options("listen"), { state: "/log/r.pos", maxLine: 50 });
  assert.deepEqual(address.options("connect"), { maxBytes: 100, maxLine: 50 });
  assert.deepEqual(parse("tcp://h:1?token=t&reconnect=1").options("listen"), { token: "t" });
});
