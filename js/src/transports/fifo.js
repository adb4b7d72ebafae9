/**
 * Named pipes (`fifo:/path`): one reader, any number of writers, NDJSON through a FIFO. Mirrors
 * `src/bothways/transports/fifo.py` name for name (camelCase here, times in milliseconds).
 *
 * `listen(address)` is the reader: it creates the FIFO (mode 0600) when it is missing and reads
 * it; `connect(address)` is a writer: it waits for the FIFO and for a reader, then writes lines.
 *
 * Node specifics
 * --------------
 * - No blocking open, no thread pool: both ends open the FIFO with O_NONBLOCK (`openSync`
 *   returns at once: a reader's open never waits, and a writer's open fails with ENXIO while
 *   there is no reader, which we retry with a growing pause), then wrap the descriptor in a
 *   `net.Socket`, which libuv drives with epoll like any pipe. `fs.createReadStream` on a FIFO
 *   would park a thread-pool thread in a blocking read() per stream instead (four such streams
 *   stall every `fs` call of the process). Checked on Node 20.
 * - Node has no mkfifo: the reader runs `mkfifo -m 600 -- path` with `execFile` (an argv array,
 *   no shell).
 *
 * Rules (as in Python):
 * - Linux reports nothing on a FIFO that has had no writer since it was opened, so the reader
 *   sleeps until a writer comes. When the last writer closes ('end'), the messages so far are one
 *   stream: its unterminated last line, if any, is reported as truncated, never glued to the next
 *   writer's first line. With `reopen: true` (the default) the reader opens the FIFO again
 *   *before* closing the old descriptor (a writer arriving in between always finds a reader) and
 *   messages keep flowing from the next writer; with `reopen: false` the first writer's end ends
 *   iteration (`receive()` throws TransportClosed).
 * - Each write is whole lines, at most PIPE_BUF (4096) bytes, cut between lines: writes that small
 *   are atomic, so lines from several concurrent writers never mix as long as each line is at
 *   most 4096 bytes. A longer line takes several writes and MAY INTERLEAVE with other writers'
 *   lines. Sends are queued and written one at a time (never merged into one writev).
 * - Backpressure: the reader stops reading when READ_AHEAD bytes of messages wait unread, so a
 *   full pipe makes a writer's `send` wait. The reader gone: the next `send` throws
 *   TransportClosed (EPIPE). `send` on the reader and `receive` on a writer throw TransportError.
 * - The FIFO the reader created is removed by its `close()`; one it found is left in place.
 *
 * @module bothways/fifo
 */

import { execFile } from "node:child_process";
import { closeSync, constants, fstatSync, openSync, statSync, unlinkSync } from "node:fs";
import { Socket } from "node:net";

import { ConnectError, TransportClosed, TransportError } from "../errors.js";
import { MAX_LINE, encode } from "../wire.js";
import { Channel, Inbox, Listener } from "./base.js";

/** The largest write POSIX keeps whole when several writers share a pipe (Linux: 4096). */
export const PIPE_BUF = 4096;
/** Milliseconds a writer waits for the FIFO and a reader (`timeout`). */
export const TIMEOUT = 10000;

const FIRST_PAUSE = 5; // ms between a writer's first attempts to open; doubled up to MAX_PAUSE
const MAX_PAUSE = 100;
const IDLE_PAUSE = 50; // ms before reopening after a writer that sent nothing (no busy loop)
const READ_AHEAD = 256 * 1024; // bytes decoded ahead of the consumer before reading pauses
const NL = 0x0a;

const LISTEN_OPTIONS = ["maxLine", "onError", "signal", "reopen"];
const CONNECT_OPTIONS = ["maxLine", "onError", "signal", "timeout"];

/**
 * @typedef {object} FifoListenOptions
 * @property {number} [maxLine] the longest line accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] what to do with a malformed, too long
 *   or truncated line (default: `logError`).
 * @property {boolean} [reopen] keep reading after the last writer closed (default true).
 * @property {AbortSignal} [signal] aborting it closes the reader.
 */

/**
 * @typedef {object} FifoConnectOptions
 * @property {number} [timeout] milliseconds to wait for the FIFO and a reader (default 10000).
 * @property {AbortSignal} [signal] aborting it stops the wait (ConnectError) or closes the writer.
 * @property {number} [maxLine] accepted for symmetry (a writer receives nothing).
 * @property {import("./base.js").ErrorHandler} [onError] accepted for symmetry.
 */

// ----------------------------------------------------------------------------------------------
// The shared core: no I/O

/**
 * The reader's messages, writer after writer; no I/O.
 *
 * Each writer's stream (from the FIFO's opening to the moment its last writer leaves) gets its
 * own Inbox, so a truncated last line is reported at its end and never joined to the next
 * writer's first line. Messages come out in arrival order across sessions.
 */
export class FifoSessions {
  #maxLine;
  #onError;
  #reopen;
  /** @type {Inbox[]} */
  #inboxes;
  /** @type {{error: unknown} | null} an error thrown by onError, held back by popAll */
  #held = null;
  /** Bytes received since the FIFO was (re)opened. */
  received = 0;
  /** True once the stream is over (a writer left and `reopen` is off). */
  ended = false;

  /**
   * @param {{maxLine?: number, onError?: import("./base.js").ErrorHandler, reopen?: boolean}}
   *   [options]
   */
  constructor({ maxLine = MAX_LINE, onError = undefined, reopen = true } = {}) {
    this.#maxLine = maxLine;
    this.#onError = onError;
    this.#reopen = reopen;
    this.#inboxes = [new Inbox({ maxLine, onError })];
  }

  /**
   * Takes bytes read from the FIFO.
   * @param {Uint8Array} data
   */
  feed(data) {
    this.received += data.length;
    this.#inboxes[this.#inboxes.length - 1].feed(data);
  }

  /**
   * The last writer closed; returns whether to open the FIFO again. After `true`, the caller
   * opens it anew (waiting IDLE_PAUSE first when `received` was 0), then calls `reopened()`.
   * @returns {boolean}
   */
  writerLeft() {
    this.#inboxes[this.#inboxes.length - 1].feedEof();
    if (!this.#reopen) {
      this.ended = true;
      return false;
    }
    this.#inboxes.push(new Inbox({ maxLine: this.#maxLine, onError: this.#onError }));
    return true;
  }

  /** The FIFO was opened again: counting starts over. */
  reopened() {
    this.received = 0;
  }

  /**
   * Whether a message waits (finished sessions with nothing left are dropped here).
   * @returns {boolean}
   */
  ready() {
    if (this.#held !== null) {
      return true;
    }
    const inboxes = this.#inboxes;
    while (inboxes[0].length === 0) {
      if (inboxes.length === 1) {
        return false;
      }
      inboxes.shift();
    }
    return true;
  }

  /**
   * The next message (call `ready()` first).
   * @returns {any}
   * @throws {Error} what the onError policy threw, in its turn.
   */
  pop() {
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      throw held.error;
    }
    return this.#inboxes[0].pop();
  }

  /**
   * The messages of the oldest session that has some, up to an error the policy threw (call
   * `ready()` first).
   * @returns {any[]}
   * @throws {Error} what the onError policy threw, when it comes first.
   */
  popAll() {
    if (this.#held !== null) {
      return [this.pop()];
    }
    const inbox = this.#inboxes[0];
    const values = [];
    for (let n = inbox.length; n > 0; n--) {
      try {
        values.push(inbox.pop());
      } catch (error) {
        if (values.length === 0) {
          throw error;
        }
        this.#held = { error };
        break;
      }
    }
    return values;
  }
}

/**
 * Cuts NDJSON `data` at line boundaries into pieces of at most PIPE_BUF bytes each (a longer line
 * is one piece of its own).
 * @param {Uint8Array} data
 * @returns {Uint8Array[]}
 */
export function pieces(data) {
  const out = [];
  let start = 0;
  const end = data.length;
  while (start < end) {
    if (end - start <= PIPE_BUF) {
      out.push(data.subarray(start, end));
      break;
    }
    let cut = data.lastIndexOf(NL, start + PIPE_BUF - 1);
    if (cut < start) {
      cut = data.indexOf(NL, start + PIPE_BUF); // one long line: up to its own newline
      if (cut < 0) {
        cut = end - 1;
      }
    }
    out.push(data.subarray(start, cut + 1));
    start = cut + 1;
  }
  return out;
}

/**
 * Throws TypeError for an option this end does not know (as Python's keyword arguments do).
 * A helper shared with `file.js` (Python needs none: keyword-only arguments do this).
 * @param {Record<string, any>} options
 * @param {string[]} known
 * @param {string} what
 */
export function checkOptions(options, known, what) {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`${what}: unknown option '${key}' (known: ${known.join(", ")})`);
    }
  }
}

const REASONS = /** @type {Record<string, string>} */ ({
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  ENOSPC: "no space left on device",
  EEXIST: "file exists",
  EMFILE: "too many open files",
});

/**
 * The OS's words for an error, as Python's strerror gives them (a helper shared with `file.js`).
 * @param {unknown} error
 * @returns {string}
 */
export function reason(error) {
  const code = /** @type {NodeJS.ErrnoException} */ (error)?.code;
  return (code && REASONS[code]) ?? String(/** @type {Error} */ (error)?.message ?? error);
}

/**
 * @param {import("node:fs").Stats} info
 * @returns {string}
 */
function kind(info) {
  if (info.isFile()) return "a regular file";
  if (info.isDirectory()) return "a directory";
  if (info.isSocket()) return "a socket";
  if (info.isCharacterDevice() || info.isBlockDevice()) return "a device";
  return "not a FIFO";
}

/**
 * @param {string} url
 * @param {string} path
 * @param {import("node:fs").Stats} info
 */
function notAFifo(url, path, info) {
  return new TransportError(`${url}: ${path} exists and is not a FIFO (it is ${kind(info)})`);
}

/**
 * @param {string} path
 * @returns {import("node:fs").Stats | null} null when missing.
 */
function statOrNull(path) {
  try {
    return statSync(path);
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code === "ENOENT") {
      return null;
    }
    throw error;
  }
}

/**
 * Runs `mkfifo -m 600 -- path` (no shell).
 * @param {string} path
 * @returns {Promise<void>}
 */
function mkfifo(path) {
  return new Promise((resolve, reject) => {
    execFile("mkfifo", ["-m", "600", "--", path], { timeout: 10000 }, (error, _stdout, stderr) => {
      if (error) {
        reject(Object.assign(error, { stderr: String(stderr).trim() }));
      } else {
        resolve();
      }
    });
  });
}

/**
 * Creates the FIFO (0600) unless it exists; resolves whether we created it.
 * @param {string} path
 * @param {string} url
 * @returns {Promise<boolean>}
 * @throws {TransportError} it exists and is not a FIFO, or cannot be created.
 */
async function ensureFifo(path, url) {
  let info;
  try {
    info = statOrNull(path);
  } catch (error) {
    throw new TransportError(`${url}: cannot inspect ${path}: ${reason(error)}`, { cause: error });
  }
  if (info === null) {
    try {
      await mkfifo(path);
      return true;
    } catch (error) {
      info = statOrNull(path); // made by someone else meanwhile?
      if (info === null) {
        const text = /** @type {any} */ (error).stderr || reason(error);
        throw new TransportError(`${url}: cannot create the FIFO ${path}: ${text}`, { cause: error });
      }
    }
  }
  if (!info.isFIFO()) {
    throw notAFifo(url, path, info);
  }
  return false;
}

/**
 * Opens the FIFO for reading without waiting for a writer (O_NONBLOCK: returns at once).
 * @param {string} path
 * @param {string} url
 * @returns {Promise<number>} the descriptor.
 */
async function openReader(path, url) {
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code === "ENOENT") {
        await ensureFifo(path, url);
        continue;
      }
      throw new TransportError(`${url}: cannot open ${path} for reading: ${reason(error)}`, { cause: error });
    }
    const info = fstatSync(fd);
    if (!info.isFIFO()) {
      closeSync(fd);
      throw notAFifo(url, path, info);
    }
    return fd;
  }
  throw new TransportError(`${url}: ${path} keeps disappearing`);
}

/**
 * One attempt to open the FIFO for writing: the descriptor, or null to try again later.
 * @param {string} path
 * @param {string} url
 * @returns {number | null}
 * @throws {ConnectError} the path is not a FIFO, or cannot be opened.
 */
function tryOpenWriter(path, url) {
  let info;
  try {
    info = statOrNull(path);
  } catch (error) {
    throw new ConnectError(`cannot inspect ${path}: ${reason(error)}`, { url, cause: error });
  }
  if (info === null) {
    return null;
  }
  if (!info.isFIFO()) {
    throw new ConnectError(`${path} exists and is not a FIFO (it is ${kind(info)})`, { url });
  }
  let fd;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = /** @type {NodeJS.ErrnoException} */ (error).code;
    if (code === "ENXIO" || code === "ENOENT") {
      return null; // no reader yet / removed meanwhile
    }
    throw new ConnectError(`cannot open ${path} for writing: ${reason(error)}`, { url, cause: error });
  }
  const opened = fstatSync(fd);
  if (!opened.isFIFO()) {
    closeSync(fd);
    throw new ConnectError(`${path} exists and is not a FIFO (it is ${kind(opened)})`, { url });
  }
  return fd;
}

/**
 * @param {string} path
 * @param {string} url
 * @param {number} timeout
 */
function gaveUp(path, url, timeout) {
  const seconds = timeout / 1000;
  if (statOrNull(path) !== null) {
    return new ConnectError(`no reader opened the FIFO ${path} within ${seconds} s`, { url });
  }
  return new ConnectError(`no FIFO at ${path} within ${seconds} s (is the reader running?)`, { url });
}

/**
 * Waits `ms` milliseconds, or less when `signal` aborts (a helper shared with `file.js`).
 * @param {number} ms
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<void>}
 */
export function pause(ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

// ----------------------------------------------------------------------------------------------
// The reader

/**
 * The reading end of a FIFO; made by `await listen(address)`. Iterate it (`for await`) or call
 * `receive()` for the messages of every writer, in arrival order.
 */
export class FifoReader extends Listener {
  #path;
  #created;
  #sessions;
  /** @type {Socket} */
  #socket;
  #paused = false;
  #queued = 0; // bytes fed since the queue was last empty
  #closed = false;
  /** @type {unknown} */
  #error = null;
  /** @type {(() => void)[]} */
  #waiters = [];
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `listen()`.
   * @param {import("../urls.js").Address} address
   * @param {number} fd the FIFO, open for reading.
   * @param {boolean} created whether `listen()` created the FIFO.
   * @param {FifoSessions} sessions
   * @param {AbortSignal | undefined} signal
   */
  constructor(address, fd, created, sessions, signal) {
    super();
    this.url = address.url;
    this.#path = address.path;
    this.#created = created;
    this.#sessions = sessions;
    this.#socket = this.#attach(fd);
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** The FIFO's path. @returns {string} */
  get path() {
    return this.#path;
  }

  /**
   * Not possible: a FIFO carries one direction.
   * @param {unknown} _value
   * @returns {Promise<void>}
   * @throws {TransportError} always.
   */
  async send(_value) {
    throw new TransportError(`${this.url}: the reader end only receives`);
  }

  /**
   * Not possible: a FIFO carries one direction.
   * @param {Iterable<unknown>} _values
   * @returns {Promise<void>}
   * @throws {TransportError} always.
   */
  async sendMany(_values) {
    throw new TransportError(`${this.url}: the reader end only receives`);
  }

  /**
   * The next message, from whichever writer.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the reader is closed (or, with reopen: false, the writer left).
   * @throws {Error} what the onError policy threw, in its turn.
   */
  async receive() {
    await this.#fill();
    return this.#sessions.pop();
  }

  /**
   * Every message already read (at least one); throws as `receive()` does.
   * @returns {Promise<any[]>}
   */
  async receiveMany() {
    await this.#fill();
    return this.#sessions.popAll();
  }

  async #fill() {
    const sessions = this.#sessions;
    while (!sessions.ready()) {
      if (this.#closed) {
        throw new TransportClosed(`${this.url}: closed`);
      }
      if (this.#error !== null) {
        throw this.#error;
      }
      if (sessions.ended) {
        throw new TransportClosed(`${this.url}: the writer closed the FIFO`);
      }
      if (this.#paused) {
        this.#paused = false;
        this.#queued = 0;
        this.#socket.resume();
      }
      await new Promise((wake) => this.#waiters.push(() => wake(undefined)));
    }
  }

  /**
   * Closes the FIFO (a writer's next send gets TransportClosed); removes it if we made it.
   * @returns {Promise<void>}
   */
  async close() {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#socket.destroy();
    if (this.#created) {
      try {
        if (statSync(this.#path).isFIFO()) {
          unlinkSync(this.#path);
        }
      } catch {
        // gone already
      }
    }
    this.#wake();
  }

  /**
   * @param {number} fd
   * @returns {Socket}
   */
  #attach(fd) {
    const socket = new Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
    if (this.#paused) {
      socket.pause();
    }
    socket.on("data", (/** @type {Buffer} */ chunk) => {
      const sessions = this.#sessions;
      sessions.feed(chunk);
      if (sessions.ready()) {
        this.#queued += chunk.length;
        if (this.#queued >= READ_AHEAD && !this.#paused) {
          this.#paused = true;
          socket.pause();
        }
      } else {
        this.#queued = 0;
      }
      this.#wake();
    });
    socket.on("end", () => {
      if (socket === this.#socket && !this.#closed) {
        this.#writerLeft(socket).catch((error) => {
          this.#error ??= error;
          this.#wake();
        });
      }
    });
    socket.on("error", (error) => {
      if (socket === this.#socket && !this.#closed) {
        this.#error ??= new TransportError(`${this.url}: cannot read ${this.#path}: ${reason(error)}`, {
          cause: error,
        });
        this.#wake();
      }
    });
    return socket;
  }

  /**
   * The last writer closed: end, or open the FIFO again before closing the old descriptor.
   * @param {Socket} old
   */
  async #writerLeft(old) {
    const sessions = this.#sessions;
    if (sessions.writerLeft()) {
      if (sessions.received === 0) {
        await pause(IDLE_PAUSE, undefined);
      }
      if (!this.#closed) {
        const fd = await openReader(this.#path, this.url);
        if (this.#closed) {
          closeSync(fd);
        } else {
          this.#socket = this.#attach(fd);
          sessions.reopened();
        }
      }
    }
    old.destroy();
    this.#wake();
  }

  #wake() {
    for (const wake of this.#waiters.splice(0)) {
      wake();
    }
  }
}

// ----------------------------------------------------------------------------------------------
// The writer

/**
 * A writing end of a FIFO; made by `await connect(address)`. `send` waits while it is full.
 */
export class FifoWriter extends Channel {
  #path;
  #socket;
  #closed = false;
  /** @type {Error | null} */
  #error = null;
  /** @type {Promise<unknown>} the sends in progress, one after the other */
  #queue = Promise.resolve();
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `connect()`.
   * @param {import("../urls.js").Address} address
   * @param {number} fd the FIFO, open for writing (non-blocking).
   * @param {AbortSignal | undefined} signal
   */
  constructor(address, fd, signal) {
    super();
    /** @type {string} */
    this.url = address.url;
    this.#path = address.path;
    this.#socket = new Socket({ fd, readable: false, writable: true });
    this.#socket.on("error", (error) => {
      this.#error ??= error; // EPIPE and friends: thrown by the send in progress or the next
    });
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** The FIFO's path. @returns {string} */
  get path() {
    return this.#path;
  }

  /**
   * Writes one message (one write when it is at most PIPE_BUF bytes).
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot cross.
   * @throws {TransportClosed} the reader closed the FIFO (EPIPE), or this writer is closed.
   */
  send(value) {
    return this.sendBytes(encode(value));
  }

  /**
   * Writes encoded NDJSON lines as they are, completely, in writes of at most PIPE_BUF bytes
   * cut between lines. `sendMany` comes here.
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   * @throws {TransportClosed} the reader closed the FIFO (EPIPE), or this writer is closed.
   */
  sendBytes(data) {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const job = this.#queue.then(() => this.#write(bytes));
    this.#queue = job.catch(() => {});
    return job;
  }

  /** @param {Uint8Array} bytes */
  async #write(bytes) {
    for (const piece of pieces(bytes)) {
      this.#check();
      try {
        await new Promise((resolve, reject) => {
          this.#socket.write(piece, (error) => (error ? reject(error) : resolve(undefined)));
        });
      } catch (error) {
        this.#error ??= /** @type {Error} */ (error);
        this.#check();
      }
    }
  }

  #check() {
    if (this.#closed) {
      throw new TransportClosed(`${this.url}: this writer is closed`);
    }
    const error = this.#error;
    if (error !== null) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code === "EPIPE") {
        throw new TransportClosed(`${this.url}: the reader closed the FIFO`, { cause: error });
      }
      const text = `${this.url}: cannot write to ${this.#path}: ${reason(error)}`;
      throw new TransportError(text, { cause: error });
    }
  }

  /**
   * Not possible: a FIFO carries one direction.
   * @returns {Promise<any>}
   * @throws {TransportError} always.
   */
  async receive() {
    throw new TransportError(`${this.url}: the writer end only sends`);
  }

  /**
   * Not possible: a FIFO carries one direction.
   * @returns {Promise<any[]>}
   * @throws {TransportError} always.
   */
  async receiveMany() {
    throw new TransportError(`${this.url}: the writer end only sends`);
  }

  /**
   * Closes this writer; the reader sees the end once every writer has closed. A send waiting
   * for room meanwhile throws TransportClosed.
   * @returns {Promise<void>}
   */
  async close() {
    if (!this.#closed) {
      this.#closed = true;
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#socket.destroy();
    }
  }
}

// ----------------------------------------------------------------------------------------------
// The module's entry points (see channels.js)

/**
 * Opens the reading end of `address` (creating the FIFO, mode 0600, when missing).
 * @param {import("../urls.js").Address} address a parsed `fifo:/path`.
 * @param {FifoListenOptions} [options]
 * @returns {Promise<FifoReader>}
 * @throws {TransportError} the path exists and is not a FIFO, or cannot be created or opened.
 * @throws {TypeError} an unknown option.
 */
export async function listen(address, options = {}) {
  checkOptions(options, LISTEN_OPTIONS, `${address.url}: listen`);
  const { maxLine = MAX_LINE, onError, reopen = true, signal } = options;
  const sessions = new FifoSessions({ maxLine, onError, reopen });
  const created = await ensureFifo(address.path, address.url);
  const fd = await openReader(address.path, address.url);
  const reader = new FifoReader(address, fd, created, sessions, signal);
  if (signal?.aborted) {
    await reader.close();
  }
  return reader;
}

/**
 * Opens a writing end of `address`, waiting up to `timeout` ms for the FIFO and a reader.
 * @param {import("../urls.js").Address} address a parsed `fifo:/path`.
 * @param {FifoConnectOptions} [options]
 * @returns {Promise<FifoWriter>}
 * @throws {ConnectError} no reader within `timeout`, aborted, or the path is not a FIFO.
 * @throws {TypeError} an unknown option.
 */
export async function connect(address, options = {}) {
  checkOptions(options, CONNECT_OPTIONS, `${address.url}: connect`);
  const { timeout = TIMEOUT, signal } = options;
  if (!(timeout > 0)) {
    throw new RangeError(`timeout must be > 0 milliseconds, got ${timeout}`);
  }
  const deadline = Date.now() + timeout;
  let wait = FIRST_PAUSE;
  for (;;) {
    if (signal?.aborted) {
      const cause = signal.reason;
      throw new ConnectError("aborted while waiting for a reader", { url: address.url, cause });
    }
    const fd = tryOpenWriter(address.path, address.url);
    if (fd !== null) {
      return new FifoWriter(address, fd, signal);
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw gaveUp(address.path, address.url, timeout);
    }
    await pause(Math.min(wait, left), signal);
    wait = Math.min(wait * 2, MAX_PAUSE);
  }
}
