/**
 * The wire core: JSON values <-> NDJSON text. Sans-I/O; mirrored name for name from
 * `src/bothways/wire.py` (snake_case there, camelCase here).
 *
 * Strategy
 * --------
 * - `encode(value)` is one `JSON.stringify` call plus `"\n"`. The type mapping of
 *   spec/PROTOCOL.md then needs only cheap tests of the *output*: a lone surrogate shows up as a
 *   `\udXXX` escape, a NaN in strict mode as `null`, nesting deeper than the decoders' limit as
 *   more than 1024 `[`/`{`. Only when a test fires, or `JSON.stringify` throws (BigInt, cycle),
 *   do we walk the value to confirm and to name the offending path.
 * - `decode(text)` is `JSON.parse` plus what makes its verdicts equal orjson's, which is
 *   stricter: no lone-surrogate escapes, no number that overflows to ±Infinity, no nesting
 *   deeper than 1024. A walk over the parsed value looks for these (strings only when the text
 *   holds a `\u` escape); only when it finds one do we scan the text for the place to report.
 * - `Decoder.feed(chunk)` keeps bytes, never strings, until a newline arrives: the complete part
 *   is decoded by one fatal `TextDecoder` call, split on `"\n"`, and parsed line by line in one
 *   loop. Messages come back as one `Messages` event per run of consecutive good lines (a batch,
 *   not an object per message). Only when that fails (a bad or blank line, invalid UTF-8, a
 *   possibly over-long line, a problem found by the walk) is the chunk redone line by line.
 * - The decoder never throws on bad input: it returns `Malformed` / `Truncated` events holding
 *   the error, and the adapter chooses to throw or to log and go on.
 * - Binary frames (a `#blob N` line, then N raw bytes) cost the hot path one string search per
 *   batch of lines (for `"#blob "`, in the text decoded anyway; `"#"` is rare in JSON, so the
 *   search is fast) and one field test per chunk. Only a chunk with a header at a line start
 *   goes line by line (`#withFrames`), and only a decoder inside a frame copies the chunk's start
 *   into the frame's own buffer (allocated once, from the header's count, which the line limit
 *   bounds).
 *
 * Rules
 * -----
 * This module does no I/O, reads no clock and imports no `node:*` module: it loads unchanged in a
 * browser. `encode` returns a string, not bytes: `stream.write`, `WebSocket.send` and `fetch`
 * all take strings and encode UTF-8 natively, so converting here would only add a copy.
 */

import { DecodeError, EncodeError, FrameTooLarge, TruncatedLine } from "./errors.js";

/** Default limit on one line, in bytes, not counting the newline (16 MiB). */
export const MAX_LINE = 16 * 1024 * 1024;

/** The largest integer a JavaScript number holds exactly (2**53 - 1), as in Python. */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

const MAX_DEPTH = 1024; // nested arrays/objects both decoders accept (orjson's limit)
const EXCERPT = 40; // characters of context shown in an error
const NL = 0x0a;

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

// --------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes one message as one NDJSON line: `JSON.stringify(value) + "\n"`, with the type mapping
 * of spec/PROTOCOL.md enforced.
 *
 * `JSON.stringify` semantics otherwise hold: `toJSON()` is honoured (a `Date` becomes its ISO
 * string), object members that are `undefined`, functions or symbols are dropped, and in arrays
 * they become `null`.
 *
 * @param {unknown} value a plain object, array, string, number, boolean, null, Date...
 * @param {{strict?: boolean}} [options] `strict`: throw on NaN and ±Infinity instead of sending
 *   `null` as `JSON.stringify` does.
 * @returns {string} the line to write. It is a string, not bytes: `stream.write`,
 *   `WebSocket.send` and `fetch` take strings and encode UTF-8 natively. Strip the final `"\n"`
 *   for message channels (WebSocket, MQTT, HTTP).
 * @throws {EncodeError} the value cannot cross: a BigInt, a string or key with a lone surrogate,
 *   a cycle, nesting deeper than 1024, a non-finite number in strict mode, or a top-level
 *   `undefined`, function or symbol. Its `path` names where, e.g. `$.readings[3].celsius`.
 */
export function encode(value, options = undefined) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    // BigInt and cycles make JSON.stringify throw a TypeError, very deep values a RangeError.
    const problem = findProblem(value, options?.strict === true);
    if (problem === null) {
      throw error;
    }
    throw new EncodeError(problem.reason, { path: problem.path, cause: error });
  }
  // The happy path stays this: one JSON.stringify, one scan for "\ud", one concatenation.
  if (text === undefined || text.includes("\\ud") || text.length > 2 * MAX_DEPTH || options !== undefined) {
    return checked(value, text, options?.strict === true);
  }
  return text + "\n";
}

/**
 * Encodes several messages into one chunk of NDJSON lines, for one write (mirror of Python's
 * `encode_many`).
 *
 * @param {Iterable<unknown>} values the messages, in order.
 * @param {{strict?: boolean}} [options] as for {@link encode}.
 * @returns {string} the lines, each ending in `"\n"`.
 * @throws {EncodeError} the first value that cannot cross, as {@link encode} names it.
 */
export function encodeMany(values, options = undefined) {
  let out = "";
  for (const value of values) {
    out += encode(value, options);
  }
  return out;
}

/**
 * The rest of encode(), off the hot path: confirms a suspicion raised by the text, and names
 * the path of the problem.
 * @param {unknown} value
 * @param {string | undefined} text what JSON.stringify returned.
 * @param {boolean} strict
 * @returns {string}
 * @throws {EncodeError}
 */
function checked(value, text, strict) {
  if (
    text === undefined ||
    text.includes("\\ud") || // JSON.stringify escapes a lone surrogate as \udXXX
    (strict && text.includes("null")) || // ...and writes NaN and ±Infinity as null
    (text.length > 2 * MAX_DEPTH && manyOpeners(text) && mayBeTooDeep(value, 0)) // see there
  ) {
    const problem = findProblem(value, strict);
    if (problem !== null) {
      throw new EncodeError(problem.reason, { path: problem.path });
    }
    if (text === undefined) {
      throw new EncodeError("value is not JSON serializable");
    }
  }
  return text + "\n";
}

/**
 * Whether `text` holds more than MAX_DEPTH `[` or `{` (a necessary condition for too deep).
 * @param {string} text
 * @returns {boolean}
 */
function manyOpeners(text) {
  let count = 0;
  for (const opener of ["{", "["]) {
    for (let at = text.indexOf(opener); at !== -1; at = text.indexOf(opener, at + 1)) {
      if (++count > MAX_DEPTH) {
        return true;
      }
    }
  }
  return false;
}

/**
 * Whether `value` may nest deeper than MAX_DEPTH once serialized. A quick walk over containers
 * only: exact for plain data, and a conservative yes when an object has a `toJSON()` method
 * (which may change the shape), leaving the verdict to findProblem().
 * @param {unknown} value
 * @param {number} depth how many arrays/objects enclose `value`.
 * @returns {boolean}
 */
function mayBeTooDeep(value, depth) {
  if (typeof value !== "object" || value === null) {
    // only through a toJSON of the application's: a BigInt's (BigInt.prototype) or a function's
    return (typeof value === "bigint" || typeof value === "function") && hasToJSON(value);
  }
  if (depth >= MAX_DEPTH || hasToJSON(value)) {
    return true;
  }
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const child = value[index];
      if (mayBeTooDeep(child, depth + 1)) return true;
    }
    return false;
  }
  for (const key in value) {
    const child = /** @type {Record<string, unknown>} */ (value)[key];
    if (mayBeTooDeep(child, depth + 1)) return true;
  }
  return false;
}

/**
 * @param {unknown} value an object, a function or a BigInt.
 * @returns {boolean} whether JSON.stringify calls a `toJSON()` on it.
 */
function hasToJSON(value) {
  return typeof (/** @type {any} */ (value).toJSON) === "function";
}

/**
 * Walks `root` as `JSON.stringify` does and returns the first thing that cannot be sent.
 * @param {unknown} root
 * @param {boolean} strict
 * @returns {{path: string, reason: string} | null}
 */
function findProblem(root, strict) {
  /** @type {Set<object>} */
  const ancestors = new Set();

  /**
   * @param {unknown} value already through toJSON() and unwrapped.
   * @param {string} path
   * @param {number} depth how many arrays/objects enclose `value`.
   * @returns {{path: string, reason: string} | null}
   */
  function visit(value, path, depth) {
    switch (typeof value) {
      case "string":
        return value.isWellFormed() ? null : { path, reason: "string contains a lone surrogate" };
      case "number":
        return strict && !Number.isFinite(value)
          ? { path, reason: `${value} is not a JSON number (strict mode; the default sends null)` }
          : null;
      case "boolean":
        return null;
      case "bigint":
        return {
          path,
          reason:
            `BigInt ${value}n cannot be sent (JSON has no BigInt: send it as a string, ` +
            `or as a Number within ±(2**53-1))`,
        };
      case "object":
        break;
      default: // undefined, function, symbol: only reached at the top level
        return { path, reason: `${typeof value} is not JSON serializable` };
    }
    if (value === null) {
      return null;
    }
    if (ancestors.has(value)) {
      return { path, reason: "circular reference" };
    }
    if (depth >= MAX_DEPTH) {
      return { path, reason: `nesting deeper than ${MAX_DEPTH} arrays/objects (the decoders' limit)` };
    }
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        for (let index = 0; index < value.length; index++) {
          const child = prepare(value[index], String(index));
          if (isSkipped(child)) {
            continue; // becomes null
          }
          const problem = visit(child, `${path}[${index}]`, depth + 1);
          if (problem !== null) {
            return problem;
          }
        }
      } else {
        const object = /** @type {Record<string, unknown>} */ (value);
        for (const key of Object.keys(object)) {
          const child = prepare(object[key], key);
          if (isSkipped(child)) {
            continue; // dropped
          }
          const childPath = _childPath(path, key);
          if (!key.isWellFormed()) {
            return { path: childPath, reason: "object key contains a lone surrogate" };
          }
          const problem = visit(child, childPath, depth + 1);
          if (problem !== null) {
            return problem;
          }
        }
      }
    } finally {
      ancestors.delete(value);
    }
    return null;
  }

  return visit(prepare(root, ""), "$", 0);
}

/**
 * What JSON.stringify serializes in place of `value`: the result of `toJSON(key)`, unwrapped
 * from Number/String/Boolean/BigInt objects.
 * @param {unknown} value
 * @param {string} key
 * @returns {unknown}
 */
function prepare(value, key) {
  // JSON.stringify asks every object (functions are objects) and BigInt for a toJSON()
  if ((typeof value === "object" && value !== null) || typeof value === "function" || typeof value === "bigint") {
    const toJSON = /** @type {any} */ (value).toJSON;
    if (typeof toJSON === "function") {
      value = toJSON.call(value, key);
    }
  }
  if (typeof value === "object" && value !== null) {
    if (value instanceof Number) return Number(value);
    if (value instanceof String) return String(value);
    if (value instanceof Boolean) return value.valueOf();
    if (value instanceof BigInt) return value.valueOf();
  }
  return value;
}

/**
 * @param {unknown} value
 * @returns {boolean} whether JSON.stringify leaves it out (or writes null in an array).
 */
function isSkipped(value) {
  return value === undefined || typeof value === "function" || typeof value === "symbol";
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * The path of `key` inside `path`: `$.key`, `$["a b"]`, `$[3]` (as Python's `_child_path`).
 * @param {string} path
 * @param {string | number} key
 * @returns {string}
 */
function _childPath(path, key) {
  if (typeof key === "number") {
    return `${path}[${key}]`;
  }
  return IDENT.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

// --------------------------------------------------------------------------------------------
// Decoding one text

/**
 * Decodes one complete JSON text (RFC 8259, strict; a leading UTF-8 BOM is skipped), with the
 * same verdict as the Python side on every input.
 *
 * Stricter than `JSON.parse`: invalid UTF-8, escapes that make a lone surrogate (`"\ud800"`),
 * numbers that overflow to ±Infinity (`1e400`) and nesting deeper than 1024 are rejected, as
 * orjson rejects them. Underflow (`1e-400` reads as 0) and integers beyond 2**53 (read as the
 * nearest double) are accepted.
 *
 * @param {string | Uint8Array | ArrayBuffer | ArrayBufferView} input one whole message: a
 *   WebSocket frame, an HTTP body, an MQTT payload.
 * @returns {any} the value.
 * @throws {DecodeError} with the line, column and an excerpt of where the text goes wrong.
 */
export function decode(input) {
  if (typeof input === "string") {
    const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
    return parseText(text, 1);
  }
  let bytes = asBytes(input);
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    bytes = bytes.subarray(3);
  }
  return parseBytes(bytes, 1);
}

/**
 * @param {Uint8Array} bytes one JSON text, without BOM.
 * @param {number} firstLine the line number of its first line, for errors.
 * @returns {any}
 * @throws {DecodeError}
 */
function parseBytes(bytes, firstLine) {
  let text;
  try {
    text = fatalUtf8.decode(bytes);
  } catch {
    throw utf8Error(bytes, firstLine);
  }
  return parseText(text, firstLine);
}

/**
 * @param {string} text one JSON text.
 * @param {number} firstLine
 * @returns {any}
 * @throws {DecodeError}
 */
function parseText(text, firstLine) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw syntaxError(text, /** @type {Error} */ (error), firstLine);
  }
  // Strings need checking only when an escape may have made a lone surrogate, or when the text
  // itself has one (only possible when decode() is given a string).
  if (suspect(value, text.includes("\\u") || !text.isWellFormed())) {
    throw problemError(text, firstLine);
  }
  return value;
}

/**
 * Whether a value from JSON.parse may hold what orjson rejects: ±Infinity (an overflowed number),
 * nesting deeper than MAX_DEPTH, and (when `strings`) a lone surrogate in a string or key.
 * A yes is confirmed, and placed, by scanning the text (scan()).
 * @param {unknown} value
 * @param {boolean} strings
 * @returns {boolean}
 */
function suspect(value, strings) {
  if (typeof value === "number") {
    return value - value !== 0; // ±Infinity (JSON.parse never makes NaN)
  }
  if (typeof value === "object") {
    return value !== null && suspectIn(value, strings, 0);
  }
  return strings && typeof value === "string" && !value.isWellFormed();
}

/**
 * suspect() for the members of an array or object. The hot loop of the decoder, hence the
 * order of the tests: numbers first, strings only when asked.
 * @param {object} container
 * @param {boolean} strings
 * @param {number} depth how many arrays/objects enclose `container`.
 * @returns {boolean}
 */
function suspectIn(container, strings, depth) {
  if (depth >= MAX_DEPTH) {
    return true;
  }
  if (Array.isArray(container)) {
    for (let index = 0; index < container.length; index++) {
      const child = container[index];
      if (typeof child === "number") {
        if (child - child !== 0) return true;
      } else if (typeof child === "object") {
        if (child !== null && suspectIn(child, strings, depth + 1)) return true;
      } else if (strings && typeof child === "string" && !child.isWellFormed()) {
        return true;
      }
    }
    return false;
  }
  for (const key in container) {
    const child = /** @type {Record<string, unknown>} */ (container)[key];
    if (typeof child === "number") {
      if (child - child !== 0) return true;
    } else if (typeof child === "object") {
      if (child !== null && suspectIn(child, strings, depth + 1)) return true;
    } else if (strings && typeof child === "string" && !child.isWellFormed()) {
      return true;
    }
    if (strings && !key.isWellFormed()) {
      return true;
    }
  }
  return false;
}

/**
 * The DecodeError for a text that JSON.parse rejected.
 * @param {string} text
 * @param {Error} error the SyntaxError.
 * @param {number} firstLine
 * @returns {DecodeError}
 */
function syntaxError(text, error, firstLine) {
  // Where and why come from scan() (V8's message is not used), so that the line, column and
  // reason are those Python gives.
  const found = scan(text);
  if (found !== null) {
    return errorAt(text, found.at, found.reason, firstLine);
  }
  // (never seen: JSON.parse and the scan disagree)
  return errorAt(text, -1, lowerFirst(String(error?.message ?? error)), firstLine);
}

/**
 * The DecodeError for a text that JSON.parse accepted but orjson would not (see suspect()).
 * @param {string} text
 * @param {number} firstLine
 * @returns {DecodeError}
 */
function problemError(text, firstLine) {
  const found = scan(text);
  return found !== null
    ? errorAt(text, found.at, found.reason, firstLine)
    : errorAt(text, -1, "text rejected by the stricter checks", firstLine);
}

/**
 * A DecodeError at UTF-16 index `at` of `text` (-1: unknown), as Python's `_decode_error`
 * builds it: 1-based line and column (in characters), and an excerpt of that line.
 * @param {string} text
 * @param {number} at
 * @param {string} reason
 * @param {number} firstLine
 * @returns {DecodeError}
 */
function errorAt(text, at, reason, firstLine) {
  let lineStart = 0;
  let lineIndex = 0;
  let column = 0;
  if (at >= 0) {
    at = Math.min(at, text.length);
    for (let nl = text.indexOf("\n"); nl !== -1 && nl < at; nl = text.indexOf("\n", nl + 1)) {
      lineStart = nl + 1;
      lineIndex++;
    }
    column = codePoints(text, lineStart, at) + 1;
  }
  const lineEnd = text.indexOf("\n", lineStart);
  const lineText = text.slice(lineStart, lineEnd === -1 ? text.length : lineEnd).replace(/\r+$/, "");
  return new DecodeError(reason, {
    line: firstLine + lineIndex,
    column,
    excerpt: _excerpt(lineText, column - 1),
  });
}

/**
 * The DecodeError for bytes that are not UTF-8, as Python's `_decode_error` builds it.
 * @param {Uint8Array} bytes
 * @param {number} firstLine
 * @returns {DecodeError}
 */
function utf8Error(bytes, firstLine) {
  const bad = firstInvalidUtf8(bytes);
  const before = fatalUtf8.decode(bytes.subarray(0, bad));
  let lineStart = 0;
  let lineIndex = 0;
  for (let nl = before.indexOf("\n"); nl !== -1; nl = before.indexOf("\n", nl + 1)) {
    lineStart = nl + 1;
    lineIndex++;
  }
  const column = codePoints(before, lineStart, before.length) + 1;
  const lineText = lenientUtf8.decode(bytes).split("\n")[lineIndex];
  const reason = `invalid UTF-8 (byte 0x${bytes[bad].toString(16).padStart(2, "0")})`;
  return new DecodeError(reason, {
    line: firstLine + lineIndex,
    column,
    excerpt: _excerpt(lineText, column - 1),
  });
}

/**
 * The index of the first byte of the first ill-formed UTF-8 sequence (Python's
 * `UnicodeDecodeError.start`), or -1.
 * @param {Uint8Array} bytes
 * @returns {number}
 */
function firstInvalidUtf8(bytes) {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let size;
    let low = 0x80;
    let high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      size = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
      size = 3;
      if (b === 0xe0) low = 0xa0;
      if (b === 0xed) high = 0x9f; // no surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      size = 4;
      if (b === 0xf0) low = 0x90;
      if (b === 0xf4) high = 0x8f;
    } else {
      return i;
    }
    if (i + 1 >= n || bytes[i + 1] < low || bytes[i + 1] > high) {
      return i;
    }
    for (let k = 2; k < size; k++) {
      if (i + k >= n || bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) {
        return i;
      }
    }
    i += size;
  }
  return -1;
}

/**
 * At most EXCERPT characters of `text` around character index `at`, with `…` where cut
 * (Python's `_excerpt`, counting code points as Python counts characters).
 * @param {string} text
 * @param {number} at
 * @returns {string}
 */
function _excerpt(text, at) {
  const length = codePoints(text, 0, text.length);
  const start = Math.max(0, Math.min(at - EXCERPT / 2, length - EXCERPT));
  const from = utf16Index(text, start);
  const piece = text.slice(from, utf16Index(text, start + EXCERPT, from, start));
  return (start > 0 ? "…" : "") + piece + (start + EXCERPT < length ? "…" : "");
}

const HEAD = EXCERPT * 4; // the first bytes of a line, enough for EXCERPT characters of UTF-8

/**
 * The excerpt of an over-long line, from its first bytes: at most EXCERPT characters, with `…`
 * when the line goes on (beyond `head` when `more`). Python's `_head_excerpt`.
 * @param {Uint8Array} head
 * @param {boolean} [more]
 * @returns {string}
 */
function headExcerpt(head, more = false) {
  const text = lenientUtf8.decode(head.subarray(0, HEAD));
  const cut = more || head.length > HEAD || codePoints(text, 0, text.length) > EXCERPT;
  return text.slice(0, utf16Index(text, EXCERPT)) + (cut ? "…" : "");
}

const SURROGATE = /[\ud800-\udfff]/;

/**
 * How many code points `text.slice(from, to)` holds (a lone surrogate counts as one).
 * @param {string} text
 * @param {number} from
 * @param {number} to
 * @returns {number}
 */
function codePoints(text, from, to) {
  let count = to - from;
  if (SURROGATE.test(text)) {
    for (let i = from; i < to - 1; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff) {
        const d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          count--;
          i++;
        }
      }
    }
  }
  return count;
}

/**
 * The UTF-16 index of code point number `point` of `text` (clamped to the end).
 * @param {string} text
 * @param {number} point
 * @param {number} [index] a UTF-16 index already known to hold code point `known`.
 * @param {number} [known]
 * @returns {number}
 */
function utf16Index(text, point, index = 0, known = 0) {
  if (!SURROGATE.test(text)) {
    return Math.min(point, text.length);
  }
  while (known < point && index < text.length) {
    const c = text.charCodeAt(index);
    const d = text.charCodeAt(index + 1);
    index += c >= 0xd800 && c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff ? 2 : 1;
    known++;
  }
  return index;
}

/**
 * @param {string} text
 * @returns {string}
 */
function lowerFirst(text) {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

// --------------------------------------------------------------------------------------------
// The scan: where a text goes wrong, in document order, by orjson's rules. Error path only.
// (Mirrored by _scan in src/bothways/wire.py word for word: both languages report the same
// problem at the same line and column with the same reason.)

class ScanFailure {
  /**
   * @param {number} at
   * @param {string} reason
   */
  constructor(at, reason) {
    this.at = at;
    this.reason = reason;
  }
}

/**
 * Finds the first problem of `text` as one JSON text: a grammar error, a lone surrogate, a
 * number that overflows, nesting deeper than MAX_DEPTH.
 * @param {string} text
 * @returns {{at: number, reason: string} | null} `at` is a UTF-16 index; null: no problem.
 */
function scan(text) {
  try {
    scanText(text);
    return null;
  } catch (failure) {
    if (failure instanceof ScanFailure) {
      return failure;
    }
    throw failure;
  }
}

const CLOSE_OBJECT = 0x7d;

/**
 * @param {string} text
 * @throws {ScanFailure}
 */
function scanText(text) {
  const n = text.length;
  /** @type {number[]} the closing character each open container waits for */
  const stack = [];
  let i = skipSpace(text, 0);
  for (;;) {
    // one value
    if (i >= n) {
      throw new ScanFailure(i, "unexpected end of data");
    }
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (stack.length >= MAX_DEPTH) {
        throw new ScanFailure(i, `nesting deeper than ${MAX_DEPTH} arrays/objects`);
      }
      const close = c + 2; // [ -> ], { -> }
      i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) === close) {
        i++;
      } else {
        stack.push(close);
        if (close === CLOSE_OBJECT) {
          i = scanKey(text, i);
        }
        continue;
      }
    } else if (c === 0x22) {
      i = scanString(text, i);
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      i = scanNumber(text, i);
    } else {
      i = scanLiteral(text, i);
    }
    // After a value: close containers, or find the comma before the next value.
    for (;;) {
      i = skipSpace(text, i);
      if (stack.length === 0) {
        if (i < n) {
          throw new ScanFailure(i, "unexpected content after the value");
        }
        return;
      }
      const close = stack[stack.length - 1];
      const d = text.charCodeAt(i);
      if (d === 0x2c) {
        const comma = i;
        i = skipSpace(text, i + 1);
        if (text.charCodeAt(i) === close) {
          throw new ScanFailure(comma, `trailing comma before '${String.fromCharCode(close)}'`);
        }
        if (close === CLOSE_OBJECT) {
          i = scanKey(text, i);
        }
        break; // on to the next value
      }
      if (d === close) {
        stack.pop();
        i++;
        continue;
      }
      throw new ScanFailure(
        i,
        i >= n ? "unexpected end of data" : `expected ',' or '${String.fromCharCode(close)}'`,
      );
    }
  }
}

/**
 * @param {string} text
 * @param {number} i
 * @returns {number}
 */
function skipSpace(text, i) {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      return i;
    }
    i++;
  }
}

/**
 * A member's key, colon and the space after: returns where its value starts.
 * @param {string} text
 * @param {number} i
 * @returns {number}
 */
function scanKey(text, i) {
  if (text.charCodeAt(i) !== 0x22) {
    throw new ScanFailure(i, i >= text.length ? "unexpected end of data" : "expected a string key");
  }
  i = skipSpace(text, scanString(text, i));
  if (text.charCodeAt(i) !== 0x3a) {
    throw new ScanFailure(i, i >= text.length ? "unexpected end of data" : "expected ':' after the key");
  }
  return skipSpace(text, i + 1);
}

const HEX4 = /^[0-9A-Fa-f]{4}$/;

/**
 * @param {string} text
 * @param {number} i the opening quote.
 * @returns {number} the index after the closing quote.
 */
function scanString(text, i) {
  const n = text.length;
  let j = i + 1;
  for (;;) {
    if (j >= n) {
      throw new ScanFailure(j, "unterminated string");
    }
    const c = text.charCodeAt(j);
    if (c === 0x22) {
      return j + 1;
    }
    if (c === 0x5c) {
      const e = text.charAt(j + 1);
      if (e !== "" && '"\\/bfnrt'.includes(e)) {
        j += 2;
        continue;
      }
      if (e !== "u" || !HEX4.test(text.slice(j + 2, j + 6))) {
        throw new ScanFailure(j, "invalid escape in string");
      }
      const unit = parseInt(text.slice(j + 2, j + 6), 16);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        const next = text.slice(j + 6, j + 12);
        const pair = next.startsWith("\\u") && HEX4.test(next.slice(2)) ? parseInt(next.slice(2), 16) : 0;
        if (pair < 0xdc00 || pair > 0xdfff) {
          throw new ScanFailure(j, `lone surrogate ${text.slice(j, j + 6)} in string`);
        }
        j += 12;
      } else if (unit >= 0xdc00 && unit <= 0xdfff) {
        throw new ScanFailure(j, `lone surrogate ${text.slice(j, j + 6)} in string`);
      } else {
        j += 6;
      }
      continue;
    }
    if (c < 0x20) {
      throw new ScanFailure(j, `unescaped control character U+${c.toString(16).toUpperCase().padStart(4, "0")} in string`);
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = text.charCodeAt(j + 1);
      if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) {
        throw new ScanFailure(j, "lone surrogate in string");
      }
      j += 2;
      continue;
    }
    j++;
  }
}

/**
 * @param {string} text
 * @param {number} i the first character ("-" or a digit).
 * @returns {number} the index after the number.
 */
function scanNumber(text, i) {
  const start = i;
  const digit = () => {
    const c = text.charCodeAt(i);
    return c >= 0x30 && c <= 0x39;
  };
  const digits = () => {
    if (!digit()) {
      throw new ScanFailure(i, i >= text.length ? "unexpected end of data" : "invalid number");
    }
    while (digit()) i++;
  };
  if (text.charCodeAt(i) === 0x2d) i++;
  if (text.charCodeAt(i) === 0x30) {
    i++;
  } else {
    digits();
  }
  if (text.charCodeAt(i) === 0x2e) {
    i++;
    digits();
  }
  if ((text.charCodeAt(i) | 0x20) === 0x65) {
    i++;
    if (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d) i++;
    digits();
  }
  if (!Number.isFinite(Number(text.slice(start, i)))) {
    throw new ScanFailure(start, "number too large (it overflows to infinity)");
  }
  return i;
}

/**
 * @param {string} text
 * @param {number} i
 * @returns {number} the index after `true`, `false` or `null`.
 */
function scanLiteral(text, i) {
  for (const word of ["true", "false", "null"]) {
    if (text.startsWith(word, i)) {
      return i + word.length;
    }
  }
  const rest = text.slice(i, i + 5);
  if (rest.length < 5 && ["true", "false", "null"].some((word) => word.startsWith(rest))) {
    throw new ScanFailure(text.length, "unexpected end of data");
  }
  const code = /** @type {number} */ (text.codePointAt(i));
  const shown = code > 0x20 && code < 0x7f ? `'${text[i]}'` : `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  throw new ScanFailure(i, `unexpected character ${shown}`);
}

// --------------------------------------------------------------------------------------------
// Decoding a stream

/**
 * What Decoder.feed() and Decoder.feedEof() return: a Messages, Malformed, Truncated or Binary
 * event. (Python's `Event` is the Union of the four; here it is their common base class.)
 */
export class Event {}

/**
 * Values decoded from consecutive lines: `values[i]` came from line `line + i`.
 */
export class Messages extends Event {
  /**
   * @param {any[]} values
   * @param {number} line the number of the line of `values[0]` (1-based).
   */
  constructor(values, line) {
    super();
    /** @type {any[]} */
    this.values = values;
    /** @type {number} */
    this.line = line;
    Object.freeze(this);
  }
}

/**
 * A line that is not a message (`DecodeError`) or is too long (`FrameTooLarge`).
 *
 * The stream goes on with the next line; `error.line` says which line this was.
 */
export class Malformed extends Event {
  /**
   * @param {DecodeError} error
   */
  constructor(error) {
    super();
    /** @type {DecodeError} */
    this.error = error;
    Object.freeze(this);
  }
}

/**
 * The stream ended in the middle of a line (`error.delivered`: it still parsed).
 */
export class Truncated extends Event {
  /**
   * @param {TruncatedLine} error
   */
  constructor(error) {
    super();
    /** @type {TruncatedLine} */
    this.error = error;
    Object.freeze(this);
  }
}

/**
 * A binary frame (spec/PROTOCOL.md section 2): its bytes, and the line number of its header.
 * Channels hand it out among the messages, in order (the calls layer takes it as the next
 * message's frame).
 */
export class Binary extends Event {
  /**
   * @param {Uint8Array} data the frame's bytes (an array of their own).
   * @param {number} line the number of the frame's header line (1-based).
   */
  constructor(data, line) {
    super();
    /** @type {Uint8Array} */
    this.data = data;
    /** @type {number} */
    this.line = line;
    Object.freeze(this);
  }
}

/**
 * Incremental NDJSON decoder: bytes in, events out. Never throws on bad input.
 *
 * Feed it chunks as they arrive, in any sizes, then call `feedEof()` once at the end:
 *
 * ```js
 * const decoder = new Decoder();
 * for await (const chunk of stream) {
 *   for (const event of decoder.feed(chunk)) { ... }
 * }
 * const events = decoder.feedEof();
 * ```
 *
 * Every `"\n"` ends a line (lines are numbered from 1), `"\r\n"` is accepted, blank lines are
 * skipped, and one UTF-8 BOM is skipped at the start of the stream. With `binary`, a line
 * `#blob N` is the header of a binary frame: the N raw bytes after it come as one `Binary`
 * event, and the stream goes on after them. The events are the same, event for event, as those
 * of Python's `Decoder`, whatever the chunking.
 */
export class Decoder {
  #maxLine;
  #binary; // binary frames are taken
  /** @type {Uint8Array[]} bytes of the unfinished line, as received */
  #held = [];
  #heldSize = 0;
  #line = 0; // lines completed so far
  #skipping = false; // inside a too-long line, dropping bytes up to the next newline
  #started = false; // past the place where a BOM may stand
  #ended = false;
  #frameLeft = 0; // inside a binary frame: how many of its bytes are still to come (else 0)
  /** @type {Uint8Array | null} the frame's bytes (null: none, or it is over the limit: dropped) */
  #frame = null;
  #frameAt = 0; // bytes of the frame received so far
  #frameSize = 0;
  #frameLine = 0; // its header's line

  /**
   * @param {{maxLine?: number, binary?: boolean}} [options] `maxLine`: the longest line
   *   accepted, in bytes before the newline (default 16 MiB). A longer line gives a
   *   `Malformed(FrameTooLarge)` as soon as it passes the limit; its bytes are dropped, not
   *   buffered, up to the next newline. `binary`: take binary frames (`#blob N` and N raw bytes:
   *   spec/PROTOCOL.md section 2) as `Binary` events; without it such a line is an ordinary
   *   malformed line. The calls between a parent and the module it spawned use them.
   * @throws {RangeError} `maxLine` is below 1.
   */
  constructor({ maxLine = MAX_LINE, binary = false } = {}) {
    if (!(maxLine >= 1)) {
      throw new RangeError("maxLine must be at least 1");
    }
    this.#maxLine = maxLine;
    this.#binary = binary;
  }

  /**
   * How many lines have been completed (the next line's number is `line + 1`).
   * @returns {number}
   */
  get line() {
    return this.#line;
  }

  /**
   * Bytes of an unfinished line held for the next `feed`.
   * @returns {number}
   */
  get buffered() {
    return this.#heldSize;
  }

  /**
   * Takes the next chunk of the stream; returns the events it completes (often none).
   * @param {Uint8Array | ArrayBuffer | ArrayBufferView | string} chunk bytes (a Buffer is a
   *   Uint8Array); a string is encoded to UTF-8 first.
   * @returns {(Messages | Malformed | Truncated | Binary)[]}
   * @throws {Error} after `feedEof()`.
   */
  feed(chunk) {
    if (this.#ended) {
      throw new Error("feed() after feedEof()");
    }
    let data = asBytes(chunk);
    /** @type {(Messages | Malformed | Truncated | Binary)[] | null} */
    let frameEvents = null;
    if (this.#frameLeft > 0) {
      // inside a binary frame: its bytes first, then the stream goes on at a line's start
      frameEvents = [];
      data = data.subarray(this.#frameTake(data, 0, frameEvents));
      if (data.length === 0) {
        return frameEvents;
      }
    } else if (this.#heldSize === 0 && this.#started && !this.#skipping) {
      // The common case, one whole line: decoded here without splitting. Anything else (and a
      // line that does not parse, such as a frame's header) takes the general path below.
      const nl = data.indexOf(NL);
      if (nl === data.length - 1 && nl > 0 && nl <= this.#maxLine) {
        const values = oneLine(data);
        if (values !== null) {
          this.#line++;
          return [new Messages(values, this.#line)];
        }
      }
    }
    const events = frameEvents ?? [];
    if (this.#skipping) {
      const nl = data.indexOf(NL);
      if (nl < 0) {
        return events;
      }
      this.#skipping = false;
      this.#line++;
      data = data.subarray(nl + 1);
    }
    if (!this.#started) {
      data = this.#takeHeld(data); // fewer than 3 bytes held until now
      if (data.length < 3 && isBomPrefix(data)) {
        this.#held = [new Uint8Array(data)];
        this.#heldSize = data.length;
        return events;
      }
      this.#started = true;
      if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) {
        data = data.subarray(3);
      }
    }
    const nl = data.lastIndexOf(NL);
    if (nl < 0) {
      this.#hold(data, events);
      return events;
    }
    const held = this.#heldSize > 0;
    const complete = this.#takeHeld(data.subarray(0, nl));
    if (!this.#lines(complete, events, this.#binary)) {
      // a frame's header among the lines: nothing taken yet, all of it again line by line
      this.#withFrames(held ? concat(complete, data.subarray(nl)) : data, events);
      return events;
    }
    if (nl + 1 < data.length) {
      this.#hold(data.subarray(nl + 1), events);
    }
    return events;
  }

  /**
   * Ends the stream; reports an unterminated final line (delivering it if it parses).
   *
   * Call it once, when the peer has closed its side; later calls return `[]`.
   * @returns {(Messages | Malformed | Truncated)[]} `[]`, `[Truncated]` (the line did not
   *   parse, or the stream ended inside a binary frame), or `[Messages, Truncated]` (it did,
   *   and was delivered).
   */
  feedEof() {
    if (this.#ended) {
      return [];
    }
    this.#ended = true;
    if (this.#frameLeft > 0) {
      const reason = `stream ended inside a binary frame (${this.#frameAt} of ${this.#frameSize} bytes)`;
      this.#frame = null;
      const error = new TruncatedLine(reason, { line: this.#frameLine, excerpt: "", delivered: false });
      return [new Truncated(error)];
    }
    const buf = this.#takeHeld(EMPTY);
    if (this.#skipping || isBlank(buf, 0, buf.length)) {
      return [];
    }
    const line = this.#line + 1;
    const excerpt = _excerpt(lenientUtf8.decode(buf), buf.length);
    let value;
    try {
      value = parseBytes(buf, 1);
    } catch (error) {
      if (!(error instanceof DecodeError)) {
        throw error;
      }
      const reason = `stream ended in the middle of a line (${error.reason})`;
      return [new Truncated(new TruncatedLine(reason, { line, excerpt, delivered: false }))];
    }
    const reason = "stream ended without a final newline (the line parsed and was delivered)";
    return [
      new Messages([value], line),
      new Truncated(new TruncatedLine(reason, { line, excerpt, delivered: true })),
    ];
  }

  /**
   * The held bytes followed by `data`, as one array; nothing is held afterwards.
   * @param {Uint8Array} data
   * @returns {Uint8Array}
   */
  #takeHeld(data) {
    if (this.#heldSize === 0) {
      return data;
    }
    const joined = new Uint8Array(this.#heldSize + data.length);
    let at = 0;
    for (const part of this.#held) {
      joined.set(part, at);
      at += part.length;
    }
    joined.set(data, at);
    this.#held = [];
    this.#heldSize = 0;
    return joined;
  }

  /**
   * Keeps the start of an unfinished line, unless the line is now over the limit.
   * @param {Uint8Array} data
   * @param {Event[]} events
   */
  #hold(data, events) {
    if (data.length === 0) {
      return;
    }
    const size = this.#heldSize + data.length;
    if (size > this.#maxLine) {
      // As Python: the excerpt shows the first 160 bytes held when the line passed the limit.
      const head = new Uint8Array(Math.min(HEAD, size));
      let at = 0;
      for (const part of [...this.#held, data]) {
        if (at === head.length) break;
        const piece = part.subarray(0, head.length - at);
        head.set(piece, at);
        at += piece.length;
      }
      const excerpt = headExcerpt(head, true); // (the line is not over: no newline yet)
      events.push(new Malformed(new FrameTooLarge({ line: this.#line + 1, limit: this.#maxLine, excerpt })));
      this.#held = [];
      this.#heldSize = 0;
      this.#skipping = true;
      return;
    }
    this.#held.push(new Uint8Array(data)); // a copy: the caller may reuse its buffer
    this.#heldSize = size;
  }

  /**
   * Decodes complete lines (`bytes` holds one or more lines, joined by "\n").
   * @param {Uint8Array} bytes
   * @param {Event[]} events
   * @param {boolean} frames whether a line may be a binary frame's header.
   * @returns {boolean} false (and nothing done) when a line is a frame's header.
   */
  #lines(bytes, events, frames) {
    const first = this.#line + 1;
    if (bytes.length <= this.#maxLine) {
      // The fast path: no line can be over the limit.
      let text = null;
      try {
        text = fatalUtf8.decode(bytes);
      } catch {
        // some line is not UTF-8: line by line below
      }
      if (text !== null) {
        // ("#" is rare in JSON text, "\n" is everywhere: searching for the header alone is fast)
        if (frames && text.includes(FRAME_HEADER) && (text.startsWith(FRAME_HEADER) || text.includes("\n#blob "))) {
          return false;
        }
        const lines = text.includes("\n") ? text.split("\n") : [text]; // (one line: no split)
        this.#line += lines.length;
        const values = parseLines(lines, text.includes("\\u"));
        if (values !== null) {
          events.push(new Messages(values, first));
        } else {
          this.#slow(bytes, lines, first, events);
        }
        return true;
      }
    }
    if (frames && headerAt(bytes, 0) >= 0) {
      return false;
    }
    let count = 1;
    for (let nl = bytes.indexOf(NL); nl !== -1; nl = bytes.indexOf(NL, nl + 1)) {
      count++;
    }
    this.#line += count;
    this.#slow(bytes, null, first, events);
    return true;
  }

  /**
   * Lines some of which are binary frames' headers: the lines before each header as usual, the
   * header, its frame's bytes; an unfinished line at the end is held, an unfinished frame
   * taken.
   * @param {Uint8Array} bytes the stream from a line's start on (nothing held before it).
   * @param {Event[]} events
   */
  #withFrames(bytes, events) {
    let pos = 0;
    for (;;) {
      const header = headerAt(bytes, pos);
      const end = header < 0 ? -1 : bytes.indexOf(NL, header);
      if (end < 0) {
        break; // no (complete) header line from pos on
      }
      if (header > pos) {
        this.#lines(bytes.subarray(pos, header - 1), events, false);
      }
      this.#line++;
      pos = this.#frameStart(bytes.subarray(header, end), bytes, end + 1, events);
      if (this.#frameLeft > 0) {
        return; // the frame goes on in the next chunks
      }
    }
    const rest = bytes.subarray(pos);
    const nl = rest.lastIndexOf(NL);
    if (nl >= 0) {
      this.#lines(rest.subarray(0, nl), events, false);
    }
    this.#hold(rest.subarray(nl + 1), events);
  }

  /**
   * A header line (line `this.#line`), then its frame's bytes from `bytes[start]` on.
   * @param {Uint8Array} header the line, without its "\n".
   * @param {Uint8Array} bytes
   * @param {number} start
   * @param {Event[]} events
   * @returns {number} where the stream goes on in `bytes` (its end when the frame goes on).
   */
  #frameStart(header, bytes, start, events) {
    const line = this.#line;
    if (header.length > this.#maxLine) {
      // an over-long line is that, header or not, as it is when held across chunks (#hold)
      const excerpt = headExcerpt(header);
      events.push(new Malformed(new FrameTooLarge({ line, limit: this.#maxLine, excerpt })));
      return start;
    }
    const digits = frameCount(header);
    if (digits === null) {
      const excerpt = headExcerpt(header);
      events.push(new Malformed(new DecodeError("invalid binary frame header", { line, column: 1, excerpt })));
      return start;
    }
    const size = Number(digits);
    if (size > this.#maxLine) {
      const reason = `binary frame of ${digits} bytes is over the limit of ${this.#maxLine} bytes (skipped)`;
      events.push(new Malformed(new FrameTooLarge({ line, limit: this.#maxLine, reason })));
      this.#frame = null; // its bytes are dropped as they come
    } else {
      this.#frame = new Uint8Array(size);
    }
    this.#frameSize = size;
    this.#frameLine = line;
    this.#frameAt = 0;
    this.#frameLeft = size;
    return this.#frameTake(bytes, start, events);
  }

  /**
   * Takes the bytes of the frame under way from `bytes[start]` on.
   * @param {Uint8Array} bytes
   * @param {number} start
   * @param {Event[]} events
   * @returns {number} where the stream goes on in `bytes` (its end when the frame goes on).
   */
  #frameTake(bytes, start, events) {
    const taken = Math.min(this.#frameLeft, bytes.length - start);
    if (this.#frame !== null) {
      this.#frame.set(bytes.subarray(start, start + taken), this.#frameAt);
    }
    this.#frameAt += taken;
    this.#frameLeft -= taken;
    if (this.#frameLeft === 0) {
      if (this.#frame !== null) {
        events.push(new Binary(this.#frame, this.#frameLine));
      }
      this.#frame = null;
    }
    return start + taken;
  }

  /**
   * Line by line: blank lines skipped, bad and over-long lines reported, runs batched.
   * @param {Uint8Array} bytes the lines, joined by "\n".
   * @param {string[] | null} lines the same, decoded, when all of them are UTF-8.
   * @param {number} first the number of the first line.
   * @param {Event[]} events
   */
  #slow(bytes, lines, first, events) {
    /** @type {any[]} */
    let run = [];
    let runStart = first;
    let start = 0;
    for (let index = 0; start <= bytes.length; index++) {
      let end = bytes.indexOf(NL, start);
      if (end === -1) {
        end = bytes.length;
      }
      const lineno = first + index;
      let error = null;
      if (end - start > this.#maxLine) {
        const excerpt = headExcerpt(bytes.subarray(start, end));
        error = new FrameTooLarge({ line: lineno, limit: this.#maxLine, excerpt });
      } else if (!isBlank(bytes, start, end)) {
        try {
          const value =
            lines !== null ? parseText(lines[index], lineno) : parseBytes(bytes.subarray(start, end), lineno);
          if (run.length === 0) {
            runStart = lineno;
          }
          run.push(value);
          start = end + 1;
          continue;
        } catch (caught) {
          if (!(caught instanceof DecodeError)) {
            throw caught;
          }
          error = caught;
        }
      } // else: a blank line ends the run and yields nothing
      if (run.length > 0) {
        events.push(new Messages(run, runStart));
        run = [];
      }
      if (error !== null) {
        events.push(new Malformed(error));
      }
      start = end + 1;
    }
    if (run.length > 0) {
      events.push(new Messages(run, runStart));
    }
  }
}

/**
 * The values of one whole line (its "\n" included: JSON.parse takes it as white space).
 * @param {Uint8Array} line
 * @returns {any[] | null} null: not UTF-8, or the line needs the general path.
 */
function oneLine(line) {
  let text;
  try {
    text = fatalUtf8.decode(line);
  } catch {
    return null;
  }
  return parseLines([text], text.includes("\\u"));
}

/**
 * The hot loop: JSON.parse on every line, then the walk for what orjson rejects.
 * @param {string[]} lines
 * @param {boolean} strings whether some line holds a `\u` escape (see suspect()).
 * @returns {any[] | null} the values, or null when some line needs the slow path.
 */
function parseLines(lines, strings) {
  const values = [];
  try {
    for (let index = 0; index < lines.length; index++) {
      values.push(JSON.parse(lines[index]));
    }
  } catch {
    return null;
  }
  for (let index = 0; index < values.length; index++) {
    const value = values[index];
    if (typeof value === "number") {
      if (value - value !== 0) return null;
    } else if (typeof value === "object") {
      if (value !== null && suspectIn(value, strings, 0)) return null;
    } else if (strings && typeof value === "string" && !value.isWellFormed()) {
      return null;
    }
  }
  return values;
}

/**
 * @param {Uint8Array} bytes
 * @param {number} start
 * @param {number} end
 * @returns {boolean} whether bytes[start:end] holds only space, tab and CR (or nothing).
 */
function isBlank(bytes, start, end) {
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) {
      return false;
    }
  }
  return true;
}

/** The start of a binary frame's header line (then the count, then "\n" and the bytes). */
const FRAME_HEADER = "#blob ";
const HASH = 0x23; // "#"
const HEADER_BYTES = utf8.encode(FRAME_HEADER);

/**
 * Where the first line that starts with `#blob ` starts, at or after `from` (a line's start).
 * @param {Uint8Array} bytes
 * @param {number} from
 * @returns {number} -1: none.
 */
function headerAt(bytes, from) {
  for (let i = bytes.indexOf(HASH, from); i !== -1; i = bytes.indexOf(HASH, i + 1)) {
    if (i === from || bytes[i - 1] === NL) {
      let j = 1;
      while (j < HEADER_BYTES.length && bytes[i + j] === HEADER_BYTES[j]) j++;
      if (j === HEADER_BYTES.length) {
        return i;
      }
    }
  }
  return -1;
}

/**
 * The byte count of a frame's header line, as its digits (`#blob (0|[1-9][0-9]{0,18})\r?`,
 * as Python's `_FRAME_COUNT`); null when the line is no such header.
 * @param {Uint8Array} header the line, without its "\n"; it starts with `#blob `.
 * @returns {string | null}
 */
function frameCount(header) {
  let end = header.length;
  if (header[end - 1] === 0x0d) {
    end--;
  }
  const start = HEADER_BYTES.length;
  if (end - start < 1 || end - start > 19 || (header[start] === 0x30 && end - start > 1)) {
    return null;
  }
  let digits = "";
  for (let i = start; i < end; i++) {
    const b = header[i];
    if (b < 0x30 || b > 0x39) {
      return null;
    }
    digits += String.fromCharCode(b);
  }
  return digits;
}

/**
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 * @returns {Uint8Array} a new array: `a` then `b`.
 */
function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}

/**
 * @param {Uint8Array} data fewer than 3 bytes.
 * @returns {boolean} whether they are the start of a UTF-8 BOM (the empty array included).
 */
function isBomPrefix(data) {
  return (data.length < 1 || data[0] === 0xef) && (data.length < 2 || data[1] === 0xbb);
}

/**
 * @param {unknown} chunk
 * @returns {Uint8Array}
 */
function asBytes(chunk) {
  if (chunk instanceof Uint8Array) {
    return chunk;
  }
  if (typeof chunk === "string") {
    return utf8.encode(chunk);
  }
  if (ArrayBuffer.isView(chunk)) {
    return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
  if (chunk instanceof ArrayBuffer || Object.prototype.toString.call(chunk) === "[object SharedArrayBuffer]") {
    return new Uint8Array(/** @type {ArrayBuffer} */ (chunk));
  }
  throw new TypeError(`expected bytes (Uint8Array, ArrayBuffer) or a string, got ${typeof chunk}`);
}
