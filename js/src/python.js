/**
 * Call a Python module's functions from Node: `python.import("statistics")`.
 *
 * ```js
 * import { python } from "bothways/python";
 * const m = await python.import("statistics");          // a Python child serving the module
 * try {
 *   await m.mean([1, 2, 3]);                              // -> 2, JSON values in and out
 *   await m.callWith("quantiles", { data: [1, 2, 3, 4], n: 4 }, { timeout: 1000 });
 * } finally {
 *   await m.close();                                      // (Node 24+: `await using m = ...`)
 * }
 * ```
 *
 * The child is `python -m bothways.host MODULE`, run by any Python 3.10+ with nothing installed
 * into it: this package carries the Python host and core (its `python/` folder, put first on the
 * child's PYTHONPATH; they need only the standard library, and use orjson when the interpreter
 * has it). The first call is the `$/hello` handshake: a host that speaks another protocol
 * version is refused at once, with both versions named. Each function of the module is an async function property of
 * the handle, called with positional arguments; `callWith` takes keyword arguments (an object),
 * a timeout and an AbortSignal. Arguments and results are anything spec/PROTOCOL.md section 10
 * carries: a function passed is a callback the module may call later, a class instance, a
 * generator or a DataFrame the module returns arrives as a `RemoteObject` handle
 * (`await df.head(5)`, `for await (const row of rows)`, `release(df)` or `await using`), bytes
 * as a Buffer, numpy arrays as typed arrays or an `NDArray` (both ways in binary frames, not
 * base64, when the host says it reads them in its `$/hello` answer). A class the module exports is a
 * function of the handle too: `const c = await new m.Counter(5)` (or `await m.Counter(5)`). Remote exceptions arrive as RemoteError (`remoteType`
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

import { existsSync } from "node:fs";
import { delimiter } from "node:path";
import { fileURLToPath } from "node:url";

import { ConnectError, RemoteError } from "./errors.js";
import { CALL_MAX_LINE, Kwargs } from "./objects.js";
import { Peer } from "./peer.js";
import { HELLO_METHOD, hello, helloRefusal, speaksBinary } from "./rpc.js";
import { spawn } from "./transports/stdio.js";
import { VERSION } from "./version.js";

/**
 * Where the Python host and core are: in a checkout, the repository's `src/` (beside the
 * repository's pyproject.toml); else the npm package's `python/` (scripts/bundle-python.mjs
 * puts them there when it is packed).
 */
const PYTHON_PATH = [
  [new URL("../../src/", import.meta.url), new URL("../../pyproject.toml", import.meta.url)],
  [new URL("../python/", import.meta.url), new URL("../python/bothways/host.py", import.meta.url)],
]
  .filter(([dir, marker]) => existsSync(fileURLToPath(marker)) && existsSync(fileURLToPath(new URL("bothways/host.py", dir))))
  .map(([dir]) => fileURLToPath(dir))[0];

const HELLO = hello(VERSION, "javascript"); // (it says we read binary frames)

// Node >= 20.4 defines it; older runtimes get a registered stand-in.
/** @type {typeof Symbol.asyncDispose} */
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");

/**
 * Names a module function cannot take on the handle (the handle's own API, and `then`, which
 * would make the handle look like a promise to `await`). Call those with `m.call(name, ...)`.
 */
const RESERVED = new Set(["call", "callWith", "close", "constructor", "functions", "module", "peer", "then"]);

/** The handle's own methods: called through the Proxy, they run on the handle itself. */
const METHODS = new Set(["call", "callWith", "close"]);
/** Names that tools read to find out what an object is; a handle lacking them reads undefined. */
const INTROSPECTED = new Set(["then", "toJSON", "constructor", "inspect", "asymmetricMatch", "nodeType", "$$typeof"]);

/**
 * The message for a function the module lacks (Python's `node.require` handle says the same).
 * @param {string} module
 * @param {string} name
 * @param {readonly string[]} functions
 * @returns {string}
 */
function notExported(module, name, functions) {
  return `${module} exports no function '${name}' (it has: ${functions.join(", ")})`;
}

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
          // a plain function, not an arrow: `await new m.Counter(5)` works for a class the host
          // serves (`new` gives the call's promise, as any function returning an object does)
          value: function (/** @type {unknown[]} */ ...args) {
            const last = args[args.length - 1];
            if (last instanceof Kwargs) {
              // JSON-RPC carries positional or named arguments, not both
              return args.length === 1
                ? peer.callWith(name, last.values)
                : Promise.reject(
                    new TypeError(`${module}.${name}: keyword arguments (kwargs) cannot follow positional ones here; pass all of them in kwargs, or call a method of a remote object`),
                  );
            }
            return peer.callWith(name, args.length > 0 ? args : null);
          },
          enumerable: true,
        });
      }
    }
    // Reading a name the module lacks throws, as Python's handle raises AttributeError (same
    // words); introspection (symbols, `then`, `toJSON`, `_private`...) still reads undefined.
    return new Proxy(this, {
      get(target, key) {
        if (typeof key === "symbol" || key in target) {
          const value = Reflect.get(target, key, target);
          return typeof value === "function" && METHODS.has(key) ? value.bind(target) : value;
        }
        if (key.startsWith("_") || INTROSPECTED.has(key)) return undefined;
        throw new TypeError(notExported(module, key, target.#functions));
      },
    });
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
 * The functions a Python host lists in its answer to our `$/hello`.
 * @param {string} moduleName
 * @param {unknown} answer the answer, or the RemoteError the host refused us with.
 * @returns {string[]}
 * @throws {ConnectError} the host speaks another protocol, or refused ours (both versions named).
 */
function greeted(moduleName, answer) {
  if (answer instanceof RemoteError) {
    throw new ConnectError(answer.reason, { url: moduleName, cause: answer });
  }
  const refusal = helloRefusal(HELLO, answer);
  if (refusal !== null) {
    throw new ConnectError(refusal, { url: moduleName });
  }
  const functions = /** @type {{ functions?: unknown }} */ (answer).functions;
  return Array.isArray(functions) ? functions.map(String) : [];
}

/**
 * Starts a Python child serving `moduleName` and returns its handle once it lists its functions.
 * @param {string} moduleName a module importable by the child, e.g. `"statistics"`.
 * @param {ImportOptions} [options]
 * @returns {Promise<PythonModule & {readonly [name: string]: any}>} always `close()` it (or
 *   `await using`); the module's functions are its properties: `await m.mean([1, 2])`.
 * @throws {import("./errors.js").ChildExited} the interpreter could not be started, or the child
 *   failed before listing its functions (no such module, bothways not installed...: the stderr
 *   tail tells).
 */
export async function importModule(moduleName, options = {}) {
  const { python: program, cwd, env, stderr, name, signal, threads = 0 } = options;
  const interpreter = program ?? process.env.BOTHWAYS_PYTHON ?? "python3";
  const pool = threads > 0 ? ["--threads", String(Math.floor(threads))] : [];
  const childEnv = { ...(env ?? process.env) };
  if (PYTHON_PATH !== undefined) {
    const rest = childEnv.PYTHONPATH;
    childEnv.PYTHONPATH = rest ? `${PYTHON_PATH}${delimiter}${rest}` : PYTHON_PATH;
  }
  const child = spawn([interpreter, "-m", "bothways.host", ...pool, moduleName], {
    cwd,
    env: childEnv,
    stderr,
    signal,
    name: name ?? `python ${moduleName}`,
    channelFd: true, // print() and friends in the module cannot reach the protocol
    maxLine: CALL_MAX_LINE,
    binary: true, // we read binary frames (and say so in our hello)
  });
  const peer = await new Peer(child).start();
  let functions;
  try {
    const answer = await peer.callWith(HELLO_METHOD, { ...HELLO }).catch((error) => {
      if (error instanceof RemoteError) return error;
      throw error;
    });
    functions = greeted(moduleName, answer);
    peer.binary = speaksBinary(answer); // bytes and arrays in binary frames from now on
  } catch (error) {
    await peer.close();
    throw error;
  }
  return new PythonModule(peer, moduleName, functions);
}

/**
 * `python.import(moduleName, options)`, as in `const m = await python.import("statistics")`.
 */
export const python = Object.freeze({ import: importModule });
