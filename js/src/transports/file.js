/**
 * Appended NDJSON files (`file:/path`): writers append lines, a reader tails the file. Mirrors
 * `src/bothways/transports/file.py` name for name (camelCase here, times in milliseconds); the
 * positions are the same JSON values in both languages, so a reader may resume from a position
 * the other language saved.
 *
 * `connect(address)` is a writer: it appends whole lines (O_APPEND, one write per `send`, so a
 * reader never sees half a line from a live writer) and can rotate the file itself
 * (`maxBytes`/`keep`). `listen(address)` is the reader: it polls the file (`poll` ms, default
 * 50), delivers complete lines only, survives truncation and rotation, and can resume.
 *
 * Strategy (the full text is in the Python module)
 * ------------------------------------------------
 * - `Tail` holds every decision and no I/O: which file to open on start, what to do on each poll
 *   (read, wait, start again after a truncation, look for the next file after a rotation), the
 *   decoder, and the position of each message. The reader does the `fs` calls it asks for.
 * - A file is known by its inode. Each poll stats the path first, then fstats the open file:
 *   when the path names another inode, the old file is read to its end, then the next one is
 *   found among `path`, `path.1`, `path.2`, ... (the one numbered one lower than the old file).
 * - `reader.position` is `{inode: "<st_ino>", head: "<8 hex>", offset: N}`: the inode as a
 *   decimal string (Node's numeric inodes lose precision above 2**53, so stats are read as
 *   BigInt), `head` the FNV-1a 32 checksum of the file's first min(64, N) bytes (ext4 reuses
 *   inode numbers at once), `offset` the end of the last message handed out.
 * - Resuming: `position` (exactly once, when the caller stores it with its own data in one
 *   atomic step) or `state: PATH`: the reader saves its position there atomically (a temporary
 *   file, then rename), and only for what the caller has taken, i.e. what it was handed before
 *   it came back for more. It saves when the caller asks for more and the last save is at least
 *   `saveEvery` old (default 200 ms; 0: at every request), when it has caught up (nothing left
 *   to hand out), and on `close()`, which takes the last message handed out as done and saves
 *   exactly its end. At least once: after a crash, what comes again is at most the messages
 *   handed out in the `saveEvery` before the last request for more, plus the batch in hand (one
 *   message from `receive` or iteration, all of them from `receiveMany`). No default state
 *   file. Writers create files with mode 0600 (`mode` to change it).
 *
 * @module bothways/file
 */

import { constants } from "node:fs";
import { open, rename, readFile, stat, unlink, writeFile } from "node:fs/promises";

import { TransportClosed, TransportError, TruncatedLine } from "../errors.js";
import { Decoder, MAX_LINE, Messages, decode, encode } from "../wire.js";
import { Channel, Listener, logError } from "./base.js";
import { checkOptions, pause, reason } from "./fifo.js";

/** Bytes at the start of a file that a position's `head` checksum covers. */
export const HEAD = 64;
/** Milliseconds between polls of an idle file (`poll`). */
export const POLL = 50;
/** Milliseconds: a reader with `state` saves at most this often while busy (`saveEvery`). */
export const SAVE_EVERY = 200;

const CHUNK = 1024 * 1024; // bytes per read
const KEEP = 5; // rotated files kept by a writer with maxBytes
const MODE = 0o600;
const START_TRIES = 3; // scans before a saved position is declared gone (a rotation may be under way)
const RENAMED_TRIES = 3; // polls before a file renamed out of the scheme gives way to the path
const NL = 0x0a;

export const READ = "read";
export const WAIT = "wait";
export const TRUNCATED = "truncated";
export const LOCATE = "locate";

const LISTEN_OPTIONS = ["maxLine", "onError", "signal", "state", "poll", "position", "follow", "saveEvery"];
const CONNECT_OPTIONS = ["maxLine", "onError", "signal", "state", "poll", "maxBytes", "keep", "mode"];

/**
 * @typedef {{inode: string, head: string, offset: number}} Position
 * Where a message ends in the file it came from; a JSON value.
 */

/**
 * @typedef {object} FileListenOptions
 * @property {number} [maxLine] the longest line accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] what to do with a malformed, too long
 *   or truncated line (default: `logError`).
 * @property {string} [state] a file where the position is kept; default none.
 * @property {number} [poll] milliseconds between looks at an idle file (default 50).
 * @property {Position} [position] where to resume (a value of `reader.position`); wins over state.
 * @property {boolean} [follow] keep waiting for more at the end (default true); false: end there.
 * @property {number} [saveEvery] with `state`, the least milliseconds between two saves while
 *   messages are handed out (default 200; 0: at every request); see the module comment.
 * @property {AbortSignal} [signal] aborting it closes the reader.
 */

/**
 * @typedef {object} FileConnectOptions
 * @property {number} [maxBytes] rotate before a write would take the file past this size.
 * @property {number} [keep] rotated files kept (`path.1` .. `path.keep`; default 5).
 * @property {number} [mode] permissions of a file created (default 0o600; umask applies).
 * @property {AbortSignal} [signal] aborting it closes the writer.
 * @property {number} [maxLine] the reader's option, accepted and ignored (one URL, both ends).
 * @property {import("./base.js").ErrorHandler} [onError] accepted and ignored.
 * @property {string} [state] accepted and ignored.
 * @property {number} [poll] accepted and ignored.
 */

/**
 * FNV-1a (32 bits) of `data` as 8 hex digits: the `head` of a position.
 * @param {Uint8Array} data
 * @returns {string}
 */
export function fingerprint(data) {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) {
    h = Math.imul(h ^ data[i], 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/**
 * @param {unknown} position
 * @returns {Position}
 * @throws {RangeError} it is not a value of `reader.position`.
 */
function checkPosition(position) {
  const p = /** @type {any} */ (position);
  if (
    p !== null &&
    typeof p === "object" &&
    !Array.isArray(p) &&
    Object.keys(p).sort().join() === "head,inode,offset" &&
    typeof p.inode === "string" &&
    typeof p.head === "string" &&
    Number.isSafeInteger(p.offset) &&
    p.offset >= 0
  ) {
    return p;
  }
  throw new RangeError(
    `position must be a value of reader.position ({inode, head, offset}), got ${JSON.stringify(position)}`,
  );
}

/** A file being (or having been) read: its inode and its first HEAD bytes as far as known. */
class Source {
  /** @type {string | null} the checksum of all HEAD bytes, once known */
  #whole = null;

  /**
   * @param {string} ino
   * @param {Uint8Array} head
   */
  constructor(ino, head) {
    this.ino = ino;
    this.head = head.slice(0, HEAD);
  }

  /** @param {Uint8Array} data bytes that follow the head known so far */
  grow(data) {
    const joined = new Uint8Array(Math.min(HEAD, this.head.length + data.length));
    joined.set(this.head);
    joined.set(data.subarray(0, joined.length - this.head.length), this.head.length);
    this.head = joined;
  }

  /**
   * @param {number} offset
   * @returns {Position}
   */
  position(offset) {
    let head;
    if (offset >= HEAD && this.head.length >= HEAD) {
      head = this.#whole ??= fingerprint(this.head);
    } else {
      head = fingerprint(this.head.subarray(0, offset));
    }
    return { inode: this.ino, head, offset };
  }
}

/**
 * @typedef {{values: any[], ends: number[], source: Source | null, error: unknown}} Batch
 * Consecutive messages of one file with the end offset of each; or an error in its turn.
 */

/**
 * The file offsets just past each newline in `data` (read at offset `start`).
 * @param {Uint8Array} data
 * @param {number} start
 * @returns {number[]}
 */
function lineEnds(data, start) {
  const ends = [];
  for (let i = data.indexOf(NL); i >= 0; i = data.indexOf(NL, i + 1)) {
    ends.push(start + i + 1);
  }
  return ends;
}

/**
 * @param {any[]} items
 * @returns {number | null} the index of the last item that is not null.
 */
function last(items) {
  for (let i = items.length - 1; i >= 0; i--) {
    if (items[i] !== null) {
      return i;
    }
  }
  return null;
}

/**
 * @param {string} path
 * @param {number} index
 * @returns {string}
 */
function nameOf(path, index) {
  return index === 0 ? path : `${path}.${index}`;
}

/**
 * The decisions of a file tail, without I/O: feed it what the file system says.
 *
 * The adapter's loop, until `ready()`:
 * 1. Nothing open: `start(candidates)` says which file to open at which offset, from
 *    `[[inode, first HEAD bytes] or null for path, path.1, path.2, ...]`; then `open(...)`.
 * 2. `step(named, size)` with `named` the inode `path` names now (stat it FIRST) and `size` the
 *    open file's size (fstat it AFTER): READ (`feed` the bytes from `offset`), WAIT (until the
 *    next poll), TRUNCATED (call `truncated()`), or LOCATE: `locate(inodes, deleted)` gives the
 *    index of the next file (open it at 0) or null.
 */
export class Tail {
  #maxLine;
  #onError;
  /** @type {Position | null} */
  #start;
  /** @type {Source | null} */
  #source = null;
  #lineEnd = 0; // end of the last complete line read: a partial line starts there
  #decoder;
  /** @type {Batch[]} */
  #queue = [];
  #index = 0; // in the first batch
  /** @type {[Source, number] | null} */
  #taken = null;
  #startMisses = 0;
  #misses = 0;
  /** Bytes of the current file read so far (the next read starts here). */
  offset = 0;

  /**
   * @param {string} path the file's path, for messages.
   * @param {{maxLine?: number, onError?: import("./base.js").ErrorHandler,
   *   position?: Position | null}} [options] `onError`: what it throws is thrown by `pop()` in
   *   its turn; `position`: where to start, or null for the start of `path`.
   * @throws {RangeError} a bad position.
   */
  constructor(path, { maxLine = MAX_LINE, onError = logError, position = null } = {}) {
    this.path = path;
    this.#maxLine = maxLine;
    this.#onError = onError ?? logError;
    this.#start = position === null || position === undefined ? null : checkPosition(position);
    this.#decoder = new Decoder({ maxLine });
  }

  /**
   * Where the last message handed out ends (before any: where reading starts).
   * @returns {Position | null}
   */
  get position() {
    if (this.#taken !== null) {
      return this.#taken[0].position(this.#taken[1]);
    }
    return this.#start === null ? null : { ...this.#start };
  }

  /** The inode of the file being read (null before `open`). @returns {string | null} */
  get reading() {
    return this.#source?.ino ?? null;
  }

  /** Whether a file is open. @returns {boolean} */
  get opened() {
    return this.#source !== null;
  }

  /** How many times `start` found nothing to open. @returns {number} */
  get startMisses() {
    return this.#startMisses;
  }

  /**
   * Whether a message (or an error thrown by onError) waits to be popped.
   * @returns {boolean}
   */
  ready() {
    return this.#queue.length > 0;
  }

  /**
   * The next message (check `ready()` first).
   * @returns {any}
   * @throws {Error} what onError threw, in its turn.
   */
  pop() {
    const batch = this.#queue[0];
    if (batch.source === null) {
      this.#queue.shift();
      throw batch.error;
    }
    const index = this.#index;
    this.#taken = [batch.source, batch.ends[index]];
    if (index + 1 === batch.values.length) {
      this.#queue.shift();
      this.#index = 0;
    } else {
      this.#index = index + 1;
    }
    return batch.values[index];
  }

  /**
   * Every message up to the next queued error (at least one thing: check `ready()`).
   * @returns {any[]}
   * @throws {Error} what onError threw, when it comes first.
   */
  popAll() {
    const queue = this.#queue;
    if (queue[0].source === null) {
      return [this.pop()];
    }
    const values = [];
    while (queue.length > 0 && queue[0].source !== null) {
      const batch = /** @type {Batch} */ (queue.shift());
      values.push(...(this.#index ? batch.values.slice(this.#index) : batch.values));
      this.#taken = [/** @type {Source} */ (batch.source), batch.ends[batch.ends.length - 1]];
      this.#index = 0;
    }
    return values;
  }

  /**
   * Where to begin: `[index, offset]` of the file to open (0: `path`), or null (wait).
   * @param {([string, Uint8Array] | null)[]} candidates `[inode, first HEAD bytes]` of `path`
   *   (index 0) or `path.i`, null when missing.
   * @returns {[number, number] | null}
   */
  start(candidates) {
    const position = this.#start;
    if (position === null) {
      if (candidates.length > 0 && candidates[0] !== null) {
        return [0, 0];
      }
      this.#startMisses++;
      return null;
    }
    const { offset } = position;
    const size = Math.min(HEAD, offset);
    for (let index = 0; index < candidates.length; index++) {
      const candidate = candidates[index];
      if (candidate !== null && candidate[0] === position.inode) {
        const head = candidate[1].subarray(0, size);
        if (head.length === size && fingerprint(head) === position.head) {
          return [index, offset];
        }
      }
    }
    this.#startMisses++;
    if (this.#startMisses < START_TRIES) {
      return null;
    }
    const oldest = last(candidates);
    if (oldest !== null) {
      console.warn(
        `${this.path}: the file of the saved position (inode ${position.inode}) is gone; ` +
          `reading from the start of ${nameOf(this.path, oldest)}`,
      );
      return [oldest, 0];
    }
    return null;
  }

  /**
   * A file was opened, to be read from `offset`; `head`: its first min(HEAD, offset) bytes. A
   * partial last line of the file read before is reported as truncated (not delivered).
   * @param {string} ino
   * @param {number} offset
   * @param {Uint8Array} head
   */
  open(ino, offset, head) {
    if (this.#source !== null) {
      this.#dropPartial(`${this.path}: the file was rotated in the middle of a line`);
    }
    this.#source = new Source(ino, head);
    if (this.#taken === null) {
      this.#taken = [this.#source, offset]; // the position before any message
    }
    this.offset = this.#lineEnd = offset;
    this.#decoder = new Decoder({ maxLine: this.#maxLine });
    this.#misses = 0;
  }

  /**
   * What to do now: READ, WAIT, TRUNCATED or LOCATE. `named` must come from a stat of `path`
   * taken before the fstat that gave `size`: then, when `path` names another file, `size` is
   * the old file's final size.
   * @param {string | null} named
   * @param {number} size
   * @returns {string}
   */
  step(named, size) {
    const source = /** @type {Source} */ (this.#source);
    if (size > this.offset) {
      return READ;
    }
    if (size < this.offset) {
      return TRUNCATED;
    }
    if (named === source.ino) {
      this.#misses = 0;
      return WAIT;
    }
    return LOCATE;
  }

  /**
   * Takes the bytes read at `offset`; complete lines become messages.
   * @param {Uint8Array} data
   */
  feed(data) {
    const source = /** @type {Source} */ (this.#source);
    const start = this.offset;
    if (start < HEAD) {
      source.grow(data);
    }
    this.offset = start + data.length;
    const first = this.#decoder.line + 1;
    const events = this.#decoder.feed(data);
    const lastNl = data.lastIndexOf(NL);
    if (lastNl >= 0) {
      this.#lineEnd = start + lastNl + 1;
    }
    /** @type {number[] | null} */
    let ends = null;
    for (const event of events) {
      if (event instanceof Messages) {
        ends ??= lineEnds(data, start);
        const k = event.line - first; // values[i] came from line event.line + i
        const { values } = event;
        this.#queue.push({ values, ends: ends.slice(k, k + values.length), source, error: null });
      } else {
        this.#report(/** @type {any} */ (event).error);
      }
    }
  }

  /** The file shrank below `offset` (copytruncate): read it again from its start. */
  truncated() {
    const source = /** @type {Source} */ (this.#source);
    console.warn(`${this.path}: the file was truncated; reading it again from its start`);
    this.#dropPartial(`${this.path}: the file was truncated in the middle of a line`);
    this.#source = new Source(source.ino, new Uint8Array(0));
    this.offset = this.#lineEnd = 0;
    this.#decoder = new Decoder({ maxLine: this.#maxLine });
  }

  /**
   * The index of the file after the current one (0: `path`), or null: not yet.
   * @param {(string | null)[]} inodes the inodes of `path`, `path.1`, ... (null: missing).
   * @param {boolean} deleted the current file has no name left (its `nlink` is 0).
   * @returns {number | null}
   */
  locate(inodes, deleted) {
    const ino = /** @type {Source} */ (this.#source).ino;
    const index = inodes.indexOf(ino);
    if (index >= 0) {
      this.#misses = 0;
      return index > 0 && inodes[index - 1] !== null ? index - 1 : null;
    }
    if (deleted) {
      return last(inodes);
    }
    this.#misses++; // renamed out of the scheme, or moving under our scan: wait and see
    if (this.#misses >= RENAMED_TRIES && inodes.length > 0 && inodes[0] !== null) {
      return 0;
    }
    return null;
  }

  /** The reading ends (`follow: false`): a partial last line is reported, not delivered. */
  finish() {
    this.#dropPartial(`${this.path}: the file ends in the middle of a line`);
  }

  /** @param {string} why */
  #dropPartial(why) {
    const partial = this.offset - this.#lineEnd;
    if (partial > 0 && this.#decoder.buffered > 0) {
      // buffered 0: an over-long line, already reported
      const error = new TruncatedLine(`${why} (${partial} bytes without a newline; not delivered)`, {
        line: this.#decoder.line + 1,
        excerpt: "",
        delivered: false,
      });
      this.#report(error);
    }
  }

  /** @param {import("../errors.js").DecodeError} error */
  #report(error) {
    try {
      this.#onError(error);
    } catch (thrown) {
      this.#queue.push({ values: [], ends: [], source: null, error: thrown });
    }
  }
}

// ----------------------------------------------------------------------------------------------
// The reader

/**
 * @param {string} path
 * @returns {Promise<string | null>} its inode, or null when missing.
 */
async function inodeOf(path) {
  try {
    return (await stat(path, { bigint: true })).ino.toString();
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code === "ENOENT") {
      return null;
    }
    throw error;
  }
}

/**
 * @param {string} state
 * @param {string} url
 * @returns {Promise<Position | null>}
 */
async function loadState(state, url) {
  let data;
  try {
    data = await readFile(state);
  } catch (error) {
    if (/** @type {NodeJS.ErrnoException} */ (error).code === "ENOENT") {
      return null;
    }
    const text = `${url}: cannot read the state file ${state}: ${reason(error)}`;
    throw new TransportError(text, { cause: error });
  }
  try {
    return checkPosition(decode(data));
  } catch (error) {
    const why = /** @type {Error} */ (error).message;
    throw new TransportError(`${url}: the state file ${state} holds no position (${why})`, { cause: error });
  }
}

/**
 * @param {string} state
 * @param {Position} position
 * @param {string} url
 */
async function saveState(state, position, url) {
  const temporary = `${state}.tmp`;
  try {
    await writeFile(temporary, encode(position), { mode: MODE });
    await rename(temporary, state); // atomic: the old position or the new one, never half
  } catch (error) {
    const text = `${url}: cannot save the position to ${state}: ${reason(error)}`;
    throw new TransportError(text, { cause: error });
  }
}

/**
 * The reading end of a file; made by `await listen(address)`. Never ends unless `follow: false`.
 */
export class FileReader extends Listener {
  #path;
  #tail;
  #poll;
  #follow;
  /** @type {string | null} */
  #state;
  /** @type {string} JSON of the position saved last */
  #saved;
  #saveEvery;
  #savedAt = performance.now();
  /** @type {import("node:fs/promises").FileHandle | null} */
  #handle = null;
  #buffer = Buffer.allocUnsafe(0);
  #closed = false;
  #ended = false;
  /** @type {Promise<unknown>} the calls in progress, one after the other */
  #queue = Promise.resolve();
  #stop = new AbortController(); // ends a pause between polls when closed
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `listen()`.
   * @param {import("../urls.js").Address} address
   * @param {Tail} tail
   * @param {{poll: number, follow: boolean, state: string | null, saveEvery: number,
   *   signal?: AbortSignal}} options
   */
  constructor(address, tail, { poll, follow, state, saveEvery, signal }) {
    super();
    this.url = address.url;
    this.#path = address.path;
    this.#tail = tail;
    this.#poll = poll;
    this.#follow = follow;
    this.#state = state;
    this.#saveEvery = saveEvery;
    this.#saved = JSON.stringify(tail.position);
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** The file's path. @returns {string} */
  get path() {
    return this.#path;
  }

  /**
   * Where the last message handed out ends: pass it as `position` to resume after it.
   * @returns {Position | null}
   */
  get position() {
    return this.#tail.position;
  }

  /**
   * Not possible: the reader end only receives.
   * @param {unknown} _value
   * @returns {Promise<void>}
   * @throws {TransportError} always.
   */
  async send(_value) {
    throw new TransportError(`${this.url}: the reader end only receives`);
  }

  /**
   * Not possible: the reader end only receives.
   * @param {Iterable<unknown>} _values
   * @returns {Promise<void>}
   * @throws {TransportError} always.
   */
  async sendMany(_values) {
    throw new TransportError(`${this.url}: the reader end only receives`);
  }

  /**
   * The next message (waiting for it); the previous one is taken as done (`state`).
   * @returns {Promise<any>}
   * @throws {TransportClosed} closed, or (follow: false) the end of the file.
   * @throws {TransportError} a file system failure.
   */
  receive() {
    return this.#serial(async () => {
      await this.#taken();
      await this.#fill();
      return this.#tail.pop();
    });
  }

  /**
   * Every message read and waiting (at least one); `position` is then the batch's end.
   * @returns {Promise<any[]>}
   */
  receiveMany() {
    return this.#serial(async () => {
      await this.#taken();
      await this.#fill();
      return this.#tail.popAll();
    });
  }

  /**
   * Saves the position (`state`) and closes the file; safe to call twice.
   * @returns {Promise<void>}
   */
  async close() {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#stop.abort();
    await this.#queue; // a receive in progress finishes (with TransportClosed) first
    try {
      await this.#save();
    } finally {
      await this.#handle?.close();
      this.#handle = null;
    }
  }

  /**
   * @template T
   * @param {() => Promise<T>} body
   * @returns {Promise<T>}
   */
  #serial(body) {
    const run = this.#queue.then(body);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Whether the caller's asking for more must save the position now (the last save is old). */
  #due() {
    return this.#state !== null && performance.now() - this.#savedAt >= this.#saveEvery;
  }

  /** The caller asks for more: what it was handed is done; saved when the last save is old. */
  async #taken() {
    if (this.#due()) {
      await this.#save();
    }
  }

  /** Saves the position (`state`) when it moved since the last save. */
  async #save() {
    if (this.#state !== null) {
      const position = this.#tail.position;
      const text = JSON.stringify(position);
      if (position !== null && text !== this.#saved) {
        await saveState(this.#state, position, this.url);
        this.#saved = text;
      }
      this.#savedAt = performance.now();
    }
  }

  async #fill() {
    const tail = this.#tail;
    for (;;) {
      if (this.#closed) {
        throw new TransportClosed(`${this.url}: closed`);
      }
      if (await this.#advance()) {
        return;
      }
      await this.#save(); // nothing to hand out: the caller waits, so all it was handed is done
      if (this.#ended) {
        throw new TransportClosed(`${this.url}: end of file`);
      }
      if (!this.#follow && (tail.opened || tail.startMisses >= START_TRIES)) {
        this.#ended = true;
        tail.finish();
        if (tail.ready()) {
          return;
        }
        throw new TransportClosed(`${this.url}: end of file`);
      }
      await pause(this.#poll, this.#stop.signal);
    }
  }

  /**
   * Reads until a message waits (true) or nothing more can be done now (false).
   * @returns {Promise<boolean>}
   */
  async #advance() {
    const tail = this.#tail;
    try {
      while (!tail.ready()) {
        if (this.#closed) {
          return false;
        }
        if (this.#handle === null) {
          if (!(await this.#start())) {
            return false;
          }
          continue;
        }
        const named = await inodeOf(this.#path); // before the fstat: see Tail.step
        const info = await this.#handle.stat({ bigint: true });
        const size = Number(info.size);
        const action = tail.step(named, size);
        if (this.#closed) {
          return false; // closed while we awaited the stat: read nothing more
        }
        if (action === READ) {
          const length = Math.min(CHUNK, size - tail.offset);
          if (this.#buffer.length < length) {
            this.#buffer = Buffer.allocUnsafe(CHUNK);
          }
          const { bytesRead } = await this.#handle.read(this.#buffer, 0, length, tail.offset);
          if (bytesRead === 0) {
            return false;
          }
          tail.feed(this.#buffer.subarray(0, bytesRead));
        } else if (action === TRUNCATED) {
          tail.truncated();
        } else if (action === WAIT) {
          return false;
        } else {
          const inodes = (await this.#scan(false)).map((c) => (c === null ? null : c[0]));
          const index = tail.locate(inodes, info.nlink === 0n);
          if (index === null || !(await this.#open(index, 0, inodes[index]))) {
            return false;
          }
        }
      }
      return true;
    } catch (error) {
      if (error instanceof TransportError) {
        throw error;
      }
      const where = /** @type {NodeJS.ErrnoException} */ (error).path ?? this.#path;
      throw new TransportError(`${this.url}: ${reason(error)} (${where})`, { cause: error });
    }
  }

  /** @returns {Promise<boolean>} */
  async #start() {
    const candidates = await this.#scan(true);
    const where = this.#tail.start(candidates);
    if (where === null) {
      return false;
    }
    const [index, offset] = where;
    return this.#open(index, offset, candidates[index]?.[0] ?? null);
  }

  /**
   * @param {number} index
   * @param {number} offset
   * @param {string | null} expected the inode the scan saw under that name.
   * @returns {Promise<boolean>} false: it moved meanwhile (the next poll looks again).
   */
  async #open(index, offset, expected) {
    if (this.#closed) {
      return false; // closed amid the switch (while we scanned): open nothing
    }
    let handle;
    try {
      handle = await open(nameOf(this.#path, index), constants.O_RDONLY);
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code === "ENOENT") {
        return false;
      }
      throw error;
    }
    let ino;
    let head = new Uint8Array(0);
    try {
      ino = (await handle.stat({ bigint: true })).ino.toString();
      if (ino === expected && offset > 0 && !this.#closed) {
        const buffer = Buffer.alloc(Math.min(HEAD, offset));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        head = buffer.subarray(0, bytesRead);
      }
    } catch (error) {
      await handle.close(); // never left open behind an error
      throw error;
    }
    // A close() that came while we awaited wins: the new file is closed again, never read.
    if (ino !== expected || this.#closed) {
      await handle.close();
      return false;
    }
    const old = this.#handle;
    this.#handle = handle;
    this.#tail.open(ino, offset, head);
    await old?.close();
    return true;
  }

  /**
   * `path`, `path.1`, ...: [inode, first HEAD bytes] or null, up to two missing in a row. Without
   * `heads`, the scan stops at the file being read (what follows it is not needed).
   * @param {boolean} heads
   * @returns {Promise<([string, Uint8Array] | null)[]>}
   */
  async #scan(heads) {
    /** @type {([string, Uint8Array] | null)[]} */
    const found = [];
    const reading = this.#tail.reading;
    for (let index = 0, missing = 0; missing < 2; index++) {
      const name = nameOf(this.#path, index);
      /** @type {[string, Uint8Array] | null} */
      let entry = null;
      if (heads) {
        try {
          const handle = await open(name, constants.O_RDONLY);
          try {
            const ino = (await handle.stat({ bigint: true })).ino.toString();
            const buffer = Buffer.alloc(HEAD);
            const { bytesRead } = await handle.read(buffer, 0, HEAD, 0);
            entry = [ino, buffer.subarray(0, bytesRead)];
          } finally {
            await handle.close();
          }
        } catch (error) {
          if (/** @type {NodeJS.ErrnoException} */ (error).code !== "ENOENT") {
            throw error;
          }
        }
      } else {
        const ino = await inodeOf(name);
        entry = ino === null ? null : [ino, new Uint8Array(0)];
      }
      found.push(entry);
      if (entry !== null && !heads && entry[0] === reading) {
        break;
      }
      missing = entry === null && index > 0 ? missing + 1 : 0;
    }
    while (found.length > 1 && found[found.length - 1] === null) {
      found.pop();
    }
    return found;
  }

  /**
   * Yields the messages (read in batches); `position` follows each one, and with `state` a
   * message is taken as done when the next one is asked for (saved as the module comment says).
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    const reader = this;
    const tail = this.#tail;
    return {
      async next() {
        if (tail.ready() && !reader.#closed && !reader.#due()) {
          return { value: tail.pop(), done: false }; // the fast path: no promise chain, no save
        }
        try {
          return { value: await reader.receive(), done: false };
        } catch (error) {
          if (error instanceof TransportClosed) {
            return { value: undefined, done: true };
          }
          throw error;
        }
      },
      async return() {
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

// ----------------------------------------------------------------------------------------------
// The writer

/** The writer's file: appends, and rotates when asked to. */
class Appender {
  /** @type {import("node:fs/promises").FileHandle} */
  handle;

  /**
   * @param {string} url
   * @param {string} path
   * @param {{maxBytes: number | null, keep: number, mode: number}} options
   * @param {import("node:fs/promises").FileHandle} handle
   */
  constructor(url, path, { maxBytes, keep, mode }, handle) {
    this.url = url;
    this.path = path;
    this.maxBytes = maxBytes;
    this.keep = keep;
    this.mode = mode;
    this.handle = handle;
    this.closed = false;
  }

  /**
   * @param {string} url
   * @param {string} path
   * @param {number} mode
   * @returns {Promise<import("node:fs/promises").FileHandle>}
   */
  static async open(url, path, mode) {
    try {
      return await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, mode);
    } catch (error) {
      const text = `${url}: cannot open ${path} for appending: ${reason(error)}`;
      throw new TransportError(text, { cause: error });
    }
  }

  /**
   * One write of whole lines (more only if the kernel took part of it: disk full...).
   * @param {Uint8Array} bytes
   */
  async write(bytes) {
    if (this.closed) {
      throw new TransportClosed(`${this.url}: this writer is closed`);
    }
    try {
      if (this.maxBytes !== null) {
        const size = (await this.handle.stat()).size;
        if (size > 0 && size + bytes.length > this.maxBytes) {
          await this.#rotate();
        }
      }
      for (let at = 0; at < bytes.length; ) {
        const { bytesWritten } = await this.handle.write(bytes, at, bytes.length - at);
        at += bytesWritten;
      }
    } catch (error) {
      if (error instanceof TransportError) {
        throw error;
      }
      const text = `${this.url}: cannot write to ${this.path}: ${reason(error)}`;
      throw new TransportError(text, { cause: error });
    }
  }

  async #rotate() {
    const path = this.path;
    const ignoreMissing = (/** @type {NodeJS.ErrnoException} */ error) => {
      if (error.code !== "ENOENT") throw error;
    };
    if (this.keep === 0) {
      await unlink(path).catch(ignoreMissing);
    } else {
      for (let index = this.keep - 1; index > 0; index--) {
        await rename(`${path}.${index}`, `${path}.${index + 1}`).catch(ignoreMissing);
      }
      await rename(path, `${path}.1`).catch(ignoreMissing);
    }
    const old = this.handle;
    this.handle = await Appender.open(this.url, path, this.mode);
    await old.close();
  }

  async close() {
    if (!this.closed) {
      this.closed = true;
      await this.handle.close();
    }
  }
}

/**
 * An appending end of a file; made by `await connect(address)`.
 */
export class FileWriter extends Channel {
  #appender;
  /** @type {Promise<unknown>} the writes in progress, one after the other */
  #queue = Promise.resolve();
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `connect()`.
   * @param {import("../urls.js").Address} address
   * @param {Appender} appender
   * @param {AbortSignal | undefined} signal
   */
  constructor(address, appender, signal) {
    super();
    /** @type {string} */
    this.url = address.url;
    this.#appender = appender;
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** The file's path. @returns {string} */
  get path() {
    return this.#appender.path;
  }

  /**
   * Appends one message: one line, in one write.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot cross.
   * @throws {TransportClosed} this writer is closed.
   * @throws {TransportError} the write failed.
   */
  send(value) {
    return this.sendBytes(encode(value));
  }

  /**
   * Appends encoded NDJSON lines as they are, in one write (`sendMany` comes here).
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   */
  sendBytes(data) {
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const job = this.#queue.then(() => this.#appender.write(bytes));
    this.#queue = job.catch(() => {});
    return job;
  }

  /**
   * Not possible: the writer end only sends.
   * @returns {Promise<any>}
   * @throws {TransportError} always.
   */
  async receive() {
    throw new TransportError(`${this.url}: the writer end only sends`);
  }

  /**
   * Not possible: the writer end only sends.
   * @returns {Promise<any[]>}
   * @throws {TransportError} always.
   */
  async receiveMany() {
    throw new TransportError(`${this.url}: the writer end only sends`);
  }

  /**
   * Closes the file after the writes in progress; safe to call twice.
   * @returns {Promise<void>}
   */
  async close() {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    await this.#queue;
    await this.#appender.close();
  }
}

// ----------------------------------------------------------------------------------------------
// The module's entry points (see channels.js)

/**
 * Tails the file of `address` (waiting for it to appear when it does not exist yet).
 * @param {import("../urls.js").Address} address a parsed `file:/path`.
 * @param {FileListenOptions} [options]
 * @returns {Promise<FileReader>}
 * @throws {RangeError} a bad `position`, `poll` or `saveEvery`.
 * @throws {TransportError} the state file cannot be read.
 * @throws {TypeError} an unknown option.
 */
export async function listen(address, options = {}) {
  checkOptions(options, LISTEN_OPTIONS, `${address.url}: listen`);
  const { maxLine = MAX_LINE, onError, state = null, poll = POLL, follow = true, signal } = options;
  const { saveEvery = SAVE_EVERY } = options;
  let { position = null } = options;
  if (!(poll > 0)) {
    throw new RangeError(`poll must be > 0 milliseconds, got ${poll}`);
  }
  if (!(saveEvery >= 0)) {
    throw new RangeError(`saveEvery must be >= 0 milliseconds, got ${saveEvery}`);
  }
  if (position === null && state !== null) {
    position = await loadState(state, address.url);
  }
  const tail = new Tail(address.path, { maxLine, onError, position });
  const reader = new FileReader(address, tail, { poll, follow, state, saveEvery, signal });
  if (signal?.aborted) {
    await reader.close();
  }
  return reader;
}

/**
 * Opens the file of `address` for appending (created with `mode`, default 0o600).
 * @param {import("../urls.js").Address} address a parsed `file:/path`.
 * @param {FileConnectOptions} [options]
 * @returns {Promise<FileWriter>}
 * @throws {TransportError} the file cannot be opened.
 * @throws {RangeError} a bad `maxBytes` or `keep`.
 * @throws {TypeError} an unknown option.
 */
export async function connect(address, options = {}) {
  checkOptions(options, CONNECT_OPTIONS, `${address.url}: connect`);
  const { maxBytes = null, keep = KEEP, mode = MODE, signal } = options;
  if (maxBytes !== null && !(maxBytes >= 1)) {
    throw new RangeError(`maxBytes must be >= 1, got ${maxBytes}`);
  }
  if (!(keep >= 0)) {
    throw new RangeError(`keep must be >= 0, got ${keep}`);
  }
  const handle = await Appender.open(address.url, address.path, mode);
  const appender = new Appender(address.url, address.path, { maxBytes, keep, mode }, handle);
  const writer = new FileWriter(address, appender, signal);
  if (signal?.aborted) {
    await writer.close();
  }
  return writer;
}
