/**
 * Peer: JSON-RPC calls both ways over any Channel, on top of the sans-I/O RpcEndpoint.
 * Mirrors `src/bothways/peer.py` name for name (camelCase here).
 *
 * ```js
 * const peer = await new Peer(channel).start();
 * try {
 *   peer.expose(Math.hypot, { name: "hypot" });   // the other side may call "hypot"
 *   await peer.call("mean", [1, 2, 3]);            // we call the other side's "mean"
 *   await peer.callWith("quantiles", { data: [1, 2, 3], n: 4 }, { timeout: 500 });
 * } finally {
 *   await peer.close();                             // (Node 24+: `await using peer = ...`)
 * }
 * ```
 *
 * Calling
 * -------
 * - `call(method, ...args)`: positional arguments (the JSON-RPC params array), no options.
 * - `callWith(method, params, { timeout, signal })`: `params` is an array (positional), an object
 *   (named: Python's keyword arguments) or null (none); `timeout` in milliseconds; `signal` an
 *   AbortSignal. Python's `call(method, *args, timeout=..., **kwargs)` is these two together.
 *   The timeout counts from the call.
 * - `notify(method, ...args)` / `notifyWith(method, params)`: the same, without an answer.
 *
 * Serving
 * -------
 * `expose(fn, { name })` lets the other side call `fn` (sync or async). An array of params is
 * spread (`fn(...params)`), an object of params is passed as one argument (`fn(params)`), no
 * params calls `fn()`.
 * The number of arguments is checked first, as Python checks a call against the signature: fewer
 * than the parameters before the first default value (`fn.length`), or more than the function
 * declares (no limit with a rest parameter `...args`), is answered INVALID_PARAMS (-32602)
 * without calling `fn`. The declared parameters are read from the function's source, so a
 * native or bound function (whose source is not there) is not checked, nor is one that declares
 * none and reads `arguments`.
 * With `expose(fn, { signal: true })` the function also gets an AbortSignal after the caller's
 * arguments, aborted when the caller gives up (timeout, abort: the reason is an "AbortError"
 * DOMException) or the connection ends (the reason is the TransportClosed or ChildExited):
 * Python's task cancellation. The signal is its last declared parameter: missing optional
 * arguments are filled with `undefined`, so `function f(a, b = 0, signal)` finds the signal in
 * `signal` when called with one argument (a native or bound function gets it at `fn.length - 1`).
 *
 * Rules:
 * - Incoming messages are taken as soon as they are decoded: straight from the channel's 'data'
 *   handler when it offers that (`deliverTo`: the stream channels of child processes), else by
 *   one reader loop. Each incoming request is handled on its own, so many calls are in flight
 *   both ways and a handler may call back into its caller; a sync function is called right there
 *   and answered with the other answers of its chunk.
 * - A handler that throws answers SERVER_ERROR with the error's name, message and stack: the
 *   caller gets a RemoteError that reads like a local stack trace. A result that cannot be
 *   encoded is answered INTERNAL_ERROR (never a hang).
 * - Giving up on a call (`timeout`, `signal`) tells the other side (`$/cancelRequest`); a
 *   cancelled handler's signal is aborted, the answer is REQUEST_CANCELLED at once and its late
 *   result is dropped.
 * - When the channel ends (the child exits, the socket closes), every pending call fails at once
 *   with that cause (TransportClosed, ChildExited with the exit code and stderr tail...): never
 *   a hang.
 * - Messages leave in order through one writer: while a write waits for the channel (a full
 *   pipe), the messages of other calls gather and leave together in the next write. A stream
 *   channel that takes the bytes at once (`sendNow`) is written to right there, no promise.
 * - Objects, callbacks, streams and bytes cross as spec/PROTOCOL.md section 10 says: params and
 *   results that are not plain JSON go as trees (`outgoing`: functions, class instances, Maps,
 *   generators are lent through `handles`, bytes and typed arrays packed), and trees that arrive
 *   are revived (`incoming`: a `RemoteObject` proxy for each object the other side lends). A plain
 *   call pays one quick check each way. The requests on lent objects (`$/get`, `$/call`,
 *   `$/next`...) are served here; `$/release` lets go of them; proxies released (or collected)
 *   here are announced in one `$/release` with the next flush. When the channel ends, every handle
 *   is let go of.
 * - Binary frames (spec/PROTOCOL.md section 2): with `binary` set (both sides said so in the
 *   `$/hello` handshake) and a stream channel, the bytes and arrays of params and results leave
 *   as frames written right before their message's line, in the same write, instead of base64.
 *   Frames that arrive (a channel made with `binary` hands them out as `Binary` values) go with
 *   the next message, whatever `binary` says.
 * - No `node:*` import: this module loads in a browser, as rpc.js and transports/base.js do.
 *
 * @module bothways/peer
 */

import { BothwaysError, CallTimeout, EncodeError, HandleError, TransportClosed, TransportError } from "./errors.js";
import { Handles, RELEASE_METHOD, RemoteObject, incoming, lenderFunctions, outgoing } from "./objects.js";
import {
  Cancelled,
  ErrorResponse,
  INTERNAL_ERROR,
  INVALID_PARAMS,
  METHOD_NOT_FOUND,
  Notification,
  REQUEST_CANCELLED,
  Request,
  Response,
  RpcEndpoint,
  SERVER_ERROR,
} from "./rpc.js";
import { sendNow } from "./transports/base.js";
import { Binary, encode } from "./wire.js";

// Node >= 20.4 and current browsers define it; older runtimes get a registered stand-in. The
// type says it is `Symbol.asyncDispose`, so that the declarations show `[Symbol.asyncDispose]()`.
/** @type {typeof Symbol.asyncDispose} */
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");
/** Schedules a microtask without a closure per call: `RESOLVED.then(fn)`. */
const RESOLVED = Promise.resolve();

/**
 * @typedef {object} CallOptions
 * @property {number | null} [timeout] milliseconds to wait for the answer; then CallTimeout is
 *   thrown and the other side is told to stop (default: the peer's `callTimeout`, null: wait for
 *   ever, except on channels that set one, such as `rpcConnect`'s).
 * @property {AbortSignal} [signal] aborting it gives up on the call: the other side is told, and
 *   the call rejects with `signal.reason`.
 */

/**
 * @typedef {object} ExposeOptions
 * @property {string} [name] the method name the other side calls (default: `fn.name`).
 * @property {boolean} [signal] pass an AbortSignal after the arguments (see the module docs).
 */

/**
 * @callback NotificationHandler
 * @param {string} method
 * @param {unknown} params an array, an object, or null.
 * @returns {unknown} a promise is awaited only to report its failure.
 */

/**
 * @typedef {object} Outgoing the messages of one flush, and who waits for them to be written.
 * @property {unknown[]} messages
 * @property {(error: unknown) => void} done called with null, or the error.
 */

/** A request of the other side that we are serving. */
class Serving {
  /** @type {AbortController | null} made when the function asked for a signal */
  controller = null;
  /** The answer is sent (or given up): a late result is dropped. */
  done = false;
}

/**
 * Calls both ways over `channel`. `await peer.start()` (or `run()`) before calling;
 * `close()` (or `await using`) closes the channel.
 */
export class Peer {
  /** @type {Map<import("./rpc.js").Id, {resolve: (value: any) => void, reject: (error: unknown) => void}>} */
  #waiting = new Map();
  /** @type {Map<import("./rpc.js").Id, Serving>} */
  #serving = new Map();
  /** @type {Promise<void> | null} settles when reading has ended (a loop, or push mode's end) */
  #reader = null;
  /** @type {() => void} push mode: settles #reader */
  #endReading = () => {};
  /** No more messages are taken: the channel ended, or close() was called. */
  #readDone = false;
  /** @type {Error | null} why no more calls can be made */
  #closed = null;
  #closing = false;
  /** @type {Set<string>} the names whose functions get an AbortSignal */
  #withSignal = new Set();
  /** @type {Outgoing[]} messages waiting for the writer */
  #outgoing = [];
  #writing = false;
  /** The reader is dispatching a chunk: answers made meanwhile leave together after it. */
  #dispatching = false;
  /** @type {() => void} ends run() when close() is called */
  #stop = () => {};
  /** @type {Promise<void>} */
  #stopped = new Promise((resolve) => (this.#stop = resolve));
  /** @type {Map<string, Function>} what serves the requests on the objects we lend */
  #lender;
  /** A microtask will send the ids of released proxies. */
  #releaseQueued = false;
  /** @type {WeakMap<object, Uint8Array[]>} the frames of the params or results we send, by tree */
  #framesOut = new WeakMap();
  /** Some message had frames: the writer looks messages up in #framesOut (until then, never). */
  #framed = false;
  /** @type {Uint8Array[] | null} frames received, waiting for their message */
  #framesIn = null;
  /** @type {Uint8Array[] | undefined} the frames of the message being dispatched */
  #framesNow = undefined;

  /**
   * @param {import("./transports/base.js").Channel} channel any channel: `send`, `receive`,
   *   `close` (a Child from `spawn`, `stdio()`, one end of `memoryPair()`...).
   */
  constructor(channel) {
    /** @type {import("./transports/base.js").Channel} */
    this.channel = channel;
    /** @type {RpcEndpoint} */
    this.endpoint = new RpcEndpoint();
    /** The exposed functions by name. @type {Map<string, Function>} */
    this.functions = new Map();
    /**
     * Milliseconds a call waits for its answer when it gives no `timeout` of its own (null: for
     * ever): the channel's `callTimeout` (`rpcConnect` sets one: nothing tells a caller through a
     * broker that the server holding its call died), else null. Mirror of Python's `call_timeout`.
     * @type {number | null}
     */
    this.callTimeout = /** @type {any} */ (channel).callTimeout ?? null;
    /**
     * Called with `(method, params)` for each notification from the other side; errors it
     * throws (or rejects with) are logged with `console.error`, the peer goes on.
     * @type {NotificationHandler | null}
     */
    this.notificationHandler = null;
    /**
     * The objects this side lends on this connection, and what it knows of the other side's
     * (spec/PROTOCOL.md section 10).
     * @type {Handles}
     */
    this.handles = new Handles();
    this.#lender = new Map(Object.entries(lenderFunctions(this.handles)));
    /**
     * Whether bytes and arrays in params and results leave as binary frames (spec/PROTOCOL.md
     * section 2) instead of base64: set it once both sides said `binary` in the `$/hello`
     * handshake (`python.import` and `host.mjs` do). Only a stream channel (one with
     * `sendBytes`) carries frames; on others it changes nothing. Mirror of Python's `binary`.
     * @type {boolean}
     */
    this.binary = false;
  }

  /**
   * Lets the other side call `fn` (sync or async) by `name` (default: its name).
   * @template {Function} F
   * @param {F} fn
   * @param {ExposeOptions} [options]
   * @returns {F} `fn` itself.
   * @throws {TypeError} `fn` is not a function, or has no name and none was given.
   */
  expose(fn, { name, signal = false } = {}) {
    if (typeof fn !== "function") {
      throw new TypeError(`expose() takes a function, not ${typeof fn}`);
    }
    const method = name ?? fn.name;
    if (typeof method !== "string" || method === "") {
      throw new TypeError("expose(): an anonymous function needs { name }");
    }
    this.functions.set(method, fn);
    if (signal) {
      this.#withSignal.add(method);
    } else {
      this.#withSignal.delete(method);
    }
    return fn;
  }

  /**
   * Starts reading the channel (safe to call twice).
   * @returns {Promise<Peer>} this peer.
   */
  async start() {
    if (this.#reader === null) {
      const channel = /** @type {any} */ (this.channel);
      this.#reader = new Promise((resolve) => (this.#endReading = resolve));
      if (typeof channel.deliverTo !== "function" || !channel.deliverTo(this.#received, this.#ended)) {
        this.#reader = this.#read();
      }
    }
    return this;
  }

  /**
   * Serves until the other side closes the channel, or `close()` is called (for a process that
   * only serves).
   * @returns {Promise<void>} never rejects: the end of the channel is the normal end.
   */
  async run() {
    await this.start();
    await Promise.race([this.#reader, this.#stopped]);
  }

  /**
   * Calls `method` on the other side with positional arguments.
   * @param {string} method
   * @param {...unknown} args JSON values.
   * @returns {Promise<any>} the result.
   * @throws {CallTimeout} no answer within the peer's `callTimeout` ms (when it has one).
   * @throws {import("./errors.js").RemoteError} the remote function threw (type, message and
   *   traceback inside), or the method does not exist there.
   * @throws {TransportClosed | import("./errors.js").ChildExited} the connection ended first.
   * @throws {EncodeError} an argument cannot be sent (nothing was sent).
   */
  call(method, ...args) {
    return this.callWith(method, args.length > 0 ? args : null);
  }

  /**
   * Calls `method` with `params` (array: positional; object: named; null: none), and options.
   * @param {string} method
   * @param {unknown[] | Record<string, unknown> | null} [params]
   * @param {CallOptions} [options]
   * @returns {Promise<any>} the result.
   * @throws {CallTimeout} no answer within `timeout` ms, by default the peer's `callTimeout` (the
   *   other side is told to stop).
   * @throws {unknown} `signal.reason` when the signal aborts (the other side is told to stop).
   * @throws {import("./errors.js").RemoteError} as `call`.
   * @throws {TransportClosed | import("./errors.js").ChildExited} as `call`.
   * @throws {EncodeError} as `call`.
   */
  callWith(method, params = null, options = undefined) {
    if (this.#closed !== null) {
      return Promise.reject(this.#closed);
    }
    const timeout = options?.timeout ?? this.callTimeout;
    const signal = options?.signal;
    if (signal?.aborted) {
      return Promise.reject(signal.reason);
    }
    const endpoint = this.endpoint;
    let callId;
    try {
      callId = endpoint.request(method, /** @type {any} */ (this.#outgoingValue(params)));
    } catch (error) {
      return Promise.reject(error); // a released proxy among the arguments
    }
    /** @type {Promise<any>} */
    const answer = new Promise((resolve, reject) => {
      this.#waiting.set(callId, { resolve, reject });
      this.#flush((error) => {
        if (error !== null && this.#waiting.delete(callId)) {
          endpoint.forget(callId); // it never left (or the channel is gone): nothing to tell
          reject(error);
        }
      });
    });
    if (timeout === null && signal === undefined) {
      return answer; // the common case: no timer, no listener, no extra promise
    }
    /** @param {unknown} error */
    const giveUp = (error) => {
      const waiting = this.#waiting.get(callId);
      if (waiting !== undefined) {
        this.#waiting.delete(callId);
        waiting.reject(error);
        if (endpoint.cancel(callId)) {
          this.#flush(reportFailure);
        }
      }
    };
    const onAbort = () => giveUp(/** @type {AbortSignal} */ (signal).reason);
    const timer =
      timeout === null
        ? undefined
        : setTimeout(() => giveUp(new CallTimeout(`${method}: no answer within ${timeout} ms`)), timeout);
    signal?.addEventListener("abort", onAbort, { once: true });
    return answer.finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  }

  /**
   * Sends a notification: no answer, no error back.
   * @param {string} method
   * @param {...unknown} args JSON values (positional params).
   * @returns {Promise<void>}
   * @throws {EncodeError} an argument cannot be sent.
   * @throws {TransportClosed | import("./errors.js").ChildExited} the connection is gone.
   */
  notify(method, ...args) {
    return this.notifyWith(method, args.length > 0 ? args : null);
  }

  /**
   * Sends a notification with `params` (array: positional; object: named; null: none).
   * @param {string} method
   * @param {unknown[] | Record<string, unknown> | null} [params]
   * @returns {Promise<void>}
   * @throws {EncodeError} `params` cannot be sent.
   * @throws {TransportClosed | import("./errors.js").ChildExited} the connection is gone.
   */
  notifyWith(method, params = null) {
    try {
      this.endpoint.notify(method, /** @type {any} */ (this.#outgoingValue(params)));
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => this.#flush((error) => (error === null ? resolve() : reject(error))));
  }

  /**
   * A call as the proxies of remote objects make it (`callWith`): `params` and the result may
   * hold anything section 10 carries.
   * @param {string} method
   * @param {unknown[] | Record<string, unknown> | null} [params]
   * @param {CallOptions} [options]
   * @returns {Promise<any>}
   */
  request(method, params = null, options = undefined) {
    return this.callWith(method, params, options);
  }

  /**
   * Ids were queued in `handles.released` (a proxy released or collected): they leave in one
   * `$/release` notification from a microtask, or with an earlier flush.
   */
  releaseSoon() {
    if (!this.#releaseQueued) {
      this.#releaseQueued = true;
      RESOLVED.then(this.#sendReleased);
    }
  }

  #sendReleased = () => {
    this.#releaseQueued = false;
    if (this.handles.released.length > 0) {
      this.#flush(reportFailure);
    }
  };

  /**
   * Params or a result to send (`outgoing`): with `binary` on a stream channel, its bytes and
   * arrays are kept aside as frames (found by the tree when the message is encoded).
   * @param {unknown} value
   * @returns {unknown}
   * @throws {HandleError} a released proxy in it.
   */
  #outgoingValue(value) {
    if (!this.binary || typeof (/** @type {any} */ (this.channel).sendBytes) !== "function") {
      return outgoing(value, this.handles);
    }
    /** @type {Uint8Array[]} */
    const blobs = [];
    const tree = outgoing(value, this.handles, blobs);
    if (blobs.length > 0) {
      this.#framesOut.set(/** @type {object} */ (tree), blobs);
      this.#framed = true;
    }
    return tree;
  }

  /** What `incoming` calls for each object the other side lends: its proxy, bound to us. */
  #borrow = (/** @type {import("./objects.js").RefMarker} */ marker) => new RemoteObject(this, marker);

  /**
   * Closes the channel; pending calls fail with TransportClosed, running handlers are aborted.
   * Safe to call twice.
   * @returns {Promise<void>}
   * @throws {TransportClosed} what the channel's `close()` throws: a tcp or ws client's peer did
   *   not confirm that it read everything sent.
   */
  async close() {
    this.#closing = true;
    this.#readDone = true;
    this.#stop();
    const cause = new TransportClosed("the peer was closed");
    this.#fail(cause);
    this.#stopServing(cause);
    await this.channel.close();
  }

  /**
   * `await using peer = ...` closes it at the end of the block.
   * @returns {Promise<void>}
   */
  async [asyncDispose]() {
    await this.close();
  }

  // -- sending ----------------------------------------------------------------------------------

  /**
   * Sends what the endpoint has queued; `done(null)` once it is written (or buffered by the
   * channel), `done(error)` with the EncodeError of one of the messages (the others are sent)
   * or with the channel's error; `done(null)` at once when there is nothing to send.
   *
   * One writer at a time: while a write is under way, later messages gather in `#outgoing` and
   * leave together in the next write, in order. Many sends waiting on a full pipe each for
   * itself would cost a listener each (quadratic); a chunk per round costs one. A stream channel
   * with `sendNow` is written to right here, no promise, when no write is under way: `done` is
   * called before this returns (unless the pipe is full), and the write counts as under way
   * until the next microtask, so that a burst of calls leaves in two writes, not one each.
   * @param {(error: unknown) => void} done
   */
  #flush(done) {
    if (this.handles.released.length > 0) {
      const ids = this.handles.takeReleased();
      if (this.#closed === null) {
        this.endpoint.notify(RELEASE_METHOD, ids);
      }
    }
    const messages = this.endpoint.messagesToSend();
    if (messages.length === 0) {
      done(null);
      return;
    }
    const channel = /** @type {any} */ (this.channel);
    const frames = this.#framed ? this.#framesOut : null;
    if (this.#writing || typeof channel[sendNow] !== "function") {
      if (frames !== null && this.#writing) {
        snapshot(messages, frames); // encoded later: the frames must be what was sent now
      }
      this.#outgoing.push({ messages, done });
      if (!this.#writing) {
        this.#writing = true;
        this.#write();
      }
      return;
    }
    const [data, failure] = encoded(messages, frames);
    this.#writing = true;
    const waiting = data.length === 0 ? null : channel[sendNow](data);
    if (waiting === null) {
      done(failure);
      RESOLVED.then(this.#wrote); // what is flushed until then leaves in one write
    } else {
      this.#write(waiting, [[{ messages, done }, failure]]); // the pipe is full: wait for it
    }
  }

  /** The microtask after a write that `sendNow` took at once: the next one may go. */
  #wrote = () => {
    if (this.#outgoing.length === 0) {
      this.#writing = false;
    } else {
      this.#write();
    }
  };

  /**
   * The writer while messages gather: settles the write under way (if any), then sends what
   * gathered meanwhile, until nothing is left.
   * @param {Promise<void>} [waiting] the write under way (`sendNow` returned it).
   * @param {[Outgoing, unknown][]} [written] its entries, each with its encoding error.
   */
  async #write(waiting = undefined, written = []) {
    try {
      if (waiting !== undefined) {
        await settleWhen(waiting, written);
      }
      while (this.#outgoing.length > 0) {
        const batch = this.#outgoing;
        this.#outgoing = [];
        if (typeof (/** @type {any} */ (this.channel).sendBytes) === "function") {
          await this.#writeBytes(batch);
        } else {
          await this.#writeValues(batch);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * A stream channel: every message encoded here, then one `sendBytes` for the whole batch.
   * Settles each entry; never rejects.
   * @param {Outgoing[]} batch
   */
  async #writeBytes(batch) {
    const channel = /** @type {any} */ (this.channel);
    const frames = this.#framed ? this.#framesOut : null;
    /** @type {string | Uint8Array} */
    let data = "";
    /** @type {(string | Uint8Array)[] | null} the parts, once one is bytes (frames) */
    let parts = null;
    /** @type {[Outgoing, unknown][]} each entry with the encoding error of one of its messages */
    const written = [];
    for (const entry of batch) {
      const [lines, failure] = encoded(entry.messages, frames);
      if (typeof lines === "string" && parts === null) {
        data += lines;
      } else {
        (parts ??= data === "" ? [] : [data]).push(lines);
      }
      written.push([entry, failure]);
    }
    if (parts !== null) {
      data = parts.length === 1 ? parts[0] : joined(parts); // (one big message: no second copy)
    }
    let sent = null;
    try {
      if (data.length > 0) {
        sent = typeof channel[sendNow] === "function" ? channel[sendNow](data) : channel.sendBytes(data);
      }
    } catch (error) {
      sent = Promise.reject(error); // a channel whose sendBytes() throws instead of rejecting
    }
    await settleWhen(sent ?? undefined, written);
  }

  /**
   * Any other channel: one `send` per message, all started now (in order), then awaited.
   * Settles each entry; never rejects.
   * @param {Outgoing[]} batch
   */
  async #writeValues(batch) {
    const sent = batch.map((entry) => Promise.all(entry.messages.map((message) => this.#send(message))));
    for (const [i, outcome] of (await Promise.allSettled(sent)).entries()) {
      batch[i].done(outcome.status === "fulfilled" ? null : outcome.reason);
    }
  }

  /**
   * @param {unknown} message
   * @returns {Promise<void>}
   */
  #send(message) {
    let sent;
    try {
      sent = this.channel.send(message);
    } catch (error) {
      sent = Promise.reject(error); // a channel whose send() throws instead of rejecting
    }
    return sent.catch((error) => {
      if (!(error instanceof EncodeError)) {
        throw error;
      }
      const repaired = repair(message);
      if (repaired === null) {
        throw error; // our own request or notification: the caller hears of it
      }
      return this.channel.send(repaired);
    });
  }

  // -- reading ----------------------------------------------------------------------------------

  /** The reader loop, for a channel without push mode. */
  async #read() {
    try {
      const channel = /** @type {any} */ (this.channel);
      const many = typeof channel.receiveMany === "function"; // a whole chunk per await
      while (!this.#readDone) {
        this.#dispatchAll(many ? await channel.receiveMany() : [await channel.receive()]);
      }
    } catch (error) {
      this.#ended(error);
    }
  }

  /**
   * A chunk of messages (push mode: straight from the channel's 'data' handler): dispatched,
   * then the answers of sync functions and the endpoint's error answers leave together.
   * @param {unknown[]} messages
   */
  #received = (messages) => {
    try {
      this.#dispatchAll(messages);
    } catch (error) {
      this.#ended(error); // a bug: the pull loop would end with it too
    }
  };

  /**
   * @param {unknown[]} messages
   */
  #dispatchAll(messages) {
    if (this.#readDone) {
      return; // closed meanwhile: no more answers
    }
    const endpoint = this.endpoint;
    this.#dispatching = true; // the answers of sync functions leave together, below
    try {
      for (let i = 0; i < messages.length; i++) {
        const message = messages[i];
        if (message instanceof Binary) {
          (this.#framesIn ??= []).push(message.data); // a frame of the next message
        } else if (this.#framesIn === null) {
          this.#dispatch(endpoint.receive(message));
        } else {
          this.#framesNow = this.#framesIn; // what `incoming` revives its blob markers from
          this.#framesIn = null;
          try {
            this.#dispatch(endpoint.receive(message));
          } finally {
            this.#framesNow = undefined;
          }
        }
      }
    } finally {
      this.#dispatching = false;
    }
    this.#flush(reportFailure); // those answers, and the error answers the endpoint queued
  }

  /**
   * Reading has ended: every pending call fails with why, unless we closed the peer ourselves.
   * @param {unknown} error what `receive()` threw, or the end handler got.
   */
  #ended = (error) => {
    if (!this.#readDone) {
      this.#readDone = true;
      if (!this.#closing) {
        // ChildExited with its stderr tail, TransportClosed, a DecodeError under raiseError...
        const cause =
          error instanceof BothwaysError
            ? error
            : new TransportError(`the channel failed: ${error}`, { cause: error });
        this.#fail(cause);
        this.#stopServing(cause); // nobody can receive their answers now
      }
    }
    this.#endReading();
  };

  /**
   * Ends every pending call with `cause`; the first cause is what later calls throw.
   * @param {Error} cause
   */
  #fail(cause) {
    this.#closed ??= cause;
    this.handles.clear(); // the other side's proxies of them are dead: let go of everything
    for (const event of this.endpoint.failAll(cause)) {
      this.#settle(event.id, event.error, undefined);
    }
  }

  /**
   * @param {Error} cause
   */
  #stopServing(cause) {
    for (const serving of this.#serving.values()) {
      serving.done = true;
      serving.controller?.abort(cause);
    }
    this.#serving.clear();
  }

  /**
   * @param {import("./rpc.js").Id | null} callId
   * @param {unknown} error
   * @param {unknown} result
   */
  #settle(callId, error, result) {
    const waiting = this.#waiting.get(/** @type {import("./rpc.js").Id} */ (callId));
    if (waiting === undefined) {
      return; // given up already, or an error about no call in particular (id null)
    }
    this.#waiting.delete(/** @type {import("./rpc.js").Id} */ (callId));
    if (error !== null) {
      waiting.reject(error);
    } else {
      waiting.resolve(result);
    }
  }

  /**
   * @param {import("./rpc.js").RpcEvent[]} events
   */
  #dispatch(events) {
    for (const event of events) {
      if (event instanceof Response) {
        this.#settleResult(event.id, event.result);
      } else if (event instanceof ErrorResponse) {
        this.#settle(event.id, event.error, undefined);
      } else if (event instanceof Request) {
        this.#serve(event);
      } else if (event instanceof Cancelled) {
        this.#cancelServing(event.id);
      } else if (event instanceof Notification) {
        if (event.method === RELEASE_METHOD) {
          if (Array.isArray(event.params)) {
            this.handles.drop(event.params);
          }
        } else if (this.notificationHandler !== null) {
          this.#notified(event);
        }
      }
    }
  }

  /**
   * An answer to our call: its result revived (proxies of what the other side lends...).
   * @param {import("./rpc.js").Id | null} callId
   * @param {unknown} result
   */
  #settleResult(callId, result) {
    let value;
    try {
      value = incoming(result, this.handles, this.#borrow, this.#framesNow); // (one check when plain)
    } catch (error) {
      this.#settle(callId, error, undefined); // a malformed marker: HandleError naming its path
      return;
    }
    this.#settle(callId, null, value);
  }

  /**
   * @param {Notification} event
   */
  #notified(event) {
    /** @param {unknown} error */
    const report = (error) => {
      console.error(`bothways Peer: the notification handler threw on ${event.method}:`, error);
    };
    try {
      const params = incoming(event.params, this.handles, this.#borrow, this.#framesNow);
      const outcome = /** @type {NotificationHandler} */ (this.notificationHandler)(event.method, params);
      if (isThenable(outcome)) {
        Promise.resolve(outcome).catch(report);
      }
    } catch (error) {
      report(error);
    }
  }

  /**
   * The other side gave up on its request `requestId`: abort the handler, answer now.
   * @param {import("./rpc.js").Id} requestId
   */
  #cancelServing(requestId) {
    const serving = this.#serving.get(requestId);
    if (serving === undefined) {
      return; // answered already
    }
    this.#serving.delete(requestId);
    serving.done = true;
    serving.controller?.abort(new DOMException("the caller cancelled the request", "AbortError"));
    this.endpoint.respondError(requestId, REQUEST_CANCELLED, "Request cancelled");
    this.#answered();
  }

  // -- serving ----------------------------------------------------------------------------------

  /**
   * Runs the function for `request` and answers it (sync functions answer at once).
   * @param {Request} request
   */
  #serve(request) {
    const requestId = request.id;
    let params = request.params;
    if (params !== null) {
      try {
        params = incoming(params, this.handles, this.#borrow, this.#framesNow); // (one check when plain)
      } catch (error) {
        if (!(error instanceof HandleError)) throw error;
        this.endpoint.respondError(requestId, INVALID_PARAMS, `Invalid params: ${error.message}`);
        this.#answered();
        return;
      }
    }
    const fn = this.functions.get(request.method) ?? this.#lender.get(request.method);
    if (fn === undefined) {
      this.endpoint.respondError(requestId, METHOD_NOT_FOUND, `Method not found: ${request.method}`);
      this.#answered();
      return;
    }
    const args = Array.isArray(params) ? params : params === null ? [] : [params];
    const withSignal = this.#withSignal.has(request.method);
    const arity = arityOf(fn);
    if (arity !== null) {
      const refused = refuses(arity, args.length, withSignal);
      if (refused !== null) {
        this.endpoint.respondError(requestId, INVALID_PARAMS, `Invalid params: ${refused}`);
        this.#answered();
        return;
      }
    }
    /** @type {Serving | null} registered while the function runs: only async ones can be cancelled */
    let serving = null;
    if (withSignal) {
      serving = this.#register(requestId);
      const controller = new AbortController();
      serving.controller = controller;
      const before = arity === null ? fn.length - 1 : arity.rest ? 0 : arity.names.length - 1;
      args.length = Math.max(args.length, before); // fills with undefined up to the signal
      args.push(controller.signal);
    }
    let result;
    try {
      result = fn(...args);
    } catch (error) {
      this.#answer(requestId, serving, false, error);
      return;
    }
    if (isThenable(result)) {
      const running = serving ?? this.#register(requestId);
      Promise.resolve(result).then(
        (value) => this.#answer(requestId, running, true, value),
        (error) => this.#answer(requestId, running, false, error),
      );
    } else {
      this.#answer(requestId, serving, true, result);
    }
  }

  /**
   * @param {import("./rpc.js").Id} requestId
   * @returns {Serving}
   */
  #register(requestId) {
    const serving = new Serving();
    this.#serving.set(requestId, serving);
    return serving;
  }

  /**
   * @param {import("./rpc.js").Id} requestId
   * @param {Serving | null} serving null for a function that returned at once.
   * @param {boolean} ok whether the function returned (true) or threw (false).
   * @param {unknown} outcome what it returned or threw.
   */
  #answer(requestId, serving, ok, outcome) {
    if (serving !== null) {
      if (serving.done) {
        return; // cancelled, or the connection is gone: the answer is not wanted
      }
      serving.done = true;
      if (this.#serving.get(requestId) === serving) {
        this.#serving.delete(requestId);
      }
    }
    if (ok) {
      let result;
      try {
        result = this.#outgoingValue(outcome); // (one quick walk when it is plain JSON)
      } catch (error) {
        ok = false; // a released proxy in the result
        outcome = error;
      }
      if (ok) {
        this.endpoint.respond(requestId, result);
        this.#answered();
        return;
      }
    }
    const err = /** @type {any} */ (outcome);
    const isError = err instanceof Error || (typeof err === "object" && err !== null && "message" in err);
    const data = {
      type: isError ? String(err.name ?? "Error") : typeof err,
      traceback: isError && typeof err.stack === "string" ? err.stack : "",
    };
    // a request naming a handle we do not hold: -32001 (spec/PROTOCOL.md 10.3)
    const code = err instanceof HandleError && typeof err.rpcCode === "number" ? err.rpcCode : SERVER_ERROR;
    this.endpoint.respondError(requestId, code, isError ? String(err.message) : String(err), data);
    this.#answered();
  }

  /** Sends the answers queued: now, or with the others of the chunk being dispatched. */
  #answered() {
    if (!this.#dispatching) {
      this.#flush(reportFailure);
    }
  }
}

/**
 * What a function accepts, read from its source.
 * @typedef {object} Arity
 * @property {number} least the parameters before the first default value or rest (`fn.length`).
 * @property {(string | null)[]} names the declared parameters: their names, null for a pattern
 *   (`{a, b}`, `[x]`) or the rest parameter.
 * @property {boolean} rest whether it takes any number more (a rest parameter, or `arguments`).
 */

/** @type {WeakMap<Function, Arity | null>} */
const arities = new WeakMap();

/**
 * The arity of `fn`, read once; null when its source is not there (native, bound).
 * @param {Function} fn
 * @returns {Arity | null}
 */
function arityOf(fn) {
  let arity = arities.get(fn);
  if (arity === undefined) {
    arity = readArity(fn);
    arities.set(fn, arity);
  }
  return arity;
}

/**
 * Why `count` arguments do not fit `arity` (the words of Python's TypeError), or null.
 * @param {Arity} arity
 * @param {number} count
 * @param {boolean} withSignal the last declared parameter takes the AbortSignal, not an argument.
 * @returns {string | null}
 */
function refuses(arity, count, withSignal) {
  const declared = arity.names.length - (withSignal && !arity.rest ? 1 : 0);
  const least = Math.min(arity.least, declared);
  if (count < least) {
    const name = arity.names[count];
    return `missing a required argument: ${name ? `'${name}'` : `argument ${count + 1}`}`;
  }
  if (!arity.rest && count > declared) {
    return "too many positional arguments";
  }
  return null;
}

const IDENTIFIER = /^[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*/u;

/**
 * @param {Function} fn
 * @returns {Arity | null}
 */
function readArity(fn) {
  let source;
  try {
    source = Function.prototype.toString.call(fn);
  } catch {
    return null;
  }
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
    return null; // native or bound: no source to read
  }
  const list = parameterList(source);
  if (list === null) {
    return null;
  }
  const { params, end } = list;
  const rest = params.length > 0 && params[params.length - 1].startsWith("...");
  return {
    least: fn.length,
    names: params.map((param) => {
      const name = IDENTIFIER.exec(param)?.[0];
      return name !== undefined && /^\s*(=|$)/.test(param.slice(name.length)) ? name : null;
    }),
    rest: rest || (params.length === 0 && /\barguments\b/.test(source.slice(end))),
  };
}

/**
 * The parameters of a function's source, as written (comments dropped), and where the list ends;
 * null when it cannot be read.
 * @param {string} source what `Function.prototype.toString` gives.
 * @returns {{params: string[], end: number} | null}
 */
function parameterList(source) {
  const bare = /^(?:async\s+)?([\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*)\s*=>/u.exec(source);
  if (bare !== null) {
    return { params: [bare[1]], end: bare[0].length }; // x => ...
  }
  let i = 0;
  let depth = 0; // inside a computed method name: [key](a, b) { ... }
  for (; i < source.length; i++) {
    const skipped = skip(source, i);
    if (skipped === -1) {
      return null;
    }
    if (skipped !== i) {
      i = skipped - 1;
    } else if (source[i] === "[") {
      depth++;
    } else if (source[i] === "]") {
      depth--;
    } else if (source[i] === "(" && depth === 0) {
      break;
    }
  }
  /** @type {string[]} */
  const params = [];
  let current = "";
  depth = 0;
  for (i++; i < source.length; i++) {
    const c = source[i];
    const skipped = skip(source, i);
    if (skipped === -1) {
      return null;
    }
    if (skipped !== i) {
      if (c !== "/") {
        current += source.slice(i, skipped); // a string in a default value
      }
      i = skipped - 1;
      continue;
    }
    if (c === "(" || c === "[" || c === "{") {
      depth++;
    } else if (c === ")" || c === "]" || c === "}") {
      if (depth === 0) {
        if (current.trim() !== "") {
          params.push(current.trim());
        }
        return c === ")" ? { params, end: i + 1 } : null;
      }
      depth--;
    } else if (c === "," && depth === 0) {
      params.push(current.trim());
      current = "";
      continue;
    }
    current += c;
  }
  return null;
}

/**
 * Where the string or comment starting at `i` ends (the index after it); `i` itself when none
 * starts there; -1 when it does not end.
 * @param {string} source
 * @param {number} i
 * @returns {number}
 */
function skip(source, i) {
  const c = source[i];
  if (c === "/" && source[i + 1] === "/") {
    const end = source.indexOf("\n", i);
    return end === -1 ? -1 : end + 1;
  }
  if (c === "/" && source[i + 1] === "*") {
    const end = source.indexOf("*/", i + 2);
    return end === -1 ? -1 : end + 2;
  }
  if (c === '"' || c === "'" || c === "`") {
    for (let j = i + 1; j < source.length; j++) {
      if (source[j] === "\\") {
        j++;
      } else if (source[j] === c) {
        return j + 1;
      }
    }
    return -1;
  }
  return i;
}

/**
 * The answer(s) to send instead of `message` when a result in it cannot be encoded; null when
 * the failure is not in a result (our own request or notification).
 * @param {unknown} message
 * @returns {unknown}
 */
function repair(message) {
  if (Array.isArray(message)) {
    let changed = false;
    const answers = message.map((answer) => {
      const fixed = repairAnswer(answer);
      changed ||= fixed !== answer;
      return fixed;
    });
    return changed ? answers : null;
  }
  const fixed = repairAnswer(message);
  return fixed === message ? null : fixed;
}

/**
 * @param {any} answer
 * @returns {any} `answer`, or the INTERNAL_ERROR answer when its result cannot be encoded.
 */
function repairAnswer(answer) {
  if (typeof answer !== "object" || answer === null || !Object.hasOwn(answer, "result")) {
    return answer;
  }
  try {
    encode(answer);
    return answer;
  } catch (error) {
    if (!(error instanceof EncodeError)) {
      throw error;
    }
    // the handler returned something that cannot cross: say so to the caller
    return {
      jsonrpc: "2.0",
      error: {
        code: INTERNAL_ERROR,
        message: `result: ${error.message}`,
        data: { type: "EncodeError", traceback: "" },
      },
      id: answer.id,
    };
  }
}

/**
 * The NDJSON lines of `messages` (an endpoint's `messagesToSend()`; mirror of Python's
 * `encoded`). A result that cannot be encoded is replaced by its INTERNAL_ERROR answer; a request
 * or notification that cannot be encoded is left out, and the first such error comes back too.
 * A message with binary frames (in `frames`, by its params or result) is written right after
 * them: the data is then bytes, `#blob N\n` and the N bytes for each frame, then the line.
 * @param {unknown[]} messages
 * @param {WeakMap<object, Uint8Array[]> | null} [frames] null: nothing is sent in frames.
 * @returns {[string | Uint8Array, unknown]} the lines (bytes when there are frames), and that
 *   error or null.
 */
function encoded(messages, frames = null) {
  let data = "";
  let failure = null;
  /** @type {(string | Uint8Array)[] | null} */
  let parts = null;
  for (const message of messages) {
    const framed = frames === null ? null : framesOf(message, frames);
    try {
      if (framed === null) {
        data += encodeOrRepair(message);
        continue;
      }
      let line;
      try {
        line = encode(framed.message);
      } catch {
        data += encodeOrRepair(message); // (an answer that cannot be sent goes without its frames)
        continue;
      }
      parts ??= [];
      parts.push(data);
      for (const blob of framed.blobs) {
        parts.push(`#blob ${blob.length}\n`, blob);
      }
      data = line;
    } catch (error) {
      failure ??= error;
    }
  }
  if (parts === null) {
    return [data, failure];
  }
  parts.push(data);
  return [joined(parts), failure];
}

/**
 * The frames that go with `message` (its params or result, or for a batch of answers those of
 * each, numbered on from one answer to the next), and the message to write with them.
 * @param {unknown} message
 * @param {WeakMap<object, Uint8Array[]>} frames
 * @returns {{message: unknown, blobs: Uint8Array[]} | null} null: none.
 */
function framesOf(message, frames) {
  if (typeof message !== "object" || message === null) {
    return null;
  }
  if (!Array.isArray(message)) {
    const tree = /** @type {any} */ (message).params ?? /** @type {any} */ (message).result;
    const blobs = typeof tree === "object" && tree !== null ? frames.get(tree) : undefined;
    return blobs === undefined ? null : { message, blobs };
  }
  /** @type {Uint8Array[]} */
  const blobs = [];
  const answers = message.map((answer) => {
    const one = framesOf(answer, frames);
    if (one === null) {
      return answer;
    }
    const offset = blobs.length;
    blobs.push(...one.blobs);
    return offset === 0 ? answer : { ...answer, result: renumbered(answer.result, offset) };
  });
  return blobs.length === 0 ? null : { message: answers, blobs };
}

/**
 * A copy of `tree` whose frame numbers (`"blob": k` of bytes and array markers) are `offset`
 * higher: the answers of one batch share the frames before it.
 * @param {unknown} tree
 * @param {number} offset
 * @returns {unknown}
 */
function renumbered(tree, offset) {
  if (typeof tree !== "object" || tree === null) {
    return tree;
  }
  if (Array.isArray(tree)) {
    return tree.map((item) => renumbered(item, offset));
  }
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [key, item] of Object.entries(tree)) {
    Object.defineProperty(out, key, {
      value: renumbered(item, offset),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  const kind = out.$bothways;
  if ((kind === "bytes" || kind === "array") && typeof out.blob === "number") {
    out.blob += offset;
  }
  return out;
}

/**
 * Copies the frames of `messages` (views of the caller's memory) before they wait for a write:
 * what is written is what the values held when they were sent.
 * @param {unknown[]} messages
 * @param {WeakMap<object, Uint8Array[]>} frames
 */
function snapshot(messages, frames) {
  for (const message of messages) {
    for (const one of Array.isArray(message) ? message : [message]) {
      const tree = typeof one === "object" && one !== null ? (one.params ?? one.result) : undefined;
      const blobs = typeof tree === "object" && tree !== null ? frames.get(tree) : undefined;
      if (blobs !== undefined) {
        frames.set(tree, blobs.map((blob) => blob.slice()));
      }
    }
  }
}

const utf8 = new TextEncoder();

/**
 * The parts one after the other, as one array of bytes (strings as UTF-8).
 * @param {(string | Uint8Array)[]} parts
 * @returns {Uint8Array}
 */
function joined(parts) {
  const bytes = parts.map((part) => (typeof part === "string" ? utf8.encode(part) : part));
  const out = new Uint8Array(bytes.reduce((size, part) => size + part.length, 0));
  let at = 0;
  for (const part of bytes) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * `message` as an NDJSON line; a result that cannot be encoded becomes the INTERNAL_ERROR answer.
 * @param {unknown} message
 * @returns {string}
 * @throws {EncodeError} a request or notification that cannot be encoded.
 */
function encodeOrRepair(message) {
  try {
    return encode(message);
  } catch (error) {
    const repaired = error instanceof EncodeError ? repair(message) : null;
    if (repaired === null) {
      throw error;
    }
    return encode(repaired);
  }
}

/**
 * @param {unknown} value
 * @returns {value is PromiseLike<unknown>}
 */
function isThenable(value) {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (/** @type {any} */ (value).then) === "function"
  );
}

/**
 * Settles the entries of a write once it is done: each with its encoding error (or null), or
 * all with the channel's error.
 * @param {Promise<void> | undefined} sent the write; undefined: nothing had to be written.
 * @param {[Outgoing, unknown][]} written
 * @returns {Promise<void>} never rejects.
 */
async function settleWhen(sent, written) {
  try {
    await sent;
  } catch (error) {
    for (const [entry] of written) {
      entry.done(error);
    }
    return;
  }
  for (const [entry, failure] of written) {
    entry.done(failure);
  }
}

/**
 * For answers and cancellations sent in the background: when the connection is gone there is
 * nobody to tell (the reader fails the pending calls). Anything else is a bug worth seeing.
 * @param {unknown} error null: sent.
 */
function reportFailure(error) {
  if (error !== null && !(error instanceof BothwaysError)) {
    console.error("bothways Peer: sending failed:", error);
  }
}
