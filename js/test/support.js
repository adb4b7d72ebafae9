// Helpers shared by the test files (node --test lists this file too; it holds no tests).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";

import { Binary, Malformed, Messages, Truncated } from "../src/index.js";

/**
 * The flat event form of spec/PROTOCOL.md section 2: one entry per message, error or binary
 * frame (`{binary: hex, line}`).
 * @param {import("../src/wire.js").Event[]} events
 * @param {boolean} [detail] errors with their reason (and column, when malformed) too.
 * @returns {object[]}
 */
export function flat(events, detail = false) {
  const out = [];
  for (const event of events) {
    if (event instanceof Messages) {
      event.values.forEach((value, i) => out.push({ message: value, line: event.line + i }));
    } else if (event instanceof Malformed) {
      const { code, line, column, reason } = event.error;
      out.push(detail ? { error: code, line, column, reason } : { error: code, line });
    } else if (event instanceof Truncated) {
      const { code, line, delivered, reason } = event.error;
      out.push(detail ? { error: code, line, delivered, reason } : { error: code, line, delivered });
    } else if (event instanceof Binary) {
      out.push({ binary: Buffer.from(event.data).toString("hex"), line: event.line });
    } else {
      throw new Error(`unknown event ${event}`);
    }
  }
  return out;
}

/**
 * Feeds `data` to `decoder` cut at the given offsets, then ends the stream; returns all events.
 * @param {import("../src/wire.js").Decoder} decoder
 * @param {Uint8Array} data
 * @param {number[]} cuts increasing offsets inside `data`.
 */
export function feedAll(decoder, data, cuts = []) {
  const events = [];
  let start = 0;
  for (const cut of [...cuts, data.length]) {
    events.push(...decoder.feed(data.subarray(start, cut)));
    start = cut;
  }
  events.push(...decoder.feedEof());
  return events;
}

/**
 * Equality as the Python suite's `same()`: SameValue for numbers (-0 is not 0, NaN is NaN),
 * key order compared, arrays element by element.
 * @param {unknown} a
 * @param {unknown} b
 * @returns {boolean}
 */
export function same(a, b) {
  if (typeof a !== typeof b) return false;
  if (typeof a !== "object" || a === null || b === null) return Object.is(a, b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    return a.length === /** @type {unknown[]} */ (b).length && a.every((x, i) => same(x, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

/**
 * A small seeded PRNG (mulberry32), so that "random" chunkings are the same on every run.
 * @param {number} seed
 * @returns {() => number} floats in [0, 1)
 */
export function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * UTF-8 bytes of `text`; a lone surrogate is written as its 3-byte form (Python's
 * "surrogatepass"), which every decoder must reject.
 * @param {string} text
 * @returns {Uint8Array}
 */
export function utf8Bytes(text) {
  if (text.isWellFormed()) return new TextEncoder().encode(text);
  const bytes = [];
  for (const ch of text) {
    const cp = /** @type {number} */ (ch.codePointAt(0));
    if (cp >= 0xd800 && cp <= 0xdfff) {
      bytes.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    } else {
      bytes.push(...new TextEncoder().encode(ch));
    }
  }
  return Uint8Array.from(bytes);
}

/**
 * What the kernel holds for the listening socket on 127.0.0.1:`port` while this process does not
 * accept: a child process opens `clients` connections to it, waits 300 ms and asks `ss`; our
 * event loop is blocked all along (execFileSync), so nothing is accepted meanwhile. Linux only.
 * @param {number} port
 * @param {number} clients
 * @returns {{connected: number, queued: number, backlog: number} | null} `connected`: the
 *   child's sockets whose connect succeeded; `queued` and `backlog`: the listening socket's
 *   Recv-Q (its accept queue) and Send-Q (the backlog the kernel took). null: no `ss` here.
 */
export function acceptQueue(port, clients) {
  try {
    execFileSync("ss", ["-V"], { stdio: "ignore" });
  } catch {
    return null;
  }
  const child = `
    const net = require("node:net");
    const { execFileSync } = require("node:child_process");
    let connected = 0;
    for (let i = 0; i < ${clients}; i++) {
      net.connect(${port}, "127.0.0.1").on("connect", () => connected++).on("error", () => {});
    }
    setTimeout(() => {
      const row = execFileSync("ss", ["-ltnH", "sport = :${port}"], { encoding: "utf8" }).trim().split(/\\s+/);
      console.log(JSON.stringify({ connected, queued: Number(row[1]), backlog: Number(row[2]) }));
      process.exit(0);
    }, 300);`;
  return JSON.parse(execFileSync(process.execPath, ["-e", child], { encoding: "utf8", timeout: 10_000 }));
}

/**
 * `net.Server.prototype.listen`'s first argument, for each call `body` makes.
 * @param {() => Promise<void>} body
 * @returns {Promise<any[]>}
 */
export async function listenCalls(body) {
  const calls = [];
  const original = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    calls.push(args[0]);
    return original.apply(this, args);
  };
  try {
    await body();
  } finally {
    net.Server.prototype.listen = original;
  }
  return calls;
}

/**
 * The kernel's cap on a listener's backlog (`net.core.somaxconn`), or null when unknown.
 * @returns {number | null}
 */
export function somaxconn() {
  try {
    return Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
  } catch {
    return null;
  }
}
