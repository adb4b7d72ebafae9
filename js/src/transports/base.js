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
 * - With `binary`, a binary frame (spec/PROTOCOL.md section 2) is handed out as its `Binary`
 *   event, a value among the others, in order: the calls layer (the Peer) takes it as the next
 *   message's frame.
 * - No `node:*` import: this module loads in a browser, for the transports that exist there.
 *
 * @module bothways/transports/base
 */

import { TransportClosed, TransportError } from "../errors.js";
import { Binary, Decoder, MAX_LINE, Messages, Truncated, decode, encode, encodeMany } from "../wire.js";

// Node >= 20.4 and current browsers define it; older runtimes get a registered stand-in. The
// type says it is `Symbol.asyncDispose`, so that the declarations show `[Symbol.asyncDispose]()`.
/** @type {typeof Symbol.asyncDispose} */
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");

/**
 * @callback ErrorHandler
 * @param {import("../errors.js").DecodeError} error a malformed, too long or truncated line.
 * @returns {void}
 */

/**
 * @callback MessagesHandler takes a batch of received messages, in order (push mode:
 *   `Channel.deliverTo`).
 * @param {any[]} values at least one; the array is the handler's to keep.
 * @returns {void}
 */

/**
 * @callback EndHandler takes why a channel's messages ended (what `receive()` would have thrown:
 *   TransportClosed, ChildExited with its code and stderr tail, a DecodeError under
 *   `raiseError`...), once.
 * @param {Error} error
 * @returns {void}
 */

/**
 * The method of a stream channel that writes encoded lines now, for the RPC Peer's writer:
 * `channel[sendNow](data)` returns null when the stream took `data` (written, or buffered under
 * its limit), else a promise that resolves once the stream wants more ('drain') and rejects with
 * what `sendBytes(data)` would throw. `sendBytes` is this, awaited. A symbol, not a name: it is
 * no part of the API mirrored in Python, only the Peer's way to write without a promise per
 * message.
 */
export const sendNow = Symbol("bothways.sendNow");

/** Milliseconds before a client's first reconnection attempt (tcp, ws); doubled after each failure. */
export const BACKOFF_FIRST = 50;
/** The longest wait between two reconnection attempts, in milliseconds. */
export const BACKOFF_CAP = 5000;

/**
 * Connections the kernel holds for a tcp or ws listener before it accepts them (`backlog`); the
 * kernel caps it at `net.core.somaxconn`. Past it, a client's handshake completes on its side
 * only, and what it sends waits for an accept that may never come (tcp.js says more). Mirror of
 * Python's `BACKLOG`.
 */
export const BACKLOG = 4096;

/**
 * `backlog` when it is a whole number >= 1. Mirror of Python's `check_backlog`.
 * @param {unknown} backlog
 * @returns {number}
 * @throws {RangeError} it is not.
 */
export function checkBacklog(backlog) {
  if (typeof backlog !== "number" || !Number.isInteger(backlog) || backlog < 1) {
    throw new RangeError(`backlog must be a whole number >= 1, not ${String(backlog)}`);
  }
  return backlog;
}

/**
 * Milliseconds to wait before reconnection attempt `attempt` (from 0): 50 doubling to 5000.
 * Mirror of Python's `backoff` (in seconds there).
 * @param {number} attempt
 * @returns {number}
 */
export function backoff(attempt) {
  return Math.min(BACKOFF_FIRST * 2 ** Math.min(attempt, 30), BACKOFF_CAP);
}

/**
 * How long a client with `reconnect` waits before trying its first connection again
 * (`backoff(attempt)`, in milliseconds), or null: no `reconnect`, or no time left of its `timeout`
 * (`left` ms). Mirror of Python's `first_retry` (in seconds there).
 * @param {boolean} reconnect
 * @param {number} attempt which retry this is, from 0 (0 after the first failure).
 * @param {number} left milliseconds left of the connect timeout.
 * @returns {number | null}
 */
export function firstRetry(reconnect, attempt, left) {
  const wait = backoff(attempt);
  return reconnect && wait < left ? wait : null;
}

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
 * chunk of a thousand lines costs one push, not a thousand; `popAll()` hands a whole batch over
 * without copying it. Consumed batches are dropped by moving a head index (no `Array.shift`).
 */
export class Inbox {
  #decoder;
  #onError;
  /** @type {any[][]} batches of values; those before #head are consumed */
  #batches = [];
  #head = 0; // the batch being consumed
  #index = 0; // the next value in #batches[#head]
  #size = 0;

  /**
   * @param {{maxLine?: number, onError?: ErrorHandler, binary?: boolean}} [options] `maxLine`:
   *   the decoder's line limit in bytes (default 16 MiB). `onError`: called with each
   *   DecodeError (malformed, too long, truncated); it may throw, and the error is then thrown
   *   by `pop()` in its turn. A truncated final line that still parsed is delivered and logged
   *   with `console.warn`. `binary`: the decoder takes binary frames (see `Decoder`), handed out
   *   as `Binary` values.
   * @throws {RangeError} `maxLine` is below 1.
   */
  constructor({ maxLine = MAX_LINE, onError = logError, binary = false } = {}) {
    this.#decoder = new Decoder({ maxLine, binary });
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
    const batch = this.#batches[this.#head];
    if (batch === undefined) {
      throw new RangeError("pop() from an empty Inbox");
    }
    const value = batch[this.#index++];
    if (this.#index === batch.length) {
      this.#next();
    }
    this.#size--;
    if (value instanceof Thrown) {
      throw value.error;
    }
    return value;
  }

  /**
   * Every undelivered value, oldest first, up to the next error the policy threw (which waits
   * for the following call). Mirror of Python's `pop_all`.
   * @returns {any[]} at least one value; a fresh array the caller may keep.
   * @throws {Error} what the `onError` policy threw, when it is the oldest entry.
   * @throws {RangeError} the inbox is empty.
   */
  popAll() {
    /** @type {any[] | null} */
    let out = null;
    while (this.#head < this.#batches.length) {
      const batch = this.#batches[this.#head]; // (#next may replace the array)
      if (batch.length === 1 && batch[0] instanceof Thrown) {
        if (out !== null) {
          break; // the error's turn comes with the next call
        }
        this.#next();
        this.#size--;
        throw batch[0].error;
      }
      const rest = this.#index === 0 ? batch : batch.slice(this.#index);
      if (out === null) {
        out = rest; // the decoder's array, handed over as it is: no copy
      } else {
        for (let i = 0; i < rest.length; i++) {
          out.push(rest[i]);
        }
      }
      this.#size -= rest.length;
      this.#next();
    }
    if (out === null) {
      throw new RangeError("popAll() from an empty Inbox");
    }
    return out;
  }

  /** Moves to the next batch, forgetting the consumed ones. */
  #next() {
    this.#batches[this.#head] = EMPTY_BATCH; // let the values be collected
    this.#head++;
    this.#index = 0;
    if (this.#head === this.#batches.length) {
      this.#batches = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#batches.length) {
      this.#batches = this.#batches.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * @param {import("../wire.js").Event[]} events
   */
  #take(events) {
    for (const event of events) {
      if (event instanceof Messages) {
        this.#push(event.values);
      } else if (event instanceof Binary) {
        this.#push([event]); // a binary frame: a value among the others, in order
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

/** Stands in for a consumed batch until the array of batches is trimmed. */
const EMPTY_BATCH = /** @type {any[]} */ ([]);

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
   * Every message already received, oldest first: at least one (it waits for that one), as many
   * as are there. Mirror of Python's `receive_many`; stream channels override it to hand over
   * whole decoded chunks, so a consumer of many small messages does one `await` per chunk.
   * @returns {Promise<any[]>}
   * @throws {TransportClosed} the peer has finished cleanly.
   */
  async receiveMany() {
    return [await this.receive()];
  }

  /**
   * Push mode, for a consumer that reacts to each message at once (the RPC Peer): from now on
   * every batch of messages goes to `onMessages` as soon as it is decoded, straight from the
   * stream's 'data' handler, and `onEnd` gets what `receive()` would have thrown at the end,
   * once, after the last batch (also when the channel is closed). Do not call `receive()` after
   * this. Mirror of Python's `deliver_to`.
   * @param {MessagesHandler} _onMessages
   * @param {EndHandler} _onEnd
   * @returns {boolean} false (and nothing done) when the channel does not support it: the
   *   caller then reads with `receive()`/`receiveMany()`. The stream channels of child
   *   processes (`spawn`, `stdio()`) support it.
   */
  deliverTo(_onMessages, _onEnd) {
    return false;
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
 * The async iterator of a channel whose received values wait in an Inbox (what stream channels
 * return from `[Symbol.asyncIterator]()`).
 *
 * A value already in the inbox is handed out at once, as one resolved promise: no read, no
 * promise chain, no batch copied. The channel's `receive()` is called only when the inbox is
 * empty. Values stay in the inbox until they are handed out, so leaving a loop early (`break`)
 * loses nothing: the next `receive()` gets the message after the last one seen.
 * @param {Inbox} inbox the channel's inbox.
 * @param {() => boolean} open whether values may be taken from the inbox now (false once the
 *   channel is closed: `receive()` then says why).
 * @param {() => Promise<any>} receive the channel's `receive()`.
 * @returns {AsyncIterableIterator<any>}
 */
export function inboxIterator(inbox, open, receive) {
  return {
    next() {
      if (inbox.length > 0 && open()) {
        let result;
        try {
          result = more(inbox.pop());
        } catch (error) {
          try {
            result = end(error); // an error the onError policy threw, in its turn
          } catch (thrown) {
            return Promise.reject(thrown);
          }
        }
        return Promise.resolve(result);
      }
      return receive().then(more, end);
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
 * Where a network listener's connections go, between `accept()` and the merged stream: one rule
 * for tcp and ws, in Python and JavaScript (spec/PROTOCOL.md section 7). Sans-I/O: the
 * transport calls it from its event handlers and does the moving. Mirror of Python's `Router`.
 *
 * A connection, once ready (its handshake done), goes to the first of:
 * 1. an `accept()` that is waiting: it is held for it (`arrive` returns false; wake it);
 * 2. the merged stream, once the listener merges (`arrive` returns true): it does from the first
 *    `receive()`, iteration or `send()` on it (`startMerging`), for good;
 * 3. the queue of held connections, oldest first (read ahead a bounded amount, answered, not
 *    delivered): the next `accept()` takes the oldest; `startMerging`, or the last waiting
 *    `accept()` giving up while the listener merges, hands all of them over.
 *
 * A merged connection stays merged: `accept()` only ever takes held ones, so each connection's
 * messages go to one consumer, decided once.
 * @template C
 */
export class Router {
  /** Connections waiting for an `accept()` or for merging, oldest first. @type {C[]} */
  held = [];
  /** Whether the merged stream has been used (`startMerging`). */
  merging = false;
  /** How many `accept()` calls are under way. */
  accepting = 0;

  /**
   * A connection is ready.
   * @param {C} conn
   * @returns {boolean} true: merge it now; false: it is held (wake `accept()`).
   */
  arrive(conn) {
    if (this.merging && this.accepting === 0) {
      return true;
    }
    this.held.push(conn);
    return false;
  }

  /** An `accept()` starts: until `endAccept`, new connections are held for it. */
  beginAccept() {
    this.accepting++;
  }

  /**
   * The oldest held connection, for `accept()`.
   * @returns {C | undefined} undefined when none waits.
   */
  take() {
    return this.held.shift();
  }

  /**
   * An `accept()` is over (it took one, gave up or failed).
   * @returns {C[]} the held connections to merge now (those no other `accept()` waits for, when
   *   the listener merges).
   */
  endAccept() {
    this.accepting--;
    return this.#flush();
  }

  /**
   * The merged stream is used (`receive()`, iteration, `send()`).
   * @returns {C[]} the held connections to merge now (none while an `accept()` waits: it takes
   *   the next one).
   */
  startMerging() {
    this.merging = true;
    return this.#flush();
  }

  /**
   * A held connection went away before anyone took it.
   * @param {C} conn
   */
  forget(conn) {
    const at = this.held.indexOf(conn);
    if (at >= 0) {
      this.held.splice(at, 1);
    }
  }

  /**
   * The listener closes.
   * @returns {C[]} the held connections, for it to close.
   */
  close() {
    return this.held.splice(0);
  }

  /** @returns {C[]} */
  #flush() {
    if (!this.merging || this.accepting > 0) {
      return [];
    }
    return this.close();
  }
}

/**
 * The receiving end of a URL (`listen(url)`).
 *
 * `receive()` and iteration give the messages of every sender, merged in arrival order; `send()`
 * goes to every connected peer (network schemes). `accept()` hands out the next connection as
 * its own duplex Channel instead (a connection taken by `accept()` is no longer merged).
 */
export class Listener extends Channel {
  /**
   * The URL that reaches this listener (with the real port when it was given as 0).
   * @type {string}
   */
  url = "";

  /**
   * The next connection as its own channel (network schemes only).
   * @returns {Promise<Channel>}
   * @throws {TransportError} this kind of listener has no connections.
   */
  async accept() {
    throw new TransportError(`${this.url}: this kind of listener has no connections to accept`);
  }
}

/**
 * A first-in first-out queue taken from a head index: `Array.shift` copies the whole array
 * (on big arrays), this moves an index and trims now and then.
 * @template T
 */
class Fifo {
  /** @type {T[]} */
  #items = [];
  #head = 0;

  /** @returns {number} */
  get length() {
    return this.#items.length - this.#head;
  }

  /** @param {T} item */
  push(item) {
    this.#items.push(item);
  }

  /** @returns {T} the oldest item (check `length` first). */
  shift() {
    const items = this.#items;
    const item = items[this.#head];
    items[this.#head++] = /** @type {any} */ (undefined);
    if (this.#head === items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

/**
 * A FIFO of encoded lines whose `get()` waits; `null` marks the end.
 */
class LineQueue {
  /** @type {Fifo<string | null>} */
  #items = new Fifo();
  /** @type {Fifo<(line: string | null) => void>} */
  #waiters = new Fifo();

  /** @param {string | null} line */
  put(line) {
    if (this.#waiters.length > 0) {
      this.#waiters.shift()(line);
    } else {
      this.#items.push(line);
    }
  }

  /** @returns {Promise<string | null>} */
  get() {
    if (this.#items.length > 0) {
      return Promise.resolve(this.#items.shift());
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
