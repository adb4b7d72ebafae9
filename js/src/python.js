/**
 * Call a Python module's functions from Node: `python.import("statistics")`.
 *
 * ```js
 * import { python } from "bothways/python";
 * await using m = await python.import("statistics");   // a Python child serving the module
 * await m.mean([1, 2, 3]);                              // -> 2, JSON values in and out
 * await m.callWith("quantiles", { data: [1, 2, 3, 4], n: 4 }, { timeout: 1000 });
 * ```
 *
 * The child is `python -m bothways.host MODULE` (src/bothways/host.py), so bothways must be
 * importable by that interpreter. Each function of the module is an async function property of
 * the handle, called with positional arguments; `callWith` takes keyword arguments (an object),
 * a timeout and an AbortSignal. Remote exceptions arrive as RemoteError (`remoteType`
 * `"StatisticsError"`, `remoteTraceback` the Python traceback); a crashed child fails every
 * pending call with ChildExited (exit code, signal, stderr tail). The calls travel on a socket of
 * their own (`spawn`'s `channelFd`), so `print()`, `sys.stdout.write` or `os.write(1, ...)` in
 * the module cannot corrupt them: the child's stdout and stderr lines are shown on our stderr
 * (see `stderr`). Synchronous functions run in a thread pool in the child, so a slow one does
 * not hold up the others.
 *
 * The child ends with the handle: `close()`, `await using`, or our own exit.
 *
 * @module bothways/python
 */

import { Peer } from "./peer.js";
import { spawn } from "./transports/stdio.js";

// Node >= 20.4 defines it; older runtimes get a registered stand-in.
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");

/**
 * Names a module function cannot take on the handle (the handle's own API, and `then`, which
 * would make the handle look like a promise to `await`). Call those with `m.call(name, ...)`.
 */
const RESERVED = new Set(["call", "callWith", "close", "constructor", "functions", "module", "peer", "then"]);

/**
 * @typedef {object} ImportOptions
 * @property {string} [python] the interpreter (default: `$BOTHWAYS_PYTHON`, else `python3`).
 * @property {string} [cwd] the child's working directory; it is put first on `sys.path`, so
 *   a module file there can be imported by name.
 * @property {Record<string, string | undefined>} [env] the child's environment (default: ours).
 * @property {import("./transports/stdio.js").StderrMode} [stderr] what to do with the child's
 *   output lines, stdout and stderr (its `print()` output and tracebacks): `"forward"` (default:
 *   to our stderr, prefixed with `name`), `"keep"`, or a function called with each line.
 * @property {string} [name] the prefix of forwarded lines (default `"python MODULE"`).
 * @property {AbortSignal} [signal] aborting it ends the child, as `close()` does.
 * @property {number} [threads] run the module's plain (`def`) functions in a pool of this many
 *   threads, so a slow one does not hold up the others (the module must be thread-safe; each
 *   call costs more). Default 0: one at a time on the host's event loop, the fastest way.
 */

/**
 * A Python module in a child process. Every function of the module is an own, enumerable
 * property of the handle: `await m.mean([1, 2])`.
 */
export class PythonModule {
  #peer;
  #functions;

  /**
   * Made by `python.import()`.
   * @param {Peer} peer a started peer on the child.
   * @param {string} module the module's name.
   * @param {string[]} functions the names its host lists.
   */
  constructor(peer, module, functions) {
    this.#peer = peer;
    this.#functions = Object.freeze([...functions]);
    /** The module's name, e.g. `"statistics"`. @type {string} */
    this.module = module;
    for (const name of functions) {
      if (!RESERVED.has(name)) {
        Object.defineProperty(this, name, {
          value: (/** @type {unknown[]} */ ...args) => peer.callWith(name, args.length > 0 ? args : null),
          enumerable: true,
        });
      }
    }
  }

  /**
   * The names of the module's functions, as the child lists them (sorted).
   * @returns {readonly string[]}
   */
  get functions() {
    return this.#functions;
  }

  /**
   * The Peer on the child (its `channel` is the Child: `pid`, `stderrTail`...).
   * @returns {Peer}
   */
  get peer() {
    return this.#peer;
  }

  /**
   * Calls the module's function `name` with positional arguments (any name, reserved ones too).
   * @param {string} name
   * @param {...unknown} args
   * @returns {Promise<any>}
   * @throws {import("./errors.js").RemoteError} the function raised, or there is no such function.
   * @throws {import("./errors.js").ChildExited | import("./errors.js").TransportClosed} the child
   *   died, or the handle was closed.
   */
  call(name, ...args) {
    return this.#peer.call(name, ...args);
  }

  /**
   * Calls `name` with `params` (array: positional; object: keyword arguments) and options.
   * @param {string} name
   * @param {unknown[] | Record<string, unknown> | null} [params]
   * @param {import("./peer.js").CallOptions} [options] `timeout` (ms) and `signal`.
   * @returns {Promise<any>}
   * @throws {import("./errors.js").CallTimeout} no answer within `timeout` ms.
   */
  callWith(name, params = null, options = {}) {
    return this.#peer.callWith(name, params, options);
  }

  /**
   * Ends the child (pending calls fail with TransportClosed). Safe to call twice.
   * @returns {Promise<void>}
   */
  close() {
    return this.#peer.close();
  }

  /**
   * `await using m = await python.import(...)` ends the child at the end of the block.
   * @returns {Promise<void>}
   */
  [asyncDispose]() {
    return this.close();
  }
}

/**
 * Starts a Python child serving `moduleName` and returns its handle once it lists its functions.
 * @param {string} moduleName a module importable by the child, e.g. `"statistics"`.
 * @param {ImportOptions} [options]
 * @returns {Promise<PythonModule>} always `close()` it (or `await using`).
 * @throws {import("./errors.js").ChildExited} the interpreter could not be started, or the child
 *   failed before listing its functions (no such module, bothways not installed...: the stderr
 *   tail tells).
 */
export async function importModule(moduleName, options = {}) {
  const { python: program, cwd, env, stderr, name, signal, threads = 0 } = options;
  const interpreter = program ?? process.env.BOTHWAYS_PYTHON ?? "python3";
  const pool = threads > 0 ? ["--threads", String(Math.floor(threads))] : [];
  const child = spawn([interpreter, "-m", "bothways.host", ...pool, moduleName], {
    cwd,
    env,
    stderr,
    signal,
    name: name ?? `python ${moduleName}`,
    channelFd: true, // print() and friends in the module cannot reach the protocol
  });
  const peer = await new Peer(child).start();
  let functions;
  try {
    functions = await peer.call("$/functions");
  } catch (error) {
    await peer.close();
    throw error;
  }
  return new PythonModule(peer, moduleName, Array.isArray(functions) ? functions.map(String) : []);
}

/**
 * `python.import(moduleName, options)`, as in `const m = await python.import("statistics")`.
 */
export const python = Object.freeze({ import: importModule });
