// The JavaScript side of bench/objects.py, one CommonJS module for every way that calls into
// Node (bothways' node.require serves its default export; JSPyBridge's require loads it).
"use strict";

/** A class whose instances cross as handles: made and used from Python. */
class Parser {
  constructor(separator = ",") {
    this.separator = separator;
  }

  parse(text) {
    return text.split(this.separator);
  }
}

/** Yields 0 .. n-1: the stream Python pulls. */
function* numbers(n) {
  for (let i = 0; i < n; i += 1) yield i;
}

/** 0 .. n-1 as an array (JSPyBridge iterates arrays, one index at a time, not generators). */
function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

/** Calls back `callback(i)` n times, one after the other; the sum of what it answered. */
async function callBack(callback, n) {
  let total = 0;
  for (let i = 0; i < n; i += 1) total += await callback(i);
  return total;
}

let made = { bytes: null, floats: null };

/** Makes (once) what `bytes` and `floats` hand out, so that only the transfer is timed. */
function prepare(byteCount, floatCount) {
  const bytes = Buffer.alloc(byteCount);
  for (let i = 0; i < byteCount; i += 4096) bytes[i] = i & 255;
  const floats = new Float64Array(floatCount);
  for (let i = 0; i < floatCount; i += 1) floats[i] = i * 0.25 + 0.1;
  made = { bytes, floats, list: Array.from(floats) };
  return true;
}

function bytes() {
  return made.bytes;
}

function floats() {
  return made.floats;
}

/** The same float64 values as a plain array: JSON numbers on the wire. */
function floatList() {
  return made.list;
}

/** The length of what arrived (bytes, a typed array or an array): a one-way transfer. */
function size(value) {
  return value.length;
}

module.exports = { Parser, numbers, range, callBack, prepare, bytes, floats, floatList, size };
