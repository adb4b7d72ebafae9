/**
 * What every transport shares: the Inbox that turns bytes into values, the policies for bad
 * input, the Channel base class, and `memoryPair()` for tests without sockets. Mirrors
 * `src/bothways/transports/base.py`.
 *
 * An adapter is a short loop: read bytes, `inbox.feed(data)`, hand out `inbox.pop()`; at end of
 * stream `inbox.feedEof()`. What to do with a malformed line is the inbox's `onError` policy: by
 * default it is logged (with its line number and excerpt) and the stream goes on.
 *
 * Rules:
 * - An error thrown by the policy (`raiseError`) takes its place in the queue: `pop()` hands out
 *   every value that came before the bad line, then throws. Nothing is reordered or lost.
 * - No `node:*` import: this module loads in a browser, for the transports that exist there.
 *
 * @module bothways/transports/base
 */

import { TransportClosed } from "../errors.js";
import { Decoder, MAX_LINE, Messages, Truncated, decode, encode, encodeMany } from "../wire.js";

// Node >= 20.4 and current browsers define it; older runtimes get a registered stand-in.
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");

/**
 * @callback ErrorHandler
 * @param {import("../errors.js").DecodeError} error a malformed, too long or truncated line.
 * @returns {void}
 */

/**
 * The default policy for bad input: log it (`console.warn`) and go on with the next line.
 * @param {import("../errors.js").DecodeError} error
 * @returns {void}
 */
export function logError(error) {
  console.warn(`${error.code}: ${error.message}`);
}

/**
 * The strict policy: the bad line ends the stream with its DecodeError.
 * @param {import("../errors.js").DecodeError} error
 * @returns {never}
 * @throws {import("../errors.js").DecodeError} always, `error` itself.
 */
export function raiseError(error) {
  throw error;
}

/**
 * @param {any} value
 * @returns {IteratorResult<any>}
 */
function more(value) {
  return { value, done: false };
}

/**
 * @param {unknown} error
 * @returns {IteratorResult<any>}
 * @throws {unknown} any error but TransportClosed.
 */
function end(error) {
  if (error instanceof TransportClosed) {
    return { value: undefined, done: true };
  }
  throw error;
}

/** Marks an error, thrown by the policy, that waits in the queue for its turn. */
class Thrown {
  /** @param {unknown} error */
  constructor(error) {
    this.error = error;
  }
}

/**
 * A Decoder plus the queue of values it has produced and the policy for bad lines.
 *
 * The queue holds the decoder's batches as they come (an array per `Messages` event), so a
 * chunk of a thousand lines costs one push, not a thousand.
 */
export class Inbox {
  #decoder;
  #onError;
  /** @type {any[][]} batches of values; the first is consumed from #index */
  #batches = [];
  #index = 0;
  #size = 0;

  /**
   * @param {{maxLine?: number, onError?: ErrorHandler}} [options] `maxLine`: the decoder's line
   *   limit in bytes (default 16 MiB). `onError`: called with each DecodeError (malformed, too
   *   long, truncated); it may throw, and the error is then thrown by `pop()` in its turn. A
   *   truncated final line that still parsed is delivered and logged with `console.warn`.
   * @throws {RangeError} `maxLine` is below 1.
   */
  constructor({ maxLine = MAX_LINE, onError = logError } = {}) {
    this.#decoder = new Decoder({ maxLine });
    this.#onError = onError ?? logError;
  }

  /**
   * How many values (and queued errors) wait to be popped.
   * @returns {number}
   */
  get length() {
    return this.#size;
  }

  /**
   * Feeds received bytes; the values they complete become available to `pop`.
   * @param {Uint8Array | string} data
   * @returns {void}
   */
  feed(data) {
    this.#take(this.#decoder.feed(data));
  }

  /**
   * Ends the stream (an unterminated last line is delivered or reported).
   * @returns {void}
   */
  feedEof() {
    this.#take(this.#decoder.feedEof());
  }

  /**
   * The oldest undelivered value (check `length` first).
   * @returns {any}
   * @throws {Error} what the `onError` policy threw, when its turn comes.
   * @throws {RangeError} the inbox is empty.
   */
  pop() {
    const batch = this.#batches[0];
    if (batch === undefined) {
      throw new RangeError("pop() from an empty Inbox");
    }
    const value = batch[this.#index++];
    if (this.#index === batch.length) {
      this.#batches.shift();
      this.#index = 0;
    }
    this.#size--;
    if (value instanceof Thrown) {
      throw value.error;
    }
    return value;
  }

  /**
   * @param {import("../wire.js").Event[]} events
   */
  #take(events) {
    for (const event of events) {
      if (event instanceof Messages) {
        this.#push(event.values);
      } else if (event instanceof Truncated && event.error.delivered) {
        console.warn(`${event.error.code}: ${event.error.message}`);
      } else {
        try {
          this.#onError(/** @type {any} */ (event).error);
        } catch (error) {
          this.#push([new Thrown(error)]);
        }
      }
    }
  }

  /** @param {any[]} values */
  #push(values) {
    if (values.length > 0) {
      this.#batches.push(values);
      this.#size += values.length;
    }
  }
}

/**
 * A message channel: `send`, `receive`, `close`, plus async iteration and `await using`.
 *
 * Subclasses implement the three methods; iteration ends when `receive()` throws
 * TransportClosed (the peer finished cleanly) and rethrows any other error.
 */
export class Channel {
  /**
   * Sends one message; waits while the peer is not reading (backpressure).
   * @param {unknown} _value
   * @returns {Promise<void>}
   */
  async send(_value) {
    throw new Error(`${this.constructor.name}.send() is not implemented`);
  }

  /**
   * Sends several messages; stream channels (those with `sendBytes`) write them as one chunk.
   * Mirror of Python's `send_many`.
   * @param {Iterable<unknown>} values
   * @returns {Promise<void>}
   * @throws {EncodeError} a value cannot cross (nothing is sent).
   */
  async sendMany(values) {
    const self = /** @type {any} */ (this);
    if (typeof self.sendBytes === "function") {
      return self.sendBytes(encodeMany(values));
    }
    for (const value of values) {
      await this.send(value);
    }
  }

  /**
   * The next message.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the peer has finished cleanly.
   */
  async receive() {
    throw new Error(`${this.constructor.name}.receive() is not implemented`);
  }

  /**
   * Releases the channel; safe to call twice.
   * @returns {Promise<void>}
   */
  async close() {
    throw new Error(`${this.constructor.name}.close() is not implemented`);
  }

  /**
   * `for await (const message of channel)`: every message until the peer finishes.
   *
   * A plain iterator object rather than an async generator: one promise per message instead of
   * three, which counts at a million messages (more so under async_hooks, as in `node --test`).
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    const channel = this;
    return {
      next() {
        return channel.receive().then(more, end);
      },
      return() {
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * `await using channel = ...` closes it at the end of the block.
   * @returns {Promise<void>}
   */
  async [asyncDispose]() {
    await this.close();
  }
}

/**
 * A FIFO of encoded lines whose `get()` waits; `null` marks the end.
 */
class LineQueue {
  /** @type {(string | null)[]} */
  #items = [];
  /** @type {((line: string | null) => void)[]} */
  #waiters = [];

  /** @param {string | null} line */
  put(line) {
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter(line);
    } else {
      this.#items.push(line);
    }
  }

  /** @returns {Promise<string | null>} */
  get() {
    if (this.#items.length > 0) {
      return Promise.resolve(/** @type {string | null} */ (this.#items.shift()));
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/**
 * One end of `memoryPair()`: messages go through encode/decode, as on a real wire.
 */
export class MemoryChannel extends Channel {
  #inbox;
  #outbox;
  #closed = false;

  /**
   * Made by `memoryPair()`.
   * @param {LineQueue} inbox
   * @param {LineQueue} outbox
   */
  constructor(inbox, outbox) {
    super();
    this.#inbox = inbox;
    this.#outbox = outbox;
  }

  /**
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot be sent.
   * @throws {TransportClosed} this end is closed.
   */
  async send(value) {
    if (this.#closed) {
      throw new TransportClosed("this end of the memory pair is closed");
    }
    this.#outbox.put(encode(value));
  }

  /**
   * @returns {Promise<any>}
   * @throws {TransportClosed} this end, or the other one, is closed.
   */
  async receive() {
    if (this.#closed) {
      throw new TransportClosed("this end of the memory pair is closed");
    }
    const line = await this.#inbox.get();
    if (line === null) {
      this.#inbox.put(null); // stay closed for the next receive
      throw new TransportClosed("the other end closed");
    }
    return decode(line);
  }

  /**
   * Ends this side: the other end's `receive()` then throws TransportClosed.
   * @returns {Promise<void>}
   */
  async close() {
    if (!this.#closed) {
      this.#closed = true;
      this.#outbox.put(null);
    }
  }
}

/**
 * Two connected in-memory channels, for testing RPC and app code without sockets.
 * @returns {[MemoryChannel, MemoryChannel]}
 */
export function memoryPair() {
  const a = new LineQueue();
  const b = new LineQueue();
  return [new MemoryChannel(a, b), new MemoryChannel(b, a)];
}
