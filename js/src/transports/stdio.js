/**
 * Child processes: spawn the other language and stream NDJSON over its stdin and stdout.
 * Mirrors `src/bothways/transports/stdio.py` name for name (camelCase here).
 *
 * Parent side: `spawn(argv)` starts any program that speaks NDJSON and returns a `Child` at
 * once: iterate its stdout's messages with `for await` (or take them a chunk at a time with
 * `receiveMany()`), `send` to its stdin; `supervise(argv)` restarts it after a crash. Child side:
 * `stdio()` reads our stdin and writes our stdout.
 *
 * With `spawn(argv, {channelFd: true})` the messages travel on a socket of their own instead:
 * one end of a socketpair, the child's file descriptor 3, named in its `BOTHWAYS_CHANNEL_FD`
 * (`stdio()` there finds it). The child's stdout is then free and shown line by line like its
 * stderr, so a `console.log`, `print()` or raw write to fd 1 cannot corrupt the messages.
 * Python's `spawn(argv, channel_fd=True)` is the same thing.
 *
 * Strategy
 * --------
 * - stdout is read in flowing mode and fed to the wire Decoder chunk by chunk: never
 *   `parseFloat(chunk)`, any line length. Reading starts at the first `receive()`, and the
 *   stream is paused as soon as the queue holds `READ_AHEAD` bytes' worth of values; it resumes
 *   when `receive()` finds the queue empty. The pipe then fills and the producer blocks: a slow
 *   consumer holds a fast producer back instead of buffering without bound.
 * - Values wait in the Inbox as the decoder's batches (a chunk of lines is one array), and are
 *   handed out from there: `for await` gets each one as one resolved promise (no read, no
 *   promise chain per message), `receiveMany()` a whole batch per `await`.
 * - `send` resolves once `write()` has accepted the line, or after 'drain' when it reports a
 *   full buffer: awaiting each send is all the backpressure a caller needs. All the sends
 *   waiting for one 'drain' share one set of listeners. The first write to a stream in a tick
 *   goes out at once (a lone answer or call is not held back); the ones after it are corked
 *   until the next tick, so the rest of a burst of sends leaves in one writev(), not a system
 *   call each.
 * - Lifetime, in three layers: `close()` ends stdin, waits `grace` ms, SIGTERMs the child's
 *   process group, waits, then SIGKILLs it; a process 'exit' hook SIGKILLs every live child's
 *   group; and on Linux, when util-linux `setpriv` is installed, the child runs under
 *   `setpriv --pdeathsig KILL`, so it dies even when we are SIGKILLed (Node cannot call prctl).
 *   In a worker thread the worker is the parent: its 'exit' hook and the parent-death signal
 *   (Linux sends it when the thread that started the child ends) end its children with it.
 *   (Python's spawn() starts children from one long-lived thread instead: a Python thread has
 *   no exit hook, and a child started from a short-lived one must not die with it.)
 *
 * Rules, each answering a bug that python-shell and friends keep getting:
 * - stderr is drained all the time (a full stderr pipe would stall the child), kept as a bounded
 *   tail and forwarded line by line with the child's name as prefix; it never mixes with data.
 * - A Python child gets `PYTHONUNBUFFERED=1` and UTF-8 I/O, so output arrives as it is written.
 * - A clean exit ends iteration; a non-zero exit or a signal throws `ChildExited` with the code
 *   or signal and the stderr tail (a Python traceback reads as one here).
 * - The child leads its own process group (`detached: true`), so the group is killed with it.
 *   Node reaps every child it spawns: no zombies.
 * - argv arrays only, never a shell. A program that cannot be started gives a `ChildExited`
 *   (returncode null) from `receive()`/`send()`/`wait()`, not an exception from `spawn()`.
 * - OS errors are mapped once, here, to the bothways error tree, with the original as `cause`.
 *
 * @module bothways/stdio
 */

import { spawn as nodeSpawn, spawnSync } from "node:child_process";
import { accessSync, fstatSync, constants as fsConstants, statSync } from "node:fs";
import { Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { basename, delimiter, isAbsolute, join, resolve } from "node:path";

import { ChildExited, TransportClosed, TransportError } from "../errors.js";
import { MAX_LINE, encode } from "../wire.js";
import { Channel, Inbox, inboxIterator, sendNow } from "./base.js";

/** Milliseconds `close()` waits between closing stdin, SIGTERM and SIGKILL. */
export const GRACE = 2000;
/** Lines of the child's stderr kept for `stderrTail` and `ChildExited`. */
export const TAIL_LINES = 50;
/** The variable that tells a child who spawned it (a bothways child then watches that parent). */
export const PARENT_ENV = "BOTHWAYS_PARENT_PID";
/** The variable that gives a child the file descriptor of its channel socket (`channelFd`). */
export const CHANNEL_ENV = "BOTHWAYS_CHANNEL_FD";
/** The child's file descriptor of the channel socket when `channelFd` is set. */
const CHANNEL_FD = 3;

const READ_AHEAD = 256 * 1024; // bytes decoded ahead of the consumer before reading pauses
const STDERR_LINE = 64 * 1024; // a longer stderr "line" (no newline) is cut into pieces

/**
 * @typedef {"forward" | "keep" | ((line: string) => void)} StderrMode
 * `"forward"` (default): to our stderr as `[name] line`; `"keep"`: the tail only; a function:
 * called with each line (without its newline).
 */

/**
 * @typedef {object} SpawnOptions
 * @property {Record<string, string | undefined>} [env] the child's environment (default: ours).
 * @property {string} [cwd] its working directory.
 * @property {string} [name] the prefix of its forwarded stderr and the subject of error messages
 *   (default: the program's and the script's base names, e.g. `"python worker.py"`).
 * @property {StderrMode} [stderr] what to do with its stderr lines.
 * @property {number} [maxLine] the longest stdout line accepted, in bytes (default 16 MiB).
 * @property {boolean} [binary] take binary frames (spec/PROTOCOL.md section 2), as the calls to
 *   a module do (`python.import`). (Python: `binary=True`.)
 * @property {import("./base.js").ErrorHandler} [onError] what to do with a malformed stdout line
 *   (default: `logError`, which warns and goes on; `raiseError` makes `receive()` throw it).
 * @property {number} [grace] milliseconds `close()` waits between its steps (default 2000).
 * @property {number} [tailLines] stderr lines kept (default 50).
 * @property {AbortSignal} [signal] aborting it closes the child, as `close()` does.
 * @property {boolean} [channelFd] messages travel on a socket passed to the child as file
 *   descriptor 3 (the child's `BOTHWAYS_CHANNEL_FD` says so; `stdio()` there finds it) instead of
 *   its stdin/stdout. Its stdout is then free and shown like its stderr (same `stderr` mode, not
 *   kept in the tail), so a `console.log`, `print()` or raw write to fd 1 in the child cannot
 *   corrupt the messages. Its stdin is /dev/null. (Python: `channel_fd=True`.)
 */

// ----------------------------------------------------------------------------------------------
// Lifetime: the children still running, killed when this process exits.

/** @type {Set<number>} pids (= process group ids) of the children still running */
const live = new Set();
let exitHooked = false;

function killLive() {
  for (const pid of live) {
    killGroup(pid, "SIGKILL");
  }
}

/**
 * @param {number} pid the leader of the group.
 * @param {NodeJS.Signals} signal
 */
function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal); // the child leads its own group (detached: true)
  } catch {
    // ESRCH: the group is gone already; EPERM: not ours any more
  }
}

/** @type {string | null | undefined} the setpriv that supports --pdeathsig; null: none */
let setpriv;

/**
 * The `setpriv` program when it can give the child a parent-death signal (checked once).
 * @returns {string | null}
 */
function deathWrapper() {
  if (setpriv === undefined) {
    setpriv = null;
    const path = process.platform === "linux" ? findOnPath("setpriv", process.env.PATH) : null;
    if (path !== null) {
      const help = spawnSync(path, ["--help"], { encoding: "utf8", timeout: 5000, stdio: "pipe" });
      if (help.status === 0 && help.stdout.includes("--pdeathsig")) {
        setpriv = path;
      }
    }
  }
  return setpriv;
}

// ----------------------------------------------------------------------------------------------
// Starting a child

/**
 * @param {string} path
 * @returns {boolean} whether `path` is a file we may execute.
 */
function isExecutable(path) {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * @param {string} program a name without "/".
 * @param {string | undefined} path a PATH value.
 * @param {string} [cwd] where empty PATH entries point.
 * @returns {string | null}
 */
function findOnPath(program, path, cwd = process.cwd()) {
  for (const dir of (path ?? "/usr/bin:/bin").split(delimiter)) {
    const candidate = resolve(cwd, dir, program);
    if (isExecutable(candidate)) {
      return candidate;
    }
  }
  return null;
}

/**
 * Looks the program up as exec would (relative to `cwd`, or on the child's PATH), so that a
 * missing program is reported as such even when `setpriv` stands in front of it.
 * @param {string} program
 * @param {string | undefined} path the child's PATH.
 * @param {string | undefined} cwd
 * @returns {NodeJS.ErrnoException | null} the error, or null when it can be started.
 */
function checkProgram(program, path, cwd) {
  const base = cwd === undefined ? process.cwd() : resolve(cwd);
  let code = null;
  if (cwd !== undefined && !isDirectory(base)) {
    /** @type {NodeJS.ErrnoException} */
    const error = new Error(`spawn ${program}: working directory ${cwd} ENOENT`);
    return Object.assign(error, { code: "ENOENT", syscall: "chdir", path: String(cwd) });
  }
  if (program.includes("/")) {
    const full = isAbsolute(program) ? program : join(base, program);
    if (!isExecutable(full)) {
      code = exists(full) ? "EACCES" : "ENOENT";
    }
  } else if (findOnPath(program, path, base) === null) {
    code = "ENOENT";
  }
  if (code === null) {
    return null;
  }
  /** @type {NodeJS.ErrnoException} */
  const error = new Error(`spawn ${program} ${code}`);
  return Object.assign(error, { code, syscall: `spawn ${program}`, path: program });
}

/** @param {string} path */
function isDirectory(path) {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** @param {string} path */
function exists(path) {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * @param {string[]} argv
 * @param {Record<string, string | undefined> | undefined} env
 * @param {number | null} [channel] the child's fd of the channel socket.
 * @returns {Record<string, string>}
 */
function childEnv(argv, env, channel = null) {
  /** @type {Record<string, string>} */
  const merged = {};
  for (const [key, value] of Object.entries(env ?? process.env)) {
    if (value !== undefined) {
      merged[key] = String(value);
    }
  }
  merged[PARENT_ENV] = String(process.pid);
  delete merged[CHANNEL_ENV]; // never pass on a channel that is not the child's
  if (channel !== null) {
    merged[CHANNEL_ENV] = String(channel);
  }
  if (basename(argv[0]).includes("python")) {
    merged.PYTHONUNBUFFERED ??= "1";
    merged.PYTHONIOENCODING ??= "utf-8";
    merged.PYTHONUTF8 ??= "1";
  }
  return merged;
}

/**
 * The program's base name, plus the script's when argv[1] is not an option.
 * @param {string[]} argv
 * @returns {string}
 */
function defaultName(argv) {
  const parts = [basename(argv[0])];
  if (argv.length > 1 && !argv[1].startsWith("-")) {
    parts.push(basename(argv[1]));
  }
  return parts.join(" ");
}

const REASONS = /** @type {Record<string, string>} */ ({
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EAGAIN: "resource temporarily unavailable",
  EMFILE: "too many open files",
  ENFILE: "too many open files in system",
});

/**
 * @param {string} name
 * @param {string} program
 * @param {NodeJS.ErrnoException} cause
 * @returns {ChildExited}
 */
function startError(name, program, cause) {
  const reason = (cause.code && REASONS[cause.code]) ?? cause.message;
  const code = cause.code ? ` (${cause.code})` : "";
  const where = cause.syscall === "chdir" ? ` in ${cause.path}` : "";
  return new ChildExited(`${name}: could not start ${program}${where}: ${reason}${code}`, {
    returncode: null,
    cause,
  });
}

/**
 * @param {string} name
 * @param {number} returncode negative: killed by that signal.
 * @param {string | null} signal
 * @param {string} tail
 * @param {unknown} [cause]
 * @returns {ChildExited | null} null for a clean exit.
 */
function exitError(name, returncode, signal, tail, cause = undefined) {
  if (returncode === 0) {
    return null;
  }
  const message = signal !== null ? `${name} was killed by ${signal}` : `${name} exited with code ${returncode}`;
  return new ChildExited(message, { returncode, signal, stderrTail: tail, cause });
}

// ----------------------------------------------------------------------------------------------
// Shared helpers: the stderr tail, the reading loop, waiting on streams and timers

/** The child's stderr: a bounded tail, plus forwarding or a callback per line. */
class StderrLines {
  #name;
  #mode;
  #max;
  /** @type {string[]} */
  #tail = [];
  #partial = "";

  /**
   * @param {string} name
   * @param {StderrMode} mode
   * @param {number} max
   */
  constructor(name, mode, max) {
    if (typeof mode !== "function" && mode !== "forward" && mode !== "keep") {
      throw new TypeError(`stderr must be "forward", "keep" or a function, not ${String(mode)}`);
    }
    this.#name = name;
    this.#mode = mode;
    this.#max = max;
  }

  /** @param {string} text decoded text, any part of a line */
  write(text) {
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      this.#line(this.#partial + text.slice(start, nl));
      this.#partial = "";
      start = nl + 1;
    }
    this.#partial += text.slice(start);
    while (this.#partial.length > STDERR_LINE) {
      this.#line(this.#partial.slice(0, STDERR_LINE));
      this.#partial = this.#partial.slice(STDERR_LINE);
    }
  }

  end() {
    if (this.#partial) {
      this.#line(this.#partial);
      this.#partial = "";
    }
  }

  /** @returns {string} the kept lines, joined by "\n" */
  text() {
    return this.#tail.join("\n");
  }

  /** @param {string} line */
  #line(line) {
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (this.#max > 0) {
      this.#tail.push(text);
      if (this.#tail.length > this.#max) {
        this.#tail.shift();
      }
    }
    if (typeof this.#mode === "function") {
      try {
        this.#mode(text);
      } catch (error) {
        // Throwing here would crash the process from an event handler; stderr must keep draining.
        process.emitWarning(`the stderr callback of ${this.#name} threw: ${error}`);
      }
    } else if (this.#mode === "forward") {
      process.stderr.write(`[${this.#name}] ${text}\n`);
    }
  }
}

/**
 * Reads a byte stream into an Inbox, only as fast as values are taken out (see Strategy); or,
 * in push mode (`deliverTo`), hands each decoded batch to a target from the 'data' handler.
 */
class Reader {
  #stream;
  #inbox;
  /** @type {(() => void)[]} */
  #waiters = [];
  #started = false;
  #ended = false;
  #paused = false;
  #queued = 0; // bytes fed since the inbox was last empty
  /** @type {import("./base.js").MessagesHandler | null} push mode: who takes each batch */
  #target = null;
  /** @type {((error: unknown) => void) | null} push mode: told once, after the last batch */
  #onEndPush = null;
  #delivering = false; // push mode: a batch is with the target
  /** @type {unknown} a failure of the stream itself, after which it ended */
  error = null;

  /**
   * @param {import("node:stream").Readable} stream
   * @param {Inbox} inbox
   */
  constructor(stream, inbox) {
    this.#stream = stream;
    this.#inbox = inbox;
    stream.on("error", this.#onError); // stays: an 'error' without listener would crash us
  }

  /**
   * Waits until a value is in the inbox, reading more when it is empty.
   * @returns {Promise<boolean>} true: a value waits; false: the stream has ended and every
   *   value was taken.
   */
  async fill() {
    const inbox = this.#inbox;
    while (inbox.length === 0) {
      if (this.#ended) {
        return false;
      }
      this.#flow();
      await new Promise((wake) => this.#waiters.push(wake));
    }
    return true;
  }

  /**
   * Push mode: from now on every batch of values goes to `onMessages` as soon as it is decoded
   * (what waits already goes in a microtask), and `onEnd(error)` is called once after the last
   * batch: with what the inbox's policy threw (the stream is read no further), or with null at
   * the end of the stream or when `stop()` is called. No read-ahead limit: the target takes
   * everything at once. `fill()` must not be called afterwards.
   * @param {import("./base.js").MessagesHandler} onMessages
   * @param {(error: unknown) => void} onEnd
   */
  deliverTo(onMessages, onEnd) {
    this.#target = onMessages;
    this.#onEndPush = onEnd;
    if (this.#inbox.length > 0 || this.#ended) {
      queueMicrotask(() => this.#deliver());
    }
    if (!this.#ended) {
      this.#flow();
    }
  }

  /** Starts reading, or resumes it after a pause. */
  #flow() {
    if (!this.#started) {
      this.#start();
    } else if (this.#paused) {
      this.#paused = false;
      this.#queued = 0;
      this.#stream.resume();
    }
  }

  /**
   * Stops reading for good: no end-of-stream report; pending `fill()` calls get false (in push
   * mode, the end handler gets null).
   * @param {boolean} destroy whether to destroy the stream too (not our own stdin).
   */
  stop(destroy) {
    const stream = this.#stream;
    this.#ended = true;
    stream.removeListener("data", this.#onData);
    stream.removeListener("end", this.#onEnd);
    stream.removeListener("close", this.#onEnd);
    if (destroy) {
      stream.destroy();
    } else {
      stream.pause();
    }
    this.#wake();
    this.#endPush(null);
  }

  #start() {
    this.#started = true;
    const stream = this.#stream;
    stream.on("end", this.#onEnd);
    stream.on("close", this.#onEnd); // destroyed, or failed, without 'end'
    stream.on("data", this.#onData);
  }

  /** @param {Buffer} chunk */
  #onData = (chunk) => {
    const inbox = this.#inbox;
    inbox.feed(chunk);
    if (this.#target !== null) {
      this.#deliver();
      return;
    }
    if (inbox.length === 0) {
      this.#queued = 0;
    } else if ((this.#queued += chunk.length) >= READ_AHEAD && !this.#paused) {
      this.#paused = true;
      this.#stream.pause();
    }
    this.#wake();
  };

  #onEnd = () => {
    if (!this.#ended) {
      this.#ended = true;
      this.#inbox.feedEof();
      this.#wake();
      if (this.#target !== null) {
        this.#deliver();
      }
    }
  };

  /**
   * Push mode: hands out what the inbox holds, then reports the end if it has come. A stream
   * fed from the target itself (an in-memory loopback) can emit 'data' while a batch is being
   * handled: its values wait for the loop below, so that nothing overtakes the batch.
   */
  #deliver() {
    if (this.#delivering) {
      return;
    }
    this.#delivering = true;
    try {
      const inbox = this.#inbox;
      while (inbox.length > 0 && this.#target !== null) {
        let values;
        try {
          values = inbox.popAll();
        } catch (error) {
          // the policy threw (raiseError): the values before the bad line went, the error ends it
          this.#endPush(error);
          if (!this.#ended) {
            this.stop(false);
          }
          return;
        }
        this.#target(values);
      }
    } finally {
      this.#delivering = false;
    }
    if (this.#ended) {
      this.#endPush(null);
    }
  }

  /** @param {unknown} error */
  #endPush(error) {
    const onEnd = this.#onEndPush;
    if (onEnd !== null) {
      this.#target = null;
      this.#onEndPush = null;
      onEnd(error);
    }
  }

  /** @param {NodeJS.ErrnoException} error */
  #onError = (error) => {
    if (error.code !== "ECONNRESET") {
      this.error ??= error; // (a socket reset by a peer that left with our data unread: the end)
    }
    this.#onEnd();
  };

  #wake() {
    for (const wake of this.#waiters.splice(0)) {
      wake();
    }
  }
}

/** @type {WeakMap<import("node:stream").Writable, Error>} the first error of each output */
const writeErrors = new WeakMap();

/**
 * Records the errors of `stream` (EPIPE...) instead of letting them crash the process.
 * @param {import("node:stream").Writable} stream
 */
function watchErrors(stream) {
  if (!writeErrors.has(stream) && !stream.listeners("error").includes(recordError)) {
    stream.on("error", recordError);
  }
}

/** @this {import("node:stream").Writable} @param {Error} error */
function recordError(error) {
  if (!writeErrors.has(this)) {
    writeErrors.set(this, error);
  }
}

/**
 * @param {import("node:stream").Writable} stream
 * @returns {Error | null} why it can take no more writes, if it cannot.
 */
function unwritable(stream) {
  const error = writeErrors.get(stream);
  if (error) {
    return error;
  }
  if (stream.destroyed || !stream.writable) {
    return new Error("the stream is closed");
  }
  return null;
}

/** @type {import("node:stream").Writable[]} the streams written to in this tick */
const touched = [];
/** @type {import("node:stream").Writable[]} those of them corked until the next tick */
const corked = [];
let uncorkHooked = false;

/** The tick is over: what was corked leaves, one writev() per stream. */
function uncorkAll() {
  while (touched.length > 0) {
    touched.pop(); // (cheaper than `length = 0` for the one or two there usually are)
  }
  if (corked.length > 0) {
    for (const stream of corked.splice(0)) {
      stream.uncork();
    }
  }
}

/**
 * `stream.write(data)`: the first write to a stream in a tick goes out at once, the ones after
 * it in the same tick are corked until the next tick, so the lines sent in a burst of
 * `await send()` leave in two writes (the first, then one writev()) instead of one system call
 * each, and a lone message (an answer, a call) costs no buffering. Order is kept (a
 * `console.log` between two sends goes through the same stream), and a process 'exit' hook
 * uncorks, so that `await send(v); process.exit()` loses nothing.
 * @param {import("node:stream").Writable} stream
 * @param {string | Uint8Array} data
 * @returns {boolean} false: wait for 'drain'.
 */
function write(stream, data) {
  if (touched.length === 0) {
    if (!uncorkHooked) {
      uncorkHooked = true;
      process.on("exit", uncorkAll);
    }
    process.nextTick(uncorkAll);
    touched.push(stream);
  } else if (!touched.includes(stream)) {
    touched.push(stream);
  } else if (!corked.includes(stream)) {
    corked.push(stream);
    stream.cork();
  }
  return stream.write(data);
}

/**
 * @typedef {{resolve: () => void, reject: (error: Error) => void}} DrainWaiter
 */

/** @type {WeakMap<import("node:stream").Writable, DrainWaiter[]>} who waits for each 'drain' */
const drainWaiters = new WeakMap();

/**
 * Waits until `stream` wants more data ('drain').
 *
 * However many sends wait at once, the stream gets one set of listeners ('drain', 'error',
 * 'close'), removed when they fire: a burst of concurrent sends on a full pipe does not pile up
 * listeners (no MaxListenersExceededWarning), and every waiter is settled in order.
 * @param {import("node:stream").Writable} stream
 * @returns {Promise<void>}
 * @throws {Error} the stream failed or closed first.
 */
function drained(stream) {
  let waiters = drainWaiters.get(stream);
  if (waiters === undefined) {
    const queue = /** @type {DrainWaiter[]} */ ([]);
    waiters = queue;
    drainWaiters.set(stream, queue);
    const settle = (/** @type {Error | undefined} */ error) => {
      stream.removeListener("drain", onDrain);
      stream.removeListener("error", onError);
      stream.removeListener("close", onClose);
      drainWaiters.delete(stream); // a send after this one waits for the next 'drain'
      for (const waiter of queue) {
        if (error) {
          waiter.reject(error);
        } else {
          waiter.resolve();
        }
      }
    };
    const onDrain = () => settle(undefined);
    const onError = (/** @type {Error} */ error) => settle(error);
    const onClose = () => settle(writeErrors.get(stream) ?? new Error("the stream closed"));
    stream.on("drain", onDrain);
    stream.on("error", onError);
    stream.on("close", onClose);
  }
  const queue = waiters;
  return new Promise((resolve, reject) => queue.push({ resolve, reject }));
}

/**
 * @param {unknown} error
 * @returns {never}
 * @throws {unknown} `error`.
 */
function rethrow(error) {
  throw error;
}

/**
 * @param {Promise<unknown>} promise one that never rejects.
 * @param {number} ms
 * @returns {Promise<boolean>} whether it settled within `ms` milliseconds.
 */
async function within(promise, ms) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

// ----------------------------------------------------------------------------------------------
// The parent's side

/**
 * A running child process speaking NDJSON; made by `spawn`.
 *
 * Iterate it (`for await`) or call `receive()` for the messages on its stdout; `send` writes to
 * its stdin. `close()` ends it for good; `await using child = spawn(...)` calls it.
 */
export class Child extends Channel {
  #name;
  #grace;
  #inbox;
  #stderr;
  /** @type {import("node:child_process").ChildProcess | null} */
  #proc = null;
  /** @type {import("node:stream").Writable | null} where messages to the child go */
  #output = null;
  /** @type {Reader | null} */
  #reader = null;
  /** @type {Error | null} it could not be started */
  #failure = null;
  /** @type {number | null} */
  #returncode = null;
  /** @type {string | null} */
  #signal = null;
  /** @type {Promise<void>} resolves when it has exited (or could not start); never rejects */
  #exited;
  /** @type {Promise<void>} resolves when its stderr (and, with channelFd, stdout) has ended */
  #stderrDone;
  #stdinClosed = false;
  /** @type {Promise<void> | null} */
  #closing = null;
  /** @type {AbortSignal | undefined} */
  #abortSignal;
  #onAbort = () => {
    this.close().catch(() => {}); // close() does not reject; this is belt and braces
  };

  /**
   * Starts `argv` at once; prefer `spawn(argv, options)`.
   * @param {Iterable<string>} argv the program and its arguments, e.g. `["python3", "w.py"]`.
   * @param {SpawnOptions} [options]
   * @throws {TypeError} argv is empty, or an option is invalid.
   */
  constructor(argv, options = {}) {
    super();
    const {
      env,
      cwd,
      name,
      stderr = "forward",
      maxLine = MAX_LINE,
      onError,
      grace = GRACE,
      tailLines = TAIL_LINES,
      signal,
      channelFd = false,
      binary = false,
    } = options;
    const args = Array.from(argv, String);
    if (args.length === 0) {
      throw new TypeError("argv must name a program");
    }
    this.#name = name ?? defaultName(args);
    this.#grace = grace;
    this.#inbox = new Inbox({ maxLine, onError, binary });
    this.#stderr = new StderrLines(this.#name, stderr, tailLines);
    /** @type {() => void} */
    let exited = () => {};
    this.#exited = new Promise((resolve) => (exited = resolve));
    /** @type {() => void} */
    let stderrDone = () => {};
    this.#stderrDone = new Promise((resolve) => (stderrDone = resolve));

    if (signal?.aborted) {
      this.#failure = new TransportClosed(`${this.#name} was not started: aborted`, { cause: signal.reason });
      exited();
      stderrDone();
      return;
    }
    const environment = childEnv(args, env, channelFd ? CHANNEL_FD : null);
    const missing = checkProgram(args[0], environment.PATH, cwd);
    if (missing !== null) {
      this.#failure = startError(this.#name, args[0], missing);
      exited();
      stderrDone();
      return;
    }
    const wrapper = deathWrapper();
    /** @type {import("node:child_process").ChildProcess} */
    let proc;
    try {
      proc = nodeSpawn(wrapper ?? args[0], wrapper ? ["--pdeathsig", "KILL", "--", ...args] : args.slice(1), {
        env: environment,
        cwd,
        // with channelFd: stdin /dev/null, stdout and stderr shown, fd 3 a socketpair (duplex)
        stdio: channelFd ? ["ignore", "pipe", "pipe", "pipe"] : "pipe",
        detached: true, // its own process group, killed as one
      });
    } catch (error) {
      const cause = /** @type {NodeJS.ErrnoException} */ (error);
      if (typeof cause.code === "string" && cause.code.startsWith("ERR_")) {
        throw error; // ERR_INVALID_ARG_*: a programming error, not a failed start
      }
      this.#failure = startError(this.#name, args[0], cause);
      exited();
      stderrDone();
      return;
    }
    this.#proc = proc;
    proc.on("error", (error) => {
      if (proc.pid === undefined && this.#failure === null) {
        this.#failure = startError(this.#name, args[0], error);
        exited();
      }
    });
    proc.on("exit", (code, sig) => {
      this.#returncode = code ?? -(osConstants.signals[/** @type {NodeJS.Signals} */ (sig)] ?? 0);
      this.#signal = sig;
      live.delete(/** @type {number} */ (proc.pid));
      exited();
    });
    const stdout = /** @type {import("node:stream").Readable} */ (proc.stdout);
    /** @type {import("node:stream").Duplex | null} */
    const socket = channelFd ? /** @type {any} */ (proc.stdio[CHANNEL_FD]) : null;
    if (socket !== null) {
      socket.allowHalfOpen = true; // closeStdin() ends our side only: its answers still come
    }
    const output = socket ?? /** @type {import("node:stream").Writable} */ (proc.stdin);
    this.#output = output;
    watchErrors(output); // EPIPE and friends: recorded, then thrown by the next send
    const shown = [[/** @type {import("node:stream").Readable} */ (proc.stderr), this.#stderr]];
    if (socket !== null) {
      shown.push([stdout, new StderrLines(this.#name, stderr, 0)]); // its stdout, not kept
    }
    let open = shown.length;
    for (const [stream, lines] of /** @type {[import("node:stream").Readable, StderrLines][]} */ (shown)) {
      stream.setEncoding("utf8");
      stream.on("data", (text) => lines.write(text));
      stream.on("error", () => {});
      stream.on("close", () => {
        lines.end();
        if (--open === 0) {
          stderrDone();
        }
      });
    }
    this.#reader = new Reader(socket ?? stdout, this.#inbox);
    if (proc.pid !== undefined) {
      live.add(proc.pid);
      if (!exitHooked) {
        exitHooked = true;
        process.on("exit", killLive);
      }
    }
    if (signal) {
      this.#abortSignal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * The child's process id (null when it could not be started).
   * @returns {number | null}
   */
  get pid() {
    return this.#proc?.pid ?? null;
  }

  /**
   * The prefix of its forwarded stderr lines, and the subject of error messages.
   * @returns {string}
   */
  get name() {
    return this.#name;
  }

  /**
   * The exit code, or -N when killed by signal N (as in Python); null while it runs.
   * @returns {number | null}
   */
  get returncode() {
    return this.#returncode;
  }

  /**
   * The name of the signal that killed it (`"SIGKILL"`), or null.
   * @returns {string | null}
   */
  get signal() {
    return this.#signal;
  }

  /**
   * The last lines the child wrote to stderr, joined by "\n".
   * @returns {string}
   */
  get stderrTail() {
    return this.#stderr.text();
  }

  /**
   * Writes one message to the child's stdin; resolves when written or buffered, waiting for
   * 'drain' when the pipe is full (backpressure).
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot be sent.
   * @throws {ChildExited} it could not be started, or it died (code, signal, stderr tail).
   * @throws {TransportClosed} stdin is closed (by us or by the child).
   */
  send(value) {
    let data;
    try {
      data = encode(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendBytes(data); // not `async`: one promise per message, not two
  }

  /**
   * Writes encoded NDJSON lines as they are.
   * @param {string | Uint8Array} data one or more complete lines.
   * @returns {Promise<void>}
   * @throws {ChildExited} it could not be started, or it died.
   * @throws {TransportClosed} stdin is closed.
   */
  async sendBytes(data) {
    const waiting = this[sendNow](data);
    if (waiting !== null) {
      await waiting;
    }
  }

  /**
   * `sendBytes` without a promise when the pipe takes the data at once (see `sendNow` in
   * base.js): what the Peer's writer calls.
   * @param {string | Uint8Array} data one or more complete lines.
   * @returns {Promise<void> | null} null: taken; else settles as `sendBytes` does.
   */
  [sendNow](data) {
    if (this.#failure !== null) {
      return Promise.reject(this.#failure);
    }
    if (this.#closing !== null) {
      return Promise.reject(this.#closedError());
    }
    if (this.#stdinClosed) {
      return Promise.reject(new TransportClosed(`${this.#name}: stdin is closed`));
    }
    const stdin = /** @type {import("node:stream").Writable} */ (this.#output);
    const broken = unwritable(stdin);
    if (broken !== null) {
      return this.#writeFailed(broken).then(rethrow);
    }
    if (write(stdin, data)) {
      return null;
    }
    return drained(stdin).catch((error) => this.#writeFailed(error).then(rethrow));
  }

  /**
   * Signals end of input: a well-behaved child finishes its work and exits. Queued writes are
   * still delivered.
   * @returns {void}
   */
  closeStdin() {
    if (!this.#stdinClosed && this.#output !== null) {
      this.#stdinClosed = true;
      this.#output.end();
    }
  }

  /**
   * The next message from the child's stdout.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the child closed stdout and exited with code 0, or we closed it.
   * @throws {ChildExited} it exited non-zero or by a signal (with the stderr tail), or could not
   *   be started (returncode null).
   * @throws {import("../errors.js").DecodeError} a bad line, when `onError` is `raiseError`.
   * @throws {TransportError} reading its stdout failed.
   */
  receive() {
    if (this.#closing === null && this.#inbox.length > 0) {
      // The fast path, one promise per message: most calls find a value waiting.
      try {
        return Promise.resolve(this.#inbox.pop());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receive();
  }

  async #receive() {
    const reader = this.#ready();
    for (;;) {
      const more = await reader.fill();
      if (this.#closing !== null) {
        throw this.#closedError();
      }
      if (!more) {
        return this.#finish();
      }
      if (this.#inbox.length > 0) {
        return this.#inbox.pop(); // (else a concurrent receive() took it: wait again)
      }
    }
  }

  /**
   * Every message already read from the child's stdout, at least one (waits for it): one
   * `await` per chunk instead of one per message. Mirror of Python's `receive_many`.
   * @returns {Promise<any[]>} a fresh array, oldest message first.
   * @throws {TransportClosed | ChildExited | TransportError} as `receive()`.
   * @throws {import("../errors.js").DecodeError} a bad line, when `onError` is `raiseError`:
   *   the messages before it come first, the error with the next call.
   */
  receiveMany() {
    if (this.#closing === null && this.#inbox.length > 0) {
      try {
        return Promise.resolve(this.#inbox.popAll());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receiveMany();
  }

  async #receiveMany() {
    const reader = this.#ready();
    for (;;) {
      const more = await reader.fill();
      if (this.#closing !== null) {
        throw this.#closedError();
      }
      if (!more) {
        return this.#finish();
      }
      if (this.#inbox.length > 0) {
        return this.#inbox.popAll();
      }
    }
  }

  /**
   * Push mode (see `Channel.deliverTo`): each batch of messages from the child's stdout goes to
   * `onMessages` from the 'data' handler; `onEnd` gets what `receive()` would throw at the end
   * (ChildExited with the code and stderr tail, TransportClosed after a clean exit or `close()`,
   * a DecodeError under `raiseError`...).
   * @param {import("./base.js").MessagesHandler} onMessages
   * @param {import("./base.js").EndHandler} onEnd
   * @returns {boolean} true.
   */
  deliverTo(onMessages, onEnd) {
    const reader = this.#reader;
    if (reader === null || this.#closing !== null) {
      const why = reader === null ? /** @type {Error} */ (this.#failure) : this.#closedError();
      queueMicrotask(() => onEnd(why));
      return true;
    }
    reader.deliverTo(onMessages, (error) => {
      if (error !== null) {
        onEnd(/** @type {Error} */ (error)); // what the onError policy threw
        return;
      }
      // (close() stops the reader before it is marked as closing: look once it is)
      queueMicrotask(() => {
        if (this.#closing !== null) {
          onEnd(this.#closedError());
        } else {
          this.#finish().catch(onEnd);
        }
      });
    });
    return true;
  }

  /**
   * The reader of the child's stdout, when the child can be read from.
   * @returns {Reader}
   * @throws {ChildExited} it could not be started.
   * @throws {TransportClosed} it was closed.
   */
  #ready() {
    if (this.#reader === null) {
      throw /** @type {Error} */ (this.#failure);
    }
    if (this.#closing !== null) {
      throw this.#closedError();
    }
    return this.#reader;
  }

  /**
   * `for await (const message of child)`: each message already read is handed out at once (one
   * resolved promise), the pipe is read only when none is left; breaking out loses nothing.
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    return inboxIterator(
      this.#inbox,
      () => this.#closing === null,
      () => this.receive(),
    );
  }

  /**
   * Waits for the child to exit.
   * @returns {Promise<number>} its returncode (-N: killed by signal N).
   * @throws {ChildExited} it could not be started.
   * @throws {TransportClosed} the signal was aborted before it started.
   */
  async wait() {
    await this.#exited;
    if (this.#returncode === null) {
      throw /** @type {Error} */ (this.#failure);
    }
    return this.#returncode;
  }

  /**
   * Ends the child: close stdin, wait `grace` ms, SIGTERM its process group, wait, SIGKILL;
   * resolves when it is reaped. Safe to call twice (the same promise).
   * @returns {Promise<void>} never rejects.
   */
  close() {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown() {
    this.#abortSignal?.removeEventListener("abort", this.#onAbort);
    const proc = this.#proc;
    if (proc === null || proc.pid === undefined) {
      return;
    }
    this.#reader?.stop(false); // receive() now throws TransportClosed: we take no more output
    this.closeStdin();
    let done = await within(this.#exited, this.#grace);
    for (const sig of /** @type {const} */ (["SIGTERM", "SIGKILL"])) {
      if (done) {
        break;
      }
      killGroup(proc.pid, sig);
      done = await within(this.#exited, this.#grace);
    }
    killGroup(proc.pid, "SIGKILL"); // leftovers in the child's group
    live.delete(proc.pid);
    await within(this.#stderrDone, this.#grace);
    this.#reader?.stop(true);
    this.#output?.destroy();
    proc.stdout?.destroy();
    proc.stderr?.destroy();
  }

  /**
   * Why the stream ended, thrown: a clean exit, a bad one, or a failed start.
   * @returns {Promise<never>}
   */
  async #finish() {
    await this.#exited;
    if (this.#failure !== null) {
      throw this.#failure;
    }
    await within(this.#stderrDone, this.#grace);
    const error = exitError(this.#name, /** @type {number} */ (this.#returncode), this.#signal, this.stderrTail);
    if (error) {
      throw error; // how it ended says more than what reading it said
    }
    const readError = this.#reader?.error;
    if (readError) {
      throw new TransportError(`${this.#name}: reading its output failed: ${readError}`, { cause: readError });
    }
    throw new TransportClosed(`${this.#name} exited`);
  }

  /**
   * What receive() and send() throw once close() was called.
   * @returns {TransportClosed}
   */
  #closedError() {
    const signal = this.#abortSignal;
    if (signal?.aborted) {
      return new TransportClosed(`${this.#name} was closed (aborted)`, { cause: signal.reason });
    }
    return new TransportClosed(`${this.#name} was closed`);
  }

  /**
   * The error to throw when writing to stdin failed: how the child ended, if it did.
   * @param {unknown} cause
   * @returns {Promise<Error>}
   */
  async #writeFailed(cause) {
    if (this.#closing !== null) {
      return this.#closedError();
    }
    if (await within(this.#exited, this.#grace)) {
      await within(this.#stderrDone, this.#grace);
      const error = exitError(
        this.#name,
        /** @type {number} */ (this.#returncode),
        this.#signal,
        this.stderrTail,
        cause,
      );
      if (error) {
        return error;
      }
    }
    return new TransportClosed(`${this.#name} closed its stdin`, { cause });
  }
}

/**
 * Starts `argv` (an array: no shell) and returns its channel at once.
 *
 * ```js
 * await using child = spawn(["python3", "worker.py"]);
 * await child.send({ n: 1 });
 * for await (const message of child) { ... }
 * ```
 *
 * @param {Iterable<string>} argv the program and its arguments, e.g. `["python3", "w.py"]`.
 * @param {SpawnOptions} [options]
 * @returns {Child} always `close()` it (or `await using`): a forgotten child keeps running.
 * @throws {TypeError} argv is empty, or an option is invalid. A program that cannot be started
 *   is reported by `receive()`, `send()` and `wait()` as a `ChildExited` with returncode null.
 */
export function spawn(argv, options = {}) {
  return new Child(argv, options);
}

/**
 * @callback RestartHandler
 * @param {ChildExited} error how the child crashed.
 * @param {number} attempt the restart about to happen, from 1.
 * @param {number} delay milliseconds before it.
 * @returns {void}
 */

/**
 * @typedef {SpawnOptions & {maxRestarts?: number, backoff?: number, maxBackoff?: number,
 *   onRestart?: RestartHandler}} SuperviseOptions
 */

/**
 * A child that is started again when it crashes, with exponential back-off and a cap.
 *
 * Messages flow across restarts as from one child. A clean exit (code 0) ends iteration; a crash
 * (non-zero exit or signal) starts a new child after `backoff * 2**n` ms (at most `maxBackoff`),
 * and `onRestart(error, attempt, delay)` is told. After `maxRestarts` restarts the next crash is
 * thrown as ChildExited. Whatever was sent to a child that crashed is not sent again. A program
 * that cannot be started at all is not retried: its ChildExited (returncode null) is thrown.
 */
export class Supervisor extends Channel {
  #argv;
  #options;
  #child;
  #closed = false;
  /** @type {(() => void) | null} ends the back-off sleep early (close) */
  #interrupt = null;

  /**
   * Starts the first child at once; prefer `supervise(argv, options)`.
   * @param {Iterable<string>} argv
   * @param {SuperviseOptions} [options] the options of `spawn`, plus `maxRestarts` (default 5),
   *   `backoff` (ms, default 500, doubled each time), `maxBackoff` (ms, default 30000) and
   *   `onRestart(error, attempt, delay)`.
   * @throws {TypeError} argv is empty, or an option is invalid.
   */
  constructor(argv, options = {}) {
    super();
    const { maxRestarts = 5, backoff = 500, maxBackoff = 30_000, onRestart, ...spawnOptions } = options;
    this.#argv = Array.from(argv, String);
    this.#options = spawnOptions;
    /** The restarts allowed before a crash is thrown. @type {number} */
    this.maxRestarts = maxRestarts;
    /** Milliseconds before the first restart. @type {number} */
    this.backoff = backoff;
    /** The longest wait between restarts, in ms. @type {number} */
    this.maxBackoff = maxBackoff;
    /** @type {RestartHandler | undefined} */
    this.onRestart = onRestart;
    /** How many times the child was started again. @type {number} */
    this.restarts = 0;
    this.#child = new Child(this.#argv, spawnOptions);
  }

  /**
   * The child running now.
   * @returns {Child}
   */
  get child() {
    return this.#child;
  }

  /**
   * Sends to the child running now.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {ChildExited | TransportClosed} as `Child.send`.
   */
  send(value) {
    return this.#child.send(value);
  }

  /**
   * Writes encoded NDJSON lines to the child running now.
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   * @throws {ChildExited | TransportClosed} as `Child.sendBytes`.
   */
  sendBytes(data) {
    return this.#child.sendBytes(data);
  }

  /**
   * The next message from the current child, restarting it after a crash.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the child exited cleanly, or we were closed.
   * @throws {ChildExited} a crash after `maxRestarts` restarts, or a failed start.
   */
  receive() {
    return this.#withRestarts(() => this.#child.receive());
  }

  /**
   * @template T
   * @param {() => Promise<T>} receive reads from the current child.
   * @returns {Promise<T>}
   */
  async #withRestarts(receive) {
    for (;;) {
      try {
        return await receive();
      } catch (error) {
        if (!(error instanceof ChildExited) || error.returncode === null || this.restarts >= this.maxRestarts) {
          throw error;
        }
        const delay = Math.min(this.backoff * 2 ** this.restarts, this.maxBackoff);
        this.restarts++;
        this.onRestart?.(error, this.restarts, delay);
        await this.#child.close();
        if (this.#closed) {
          throw new TransportClosed(`${this.#child.name} was closed`);
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.#interrupt = () => {
            clearTimeout(timer);
            resolve(undefined);
          };
        });
        this.#interrupt = null;
        if (this.#closed || this.#options.signal?.aborted) {
          throw new TransportClosed(`${this.#child.name} was closed`);
        }
        this.#child = new Child(this.#argv, this.#options);
      }
    }
  }

  /**
   * Every message already read from the current child, at least one, restarting it after a
   * crash as `receive()` does.
   * @returns {Promise<any[]>}
   * @throws {TransportClosed | ChildExited} as `receive()`.
   */
  receiveMany() {
    return this.#withRestarts(() => this.#child.receiveMany());
  }

  /**
   * Closes the current child and stops restarting; safe to call twice.
   * @returns {Promise<void>} never rejects.
   */
  close() {
    this.#closed = true;
    this.#interrupt?.();
    return this.#child.close();
  }
}

/**
 * `spawn` with restarts: the same options, plus `maxRestarts`, `backoff` (ms, doubled each
 * time), `maxBackoff` and `onRestart(error, attempt, delay)`.
 * @param {Iterable<string>} argv
 * @param {SuperviseOptions} [options]
 * @returns {Supervisor}
 * @throws {TypeError} argv is empty, or an option is invalid.
 */
export function supervise(argv, options = {}) {
  return new Supervisor(argv, options);
}

// ----------------------------------------------------------------------------------------------
// The child's side

/** @type {number | null | undefined} undefined: not looked up yet */
let announced;
/** @type {Socket | null} */
let announcedSocket = null;

/**
 * The file descriptor of the channel socket our parent made for us (`spawn(argv, {channelFd:
 * true})` or Python's `channel_fd=True`), or null: we talk on stdin and stdout.
 *
 * The number comes from `BOTHWAYS_CHANNEL_FD`, which is taken out of `process.env` on the first
 * call (the answer is kept), so that programs we start do not inherit it. A number that is not
 * an open socket is ignored with a warning: stdin and stdout are used.
 * @returns {number | null}
 */
export function parentChannelFd() {
  if (announced === undefined) {
    announced = null;
    const value = process.env[CHANNEL_ENV];
    if (value !== undefined) {
      delete process.env[CHANNEL_ENV];
      const fd = Number(value);
      let problem = "not a file descriptor number";
      if (Number.isSafeInteger(fd) && fd >= 0) {
        try {
          problem = fstatSync(fd).isSocket() ? "" : `file descriptor ${fd} is not a socket`;
        } catch (error) {
          problem = String(error);
        }
      }
      if (problem === "") {
        announced = fd;
      } else {
        process.emitWarning(`${CHANNEL_ENV}=${value} is not a channel (${problem}): using stdin and stdout`);
      }
    }
  }
  return announced;
}

/**
 * The channel socket on `fd`, one per process. It reads only once asked (`manualStart`), so a
 * program that only sends exits when it is done, and it stays open for writing after the parent
 * has finished sending (`allowHalfOpen`).
 * @param {number} fd
 * @returns {Socket}
 */
function channelSocket(fd) {
  announcedSocket ??= new Socket(
    /** @type {any} */ ({ fd, readable: true, writable: true, allowHalfOpen: true, manualStart: true }),
  );
  return announcedSocket;
}

/**
 * The child's side: messages from our stdin, messages to our stdout; or, when our parent made
 * a channel socket for us (`parentChannelFd()`), both on that socket, and stdin/stdout stay the
 * program's own.
 *
 * Reading starts at the first `receive()` (so a program that only sends exits when it is done)
 * and stops at EOF on stdin: when the parent goes, iteration ends. An EPIPE on stdout (the
 * parent is gone) makes `send` throw TransportClosed instead of crashing the process.
 */
export class StdioChannel extends Channel {
  /** @type {import("node:stream").Readable | null} */
  #in;
  #out;
  #inbox;
  /** @type {Reader | null} */
  #reader = null;
  #closed = false;

  /**
   * @param {{maxLine?: number, onError?: import("./base.js").ErrorHandler, binary?: boolean,
   *   stdin?: import("node:stream").Readable, stdout?: import("node:stream").Writable}} [options]
   *   `stdin`/`stdout` default to the channel socket our parent gave us (`parentChannelFd()`),
   *   else to `process.stdin`/`process.stdout`. `binary`: take binary frames (spec/PROTOCOL.md
   *   section 2), as a served module does (`host.mjs`).
   */
  constructor({ maxLine = MAX_LINE, onError, binary = false, stdin, stdout } = {}) {
    super();
    if (stdin === undefined && stdout === undefined) {
      const fd = parentChannelFd();
      if (fd !== null) {
        stdin = stdout = channelSocket(fd);
      }
    }
    this.#in = stdin ?? null; // process.stdin is only touched when we first read
    this.#out = stdout ?? process.stdout;
    this.#inbox = new Inbox({ maxLine, onError, binary });
    watchErrors(this.#out);
  }

  /**
   * Writes one message to stdout; resolves when written or buffered, after 'drain' when the
   * pipe is full.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot be sent.
   * @throws {TransportClosed} stdout is closed: the parent is gone.
   */
  send(value) {
    let data;
    try {
      data = encode(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendBytes(data); // not `async`: one promise per message, not two
  }

  /**
   * Writes encoded NDJSON lines as they are.
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   * @throws {TransportClosed} stdout is closed: the parent is gone, or we closed the channel.
   */
  async sendBytes(data) {
    const waiting = this[sendNow](data);
    if (waiting !== null) {
      await waiting;
    }
  }

  /**
   * `sendBytes` without a promise when stdout takes the data at once (see `sendNow` in
   * base.js): what the Peer's writer calls.
   * @param {string | Uint8Array} data
   * @returns {Promise<void> | null} null: taken; else settles as `sendBytes` does.
   */
  [sendNow](data) {
    if (this.#closed) {
      return Promise.reject(new TransportClosed("the channel is closed"));
    }
    const out = this.#out;
    const broken = unwritable(out);
    if (broken !== null) {
      return Promise.reject(new TransportClosed("stdout closed: the parent is gone", { cause: broken }));
    }
    if (write(out, data)) {
      return null;
    }
    return drained(out).catch((error) => {
      throw new TransportClosed("stdout closed: the parent is gone", { cause: error });
    });
  }

  /**
   * The next message from stdin.
   * @returns {Promise<any>}
   * @throws {TransportClosed} stdin reached its end (the parent closed it or is gone).
   * @throws {import("../errors.js").DecodeError} a bad line, when `onError` is `raiseError`.
   * @throws {TransportError} reading stdin failed.
   */
  receive() {
    if (!this.#closed && this.#inbox.length > 0) {
      try {
        return Promise.resolve(this.#inbox.pop());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receive();
  }

  async #receive() {
    const reader = this.#ready();
    for (;;) {
      if (!(await reader.fill())) {
        this.#ended(reader);
      }
      if (this.#inbox.length > 0) {
        return this.#inbox.pop(); // (else a concurrent receive() took it: wait again)
      }
    }
  }

  /**
   * Every message already read from stdin, at least one (waits for it). Mirror of Python's
   * `receive_many`.
   * @returns {Promise<any[]>} a fresh array, oldest message first.
   * @throws {TransportClosed | TransportError} as `receive()`.
   */
  receiveMany() {
    if (!this.#closed && this.#inbox.length > 0) {
      try {
        return Promise.resolve(this.#inbox.popAll());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receiveMany();
  }

  async #receiveMany() {
    const reader = this.#ready();
    for (;;) {
      if (!(await reader.fill())) {
        this.#ended(reader);
      }
      if (this.#inbox.length > 0) {
        return this.#inbox.popAll();
      }
    }
  }

  /**
   * Push mode (see `Channel.deliverTo`): each batch of messages from stdin goes to `onMessages`
   * from the 'data' handler; `onEnd` gets what `receive()` would throw at the end
   * (TransportClosed at the end of stdin or after `close()`, TransportError when reading
   * failed, a DecodeError under `raiseError`).
   * @param {import("./base.js").MessagesHandler} onMessages
   * @param {import("./base.js").EndHandler} onEnd
   * @returns {boolean} true.
   */
  deliverTo(onMessages, onEnd) {
    /** @type {Reader} */
    let reader;
    try {
      reader = this.#ready();
    } catch (error) {
      queueMicrotask(() => onEnd(/** @type {Error} */ (error))); // closed already
      return true;
    }
    reader.deliverTo(onMessages, (error) => {
      if (error === null) {
        try {
          this.#ended(reader);
        } catch (why) {
          error = why;
        }
      }
      onEnd(/** @type {Error} */ (error));
    });
    return true;
  }

  /**
   * `for await (const message of channel)`: each message already read is handed out at once;
   * breaking out loses nothing.
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    return inboxIterator(
      this.#inbox,
      () => !this.#closed,
      () => this.receive(),
    );
  }

  /**
   * @returns {Reader} the reader of our input, started on first use.
   * @throws {TransportClosed} the channel is closed.
   */
  #ready() {
    if (this.#closed) {
      throw new TransportClosed("stdin closed");
    }
    this.#reader ??= new Reader((this.#in ??= process.stdin), this.#inbox);
    return this.#reader;
  }

  /**
   * Throws why reading ended.
   * @param {Reader} reader
   * @returns {never}
   * @throws {TransportError} reading failed.
   * @throws {TransportClosed} the input reached its end.
   */
  #ended(reader) {
    if (reader.error) {
      throw new TransportError(`reading stdin failed: ${reader.error}`, { cause: reader.error });
    }
    throw new TransportClosed("stdin closed");
  }

  /**
   * Stops reading stdin and waits until what was sent has been written out; safe to call twice.
   * @returns {Promise<void>} never rejects.
   */
  async close() {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#reader?.stop(false);
    const out = this.#out;
    if (out.writableLength > 0 && unwritable(out) === null) {
      await new Promise((resolve) => {
        const done = () => {
          out.removeListener("close", done);
          resolve(undefined);
        };
        out.once("close", done);
        out.write("", done); // called once everything before it is flushed (or failed)
      });
    }
  }
}

/**
 * The channel to whoever spawned us: `for await (const m of stdio()) ...`, `await stdio().send(v)`.
 * @param {{maxLine?: number, onError?: import("./base.js").ErrorHandler}} [options]
 *   `maxLine`: the longest stdin line accepted (default 16 MiB); `onError`: the policy for bad
 *   stdin lines (default: warn on stderr and go on).
 * @returns {StdioChannel}
 */
export function stdio(options = {}) {
  return new StdioChannel(options);
}

/**
 * `connect("stdio:")` (and `listen`, the same thing): the channel to whoever spawned us, as
 * `stdio()` gives it (the parent's channel socket when there is one). Used by `channels.js`.
 * @param {import("../urls.js").Address} _address
 * @param {{maxLine?: number, onError?: import("./base.js").ErrorHandler}} [options]
 * @returns {Promise<StdioChannel>}
 */
export async function connect(_address, options = {}) {
  const channel = stdio(options);
  /** @type {any} */ (channel).url = "stdio:";
  return channel;
}

export { connect as listen };
