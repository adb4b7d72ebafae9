/**
 * The one error tree of bothways, mirrored class for class from `src/bothways/errors.py`.
 *
 * ```
 * BothwaysError                       .code (stable string), .toJson()
 * ├─ EncodeError                      local: we were asked to send something invalid (.path)
 * ├─ DecodeError                      remote input: .line, .column, .excerpt
 * │  ├─ FrameTooLarge                 a line longer than the limit (.limit)
 * │  └─ TruncatedLine                 the stream ended in the middle of a line (.delivered)
 * ├─ TransportError
 * │  ├─ ConnectError                  .url
 * │  ├─ TransportClosed
 * │  └─ ChildExited                   .returncode, .signal, .stderrTail
 * ├─ RemoteError                      .reason, .rpcCode, .remoteType, .remoteTraceback, .data
 * ├─ CallTimeout
 * └─ HandleError                      a remote object handle that cannot be used, a bad marker
 * ```
 *
 * Rules:
 * - `EncodeError` is *our* mistake (a value that cannot cross); `DecodeError` is the *peer's*
 *   (bytes that are not a message). Keep them apart, as h11 does.
 * - Every class has a `code` (static and on each instance) spelled the same in both languages and
 *   listed in spec/PROTOCOL.md; messages are built exactly as Python builds them.
 * - Fields are camelCase here, but `toJson()` uses the snake_case keys of Python's `to_json()`,
 *   so the dict that crosses the wire is identical whichever side raised.
 * - Every constructor takes an options object mirroring Python's keyword arguments, plus the
 *   standard `{ cause }` (Python's `raise ... from exc`).
 *
 * This module is part of the browser-safe core: no `node:*` imports.
 */

/**
 * Base of every error bothways throws; `code` is stable across versions and languages.
 */
export class BothwaysError extends Error {
  /** @type {string} */
  static code = "BOTHWAYS_ERROR";

  /**
   * @param {string} [message] the full message.
   * @param {{cause?: unknown}} [options] standard `Error` options.
   */
  constructor(message = "", options = undefined) {
    super(message, options);
    /** The stable code of this class, e.g. `"DECODE_ERROR"`. @type {string} */
    this.code = /** @type {typeof BothwaysError} */ (new.target).code;
  }

  /**
   * The class-specific fields, as JSON values with Python's snake_case keys (empty here).
   * @returns {Record<string, unknown>}
   */
  details() {
    return {};
  }

  /**
   * What crosses the wire for this error: `{code, message, ...details}`, the same keys as Python.
   * @returns {Record<string, unknown>}
   */
  toJson() {
    return { code: this.code, message: this.message, ...this.details() };
  }

  /**
   * Alias of {@link BothwaysError#toJson}, so that `JSON.stringify(error)` gives the same dict.
   * @returns {Record<string, unknown>}
   */
  toJSON() {
    return this.toJson();
  }
}

/**
 * A value cannot be sent: BigInt, lone surrogate, NaN in strict mode, nesting too deep...
 *
 * `path` names the offending place in JSONPath style, e.g. `$.readings[3].celsius`;
 * the message is `${path}: ${reason}`.
 */
export class EncodeError extends BothwaysError {
  static code = "ENCODE_ERROR";

  /**
   * @param {string} reason what is wrong with the value.
   * @param {{path?: string, cause?: unknown}} [options] `path` defaults to `"$"`, the whole value.
   */
  constructor(reason, { path = "$", cause } = {}) {
    super(`${path}: ${reason}`, causeOption(cause));
    /** @type {string} */
    this.path = path;
    /** @type {string} */
    this.reason = reason;
  }

  /** @returns {{path: string}} */
  details() {
    return { path: this.path };
  }
}

/**
 * Bytes from the peer are not a JSON message.
 *
 * `line` and `column` are 1-based (`column` counts characters, 0 when unknown); `excerpt` is a
 * short piece of the offending line around the error. The message reads
 * `line 3, col 9: <reason> in '<excerpt>'`, the excerpt quoted as Python's `repr()` quotes it.
 */
export class DecodeError extends BothwaysError {
  static code = "DECODE_ERROR";

  /**
   * @param {string} reason what is wrong, in the parser's words.
   * @param {{line?: number, column?: number, excerpt?: string, cause?: unknown}} [options]
   */
  constructor(reason, { line = 1, column = 0, excerpt = "", cause } = {}) {
    const where = column ? `line ${line}, col ${column}` : `line ${line}`;
    let text = `${where}: ${reason}`;
    if (excerpt) {
      text += ` in ${pyRepr(excerpt)}`;
    }
    super(text, causeOption(cause));
    /** @type {string} */
    this.reason = reason;
    /** @type {number} */
    this.line = line;
    /** @type {number} */
    this.column = column;
    /** @type {string} */
    this.excerpt = excerpt;
  }

  /** @returns {{line: number, column: number, excerpt: string}} */
  details() {
    return { line: this.line, column: this.column, excerpt: this.excerpt };
  }
}

/**
 * A line is longer than the decoder's `maxLine`; the stream resumes at the next newline.
 */
export class FrameTooLarge extends DecodeError {
  static code = "FRAME_TOO_LARGE";

  /**
   * @param {{line: number, limit: number, excerpt?: string, reason?: string, cause?: unknown}} options
   *   `reason`: what the channel did instead of the stream's default words.
   */
  constructor({ line, limit, excerpt = "", reason, cause }) {
    super(reason ?? `line is longer than the limit of ${limit} bytes (skipped up to the next newline)`, {
      line,
      excerpt,
      cause,
    });
    /** @type {number} */
    this.limit = limit;
  }

  /** @returns {{line: number, column: number, excerpt: string, limit: number}} */
  details() {
    return { ...super.details(), limit: this.limit };
  }
}

/**
 * The stream ended without a final newline.
 *
 * `delivered` tells whether the unterminated line still parsed and was delivered as a message
 * (it may be a cut-off number such as `4` from `42.5`, hence the report).
 */
export class TruncatedLine extends DecodeError {
  static code = "TRUNCATED_LINE";

  /**
   * @param {string} reason what happened.
   * @param {{line: number, excerpt: string, delivered: boolean, cause?: unknown}} options
   */
  constructor(reason, { line, excerpt, delivered, cause }) {
    super(reason, { line, excerpt, cause });
    /** @type {boolean} */
    this.delivered = delivered;
  }

  /** @returns {{line: number, column: number, excerpt: string, delivered: boolean}} */
  details() {
    return { ...super.details(), delivered: this.delivered };
  }
}

/**
 * A channel URL that cannot be used: `reason` says what is wrong with `url`.
 * The message is `bad URL '${url}': ${reason}` (the URL quoted as Python's repr quotes it).
 */
export class UrlError extends BothwaysError {
  static code = "URL_ERROR";

  /**
   * @param {string} reason what is wrong.
   * @param {{url: string, cause?: unknown}} options
   */
  constructor(reason, { url, cause }) {
    super(`bad URL ${pyRepr(url)}: ${reason}`, causeOption(cause));
    /** @type {string} */
    this.url = url;
    /** @type {string} */
    this.reason = reason;
  }

  /** @returns {{url: string, reason: string}} */
  details() {
    return { url: this.url, reason: this.reason };
  }
}

/**
 * A channel failed below the message layer.
 */
export class TransportError extends BothwaysError {
  static code = "TRANSPORT_ERROR";
}

/**
 * Could not reach `url` (refused, unresolvable, wrong token...). The message is `${url}: ${message}`.
 */
export class ConnectError extends TransportError {
  static code = "CONNECT_ERROR";

  /**
   * @param {string} message what went wrong.
   * @param {{url: string, cause?: unknown}} options
   */
  constructor(message, { url, cause }) {
    super(`${url}: ${message}`, causeOption(cause));
    /** @type {string} */
    this.url = url;
  }

  /** @returns {{url: string}} */
  details() {
    return { url: this.url };
  }
}

/**
 * The channel is closed (by us or by the peer); nothing more can be sent or received.
 */
export class TransportClosed extends TransportError {
  static code = "TRANSPORT_CLOSED";
}

/**
 * A spawned child ended badly: non-zero `returncode` or a `signal`, with the tail of its stderr.
 */
export class ChildExited extends TransportError {
  static code = "CHILD_EXITED";

  /**
   * @param {string} message what happened, e.g. `"python exited with code 1"`.
   * @param {{returncode: number | null, signal?: string | null, stderrTail?: string,
   *   cause?: unknown}} options
   */
  constructor(message, { returncode, signal = null, stderrTail = "", cause }) {
    const text = message + (stderrTail ? `\n--- stderr tail ---\n${stderrTail}` : "");
    super(text, causeOption(cause));
    /** @type {number | null} */
    this.returncode = returncode ?? null;
    /** @type {string | null} */
    this.signal = signal ?? null;
    /** @type {string} */
    this.stderrTail = stderrTail;
  }

  /** @returns {{returncode: number | null, signal: string | null, stderr_tail: string}} */
  details() {
    return { returncode: this.returncode, signal: this.signal, stderr_tail: this.stderrTail };
  }
}

/**
 * The other side raised while serving our call.
 */
export class RemoteError extends BothwaysError {
  static code = "REMOTE_ERROR";

  /**
   * @param {string} message the remote error's message.
   * @param {{rpcCode?: number, remoteType?: string, remoteTraceback?: string, data?: unknown,
   *   cause?: unknown}} [options] `rpcCode` is the JSON-RPC error code (default -32000).
   */
  constructor(
    message,
    { rpcCode = -32000, remoteType = "", remoteTraceback = "", data = null, cause } = {},
  ) {
    let text = remoteType ? `${remoteType}: ${message}` : message;
    if (remoteTraceback) {
      text += `\n--- remote traceback ---\n${remoteTraceback}`;
    }
    super(text, causeOption(cause));
    /** The remote message alone, without the type and the traceback. @type {string} */
    this.reason = message;
    /** @type {number} */
    this.rpcCode = rpcCode;
    /** @type {string} */
    this.remoteType = remoteType;
    /** @type {string} */
    this.remoteTraceback = remoteTraceback;
    /** @type {unknown} */
    this.data = data ?? null;
  }

  /**
   * @returns {{rpc_code: number, remote_type: string, remote_traceback: string, data: unknown}}
   */
  details() {
    return {
      rpc_code: this.rpcCode,
      remote_type: this.remoteType,
      remote_traceback: this.remoteTraceback,
      data: this.data,
    };
  }
}

/**
 * A call got no answer in time.
 */
export class CallTimeout extends BothwaysError {
  static code = "CALL_TIMEOUT";
}

/**
 * A remote object handle cannot be used (released, or never lent), or a marker that should stand
 * for an object, bytes or an array is malformed (the message names its path, e.g.
 * `$[1].base64: ...`). See spec/PROTOCOL.md section 10.
 */
export class HandleError extends BothwaysError {
  static code = "HANDLE_ERROR";
}

// `name` lives on each prototype (not enumerable, like Error.prototype.name), spelled out here
// so that it survives minifiers that rename classes.
for (const [name, cls] of Object.entries({
  BothwaysError,
  EncodeError,
  DecodeError,
  FrameTooLarge,
  TruncatedLine,
  TransportError,
  ConnectError,
  TransportClosed,
  ChildExited,
  RemoteError,
  CallTimeout,
  HandleError,
})) {
  Object.defineProperty(cls.prototype, "name", { value: name, writable: true, configurable: true });
}

/**
 * `{cause}` only when one was given, so `"cause" in error` stays false otherwise.
 * @param {unknown} cause
 * @returns {{cause: unknown} | undefined}
 */
function causeOption(cause) {
  return cause === undefined ? undefined : { cause };
}

/**
 * Quotes `text` exactly as Python's `repr(str)` does, so messages match across languages.
 * @param {string} text
 * @returns {string}
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const cp = /** @type {number} */ (ch.codePointAt(0));
    if (ch === quote || ch === "\\") {
      out += "\\" + ch;
    } else if (ch === "\t") {
      out += "\\t";
    } else if (ch === "\n") {
      out += "\\n";
    } else if (ch === "\r") {
      out += "\\r";
    } else if (cp < 0x20 || cp === 0x7f) {
      out += "\\x" + hex(cp, 2);
    } else if (cp < 0x7f || !NON_PRINTABLE.test(ch)) {
      out += ch;
    } else if (cp <= 0xff) {
      out += "\\x" + hex(cp, 2);
    } else if (cp <= 0xffff) {
      out += "\\u" + hex(cp, 4);
    } else {
      out += "\\U" + hex(cp, 8);
    }
  }
  return out + quote;
}

// Python's str.isprintable(): "Other" and "Separator" categories are not printable (but " " is).
const NON_PRINTABLE = /^[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]$/u;

/**
 * @param {number} n
 * @param {number} width
 * @returns {string}
 */
function hex(n, width) {
  return n.toString(16).padStart(width, "0");
}
