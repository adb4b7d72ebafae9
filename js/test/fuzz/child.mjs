// The JavaScript side of tests/fuzz/test_differential.py: one process for a whole run. Each
// line on stdin is {"target": "wire" | "urls" | "objects", "cases": [...]}; each answer line is
// {"results": [...]}, one result per case, in the forms the Python side builds the same way.
import { createInterface } from "node:readline";

import { Decoder, decode } from "../../src/wire.js";
import { parse } from "../../src/urls.js";
import { Handles, fromTree } from "../../src/objects.js";
import { flat } from "../support.js";

/** A decoded value as JSON text, with -0 kept ({"$negzero": 1}). */
function tagged(value) {
  return JSON.parse(JSON.stringify(value, (_key, v) => (Object.is(v, -0) ? { $negzero: 1 } : v)));
}

/** wire: {data: base64, max_line, binary, cuts} -> the flat events with every detail. */
function wire({ data, max_line: maxLine, binary, cuts }) {
  const bytes = Buffer.from(data, "base64");
  const decoder = new Decoder({ maxLine, binary });
  const events = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    events.push(...decoder.feed(bytes.subarray(start, cut)));
    start = cut;
  }
  events.push(...decoder.feedEof());
  const errors = events.filter((e) => e.error !== undefined).map((e) => e.error);
  const out = flat(events, true);
  let next = 0;
  for (const item of out) {
    if (item.message !== undefined) item.message = tagged(item.message);
    if (item.error !== undefined) {
      item.excerpt = errors[next++].excerpt;
    }
  }
  return out;
}

/** urls: a string -> {ok: address} or {error: code, reason}. */
function urls(text) {
  try {
    const { scheme, host, port, path, params, url } = parse(text);
    return { ok: { scheme, host, port, path, params, url } };
  } catch (error) {
    if (error?.code === "URL_ERROR") return { error: error.code, reason: error.reason };
    return { crash: `${error?.name}: ${error?.message}` };
  }
}

/** objects: JSON text of a tree (and blobs in hex) -> {ok: true} or {error: code, message}. */
function objects({ tree, blobs }) {
  let value;
  try {
    value = decode(tree);
  } catch {
    return { skip: true };
  }
  const handles = new Handles();
  handles.lend({});
  try {
    fromTree(value, handles, (marker) => ({ ref: marker.id }), blobs === null ? undefined : blobs.map((b) => Buffer.from(b, "hex")));
    return { ok: true };
  } catch (error) {
    if (error?.code === "HANDLE_ERROR") return { error: error.code, message: error.message };
    return { crash: `${error?.name}: ${error?.message}` };
  }
}

const TARGETS = { wire, urls, objects };

for await (const line of createInterface({ input: process.stdin })) {
  const { target, cases } = JSON.parse(line);
  const results = cases.map((c) => {
    try {
      return TARGETS[target](c);
    } catch (error) {
      return { crash: `${error?.name}: ${error?.message}\n${error?.stack}` };
    }
  });
  process.stdout.write(JSON.stringify({ results }) + "\n");
}
