/**
 * bothways in the browser: one import gives the wire codec, the error tree and `connect()` over
 * the browser's own WebSocket, talking to a bothways listener in Python or Node.
 *
 * It also reaches an MQTT broker through the broker's WebSocket listener: `connect(url)` publishes
 * to `mqtt+ws://host:port/topic` and `listen(url)` subscribes to `mqtt+ws://host:port/topic/#`
 * (`mqtt+wss://` for TLS), the two ends of `transports/mqtt.js`, loaded on first use, as is
 * mqtt.js's browser build (from `MQTT_MODULE`, or the `library` option).
 *
 * ```js
 * import { connect } from "/bothways/browser.js";
 *
 * const channel = await connect("ws://127.0.0.1:8765/feed?token=s3cret");
 * await channel.send({ hello: "from the page" });
 * for await (const message of channel) show(message);
 * ```
 *
 * The wire is the one of `src/bothways/transports/ws.py` (its module docs are normative): `send`
 * writes one JSON text per text frame, without the NDJSON newline, and `sendMany` one frame of
 * NDJSON lines (`encodeMany(values)`); a frame with a newline before its last character is split
 * into its lines (final newline optional, blank lines skipped), each a message, in order; lines
 * are numbered per connection from 1, across frames; a text or line that is not JSON, or a
 * binary frame, goes to `onError` as a DecodeError (`line` = its number) and the connection goes
 * on; `maxLine` (bytes) is the largest frame: a larger one is reported as FrameTooLarge, then the
 * connection is closed (with 4009, "message too big": a browser cannot send 1009). The token
 * travels as `?token=` in the request URL, because browsers cannot set headers.
 *
 * This module also holds the transport's browser-safe core, shared with Node's
 * `transports/ws.js`: `WsChannel` runs over a "link" (one open WebSocket, whichever library),
 * `Frames` numbers and decodes a connection's frames, `MessageQueue` hands their messages out,
 * `batches` cuts `sendMany`'s lines into frames.
 *
 * Browser specifics:
 * - The browser does not say why a handshake failed (wrong token, origin refused, wrong path,
 *   nothing listening all look the same), so `connect` throws one ConnectError naming them all,
 *   and with `reconnect` (which retries the first connection until `timeout` runs out, as in
 *   Node) a refusal is retried like a listener not up yet.
 * - The browser answers the server's keepalive pings itself; it sends none.
 * - The browser's WebSocket has no flow control for reading: messages not yet taken queue up
 *   in memory. Sending waits while more than 1 MiB is buffered (`bufferedAmount`).
 *
 * No `node:*` import: this module loads in browsers unchanged.
 *
 * @module bothways/browser
 */

import { ConnectError, DecodeError, FrameTooLarge, TransportClosed, TransportError } from "./errors.js";
import { Channel, backoff, firstRetry, inboxIterator, logError } from "./transports/base.js";
import { Address, parse } from "./urls.js";
import { Decoder, MAX_LINE, Messages, decode, encode, encodeMany } from "./wire.js";

export * from "./errors.js";
export * from "./wire.js";
export { Address, parse } from "./urls.js";

/** Milliseconds between keepalive pings (the Node side; browsers only answer pings). */
export const PING_INTERVAL = 20_000;
/** Milliseconds the opening handshake may take, and the peer's confirmation of a client's `close()`. */
export const TIMEOUT = 10_000;
/**
 * Milliseconds a `close()` waits for the peer's close frame when there is nothing to confirm (no
 * message sent, or the connection's loss already reported), and a listener's connections.
 */
export const CLOSE_TIMEOUT = 2000;

/** Bytes a link may buffer for sending before `send` waits. */
export const HIGH_WATER = 1024 * 1024;
/** Messages a channel queues before it stops reading the socket (Node; browsers cannot). */
export const READ_AHEAD = 1024;
// A browser's close() takes only 1000 and 3000-4999: it cannot say 1009 (message too big).
const TOO_BIG_BROWSER = 4009;

/** What `Frames.take` returns for a message that was reported instead of delivered. */
export const SKIP = Symbol("skip");

/**
 * A link: one open WebSocket, whatever the library. `transports/ws.js` makes them from `ws`
 * sockets, this module from the browser's.
 * @typedef {object} Link
 * @property {(sink: Sink) => void} attach starts delivering events to `sink` (those that came
 *   before are delivered first) and resumes reading.
 * @property {(text: string, count?: number) => Promise<void> | undefined} send writes one text
 *   frame holding `count` messages (default 1); returns a promise when the caller must wait for
 *   the buffer to drain.
 * @property {() => boolean} isOpen whether frames can be sent.
 * @property {number} sent how many messages were sent on it.
 * @property {boolean} closeReceived whether the peer's close frame came (known once closed): a
 *   connection that ended without one (dropped, reset) confirmed nothing of what it carried.
 * @property {(code: number) => Promise<void>} close starts the closing handshake; resolves once
 *   the connection is closed.
 * @property {(timeout: number) => Promise<"confirmed" | "timeout" | "reset">} confirm closes
 *   with 1000 (if still open) and waits at most `timeout` ms for the peer's close frame, which
 *   it sends once it has read every frame before ours (what still comes meanwhile is dropped):
 *   "confirmed" when it came (also before the call), "timeout", or "reset" (closed without it).
 * @property {() => void} pause stops reading the socket (a no-op in browsers).
 * @property {() => void} resume reads it again.
 * @property {Promise<void>} closed resolves once the connection is closed (after `sink.closed`).
 */

/**
 * Where a link delivers its events.
 * @typedef {object} Sink
 * @property {(data: any, isBinary: boolean) => void} message a text (string) or binary frame.
 * @property {() => void} tooLarge a message over the limit came; the link closes the connection
 *   (1009; 4009 in browsers).
 * @property {(why: string) => void} closed the connection is closed; `why` says how.
 */

const REFUSED = new WeakSet();

/**
 * A ConnectError for a handshake the server answered with a refusal (not worth retrying).
 * @param {string} url the URL without token.
 * @param {number} status the HTTP status.
 * @param {string} body the server's one-line reason.
 * @returns {ConnectError}
 */
export function refusal(url, status, body) {
  const text = body.trim();
  const error = new ConnectError(text ? `refused: ${text} (HTTP ${status})` : `refused (HTTP ${status})`, { url });
  REFUSED.add(error);
  return error;
}

/**
 * Whether `error` is final for a client that reconnects: a refusal made by `refusal` (or, in a
 * browser, a URL its WebSocket rejects outright). Mirror of Python's `_refused`.
 * @param {unknown} error
 * @returns {boolean}
 */
export function refused(error) {
  return typeof error === "object" && error !== null && REFUSED.has(error);
}

/**
 * A FrameTooLarge for message `number`, worded for a message transport.
 * @param {number} number
 * @param {number} limit
 * @returns {FrameTooLarge}
 */
function tooLargeError(number, limit) {
  const error = new FrameTooLarge({ line: number, limit });
  // FrameTooLarge's own text is about stream lines ("skipped up to the next newline").
  error.reason = `message is larger than the limit of ${limit} bytes; the connection was closed`;
  error.message = `line ${number}: ${error.reason}`;
  return error;
}

/**
 * `sendMany`'s frames, each with how many messages it holds: one frame of the values' NDJSON
 * lines (`encodeMany`), or none for no values. Lines of more than `limit` bytes in all are cut
 * into several frames at line ends, each at most `limit` bytes without its last newline (a line
 * longer than that goes alone: the peer refuses it, as it would from `send`). Mirror of Python's
 * `_batches`.
 * @param {Iterable<unknown>} values
 * @param {number} limit bytes.
 * @returns {[string, number][]}
 * @throws {import("./errors.js").EncodeError} a value cannot cross (then nothing is sent).
 */
export function batches(values, limit) {
  const list = Array.isArray(values) ? values : [...values];
  const text = encodeMany(list);
  if (text.length * 3 <= limit || utf8Length(text) <= limit) {
    return list.length === 0 ? [] : [[text, list.length]];
  }
  const bytes = utf8.encode(text);
  /** @type {[string, number][]} */
  const frames = [];
  const last = bytes.length - 1; // (the last newline)
  for (let start = 0; start < last; ) {
    let end = last;
    if (last - start > limit) {
      end = bytes.lastIndexOf(NEWLINE, start + limit);
      if (end < start) end = bytes.indexOf(NEWLINE, start + limit);
    }
    const piece = utf8Text.decode(bytes.subarray(start, end));
    frames.push([piece, newlines(piece) + 1]);
    start = end + 1;
  }
  return frames;
}

/**
 * @param {string} text
 * @returns {number} how many newlines it holds.
 */
function newlines(text) {
  let count = 0;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) count++;
  return count;
}

/**
 * Numbers one connection's lines and decodes them; bad ones go to `onError`. Mirror of Python's
 * `_Frames`.
 *
 * A frame is one or more lines: one with no newline but at its end is one message, decoded as
 * such; one with more goes through a fresh wire Decoder, its values and errors straight to the
 * queue. The lines are numbered per connection from 1, across frames (a one-message frame is one
 * line).
 */
export class Frames {
  /** How many lines have come. */
  count = 0;

  /**
   * @param {number} limit the size limit (for the FrameTooLarge report).
   * @param {import("./transports/base.js").ErrorHandler} [onError]
   */
  constructor(limit, onError) {
    /** @type {number} */
    this.limit = limit;
    /** @type {import("./transports/base.js").ErrorHandler} */
    this.onError = onError ?? logError;
  }

  /**
   * @param {any} data a string (text frame) or bytes (binary frame).
   * @param {boolean} isBinary
   * @param {MessageQueue} queue where the values of a frame of several lines go, with the errors
   *   `onError` throws among them.
   * @returns {any} the value, or SKIP once it has been reported (or, for a frame of several
   *   lines, once its values are in `queue`).
   * @throws {Error} what `onError` throws (for a one-message frame).
   */
  take(data, isBinary, queue) {
    let error;
    if (!isBinary) {
      const newline = data.indexOf("\n");
      if (newline >= 0 && newline < data.length - 1) {
        this.#lines(data, queue);
        return SKIP;
      }
      const number = ++this.count;
      try {
        return decode(data);
      } catch (caught) {
        if (!(caught instanceof DecodeError)) throw caught;
        error = new DecodeError(caught.reason, { line: number, column: caught.column, excerpt: caught.excerpt });
      }
    } else {
      const number = ++this.count;
      const size = data.byteLength ?? data.length;
      error = new DecodeError(`a binary frame of ${size} bytes (messages are JSON in text frames)`, { line: number });
    }
    this.onError(error);
    return SKIP;
  }

  /**
   * A frame of several lines, decoded as NDJSON whose last newline is optional. (No line can
   * pass the limit: the frame itself is refused when it does.)
   * @param {string} text
   * @param {MessageQueue} queue
   */
  #lines(text, queue) {
    const decoder = new Decoder({ maxLine: this.limit });
    const events = decoder.feed(text);
    if (decoder.buffered > 0) events.push(...decoder.feed("\n"));
    const before = this.count;
    this.count += decoder.line;
    for (const event of events) {
      if (event instanceof Messages) {
        for (const value of event.values) queue.push(value);
        continue;
      }
      const { reason, line, column, excerpt } = /** @type {any} */ (event).error;
      try {
        this.onError(new DecodeError(reason, { line: before + line, column, excerpt }));
      } catch (error) {
        queue.pushError(error); // its turn comes after the values before it
      }
    }
  }

  /**
   * Reports the message that made the connection close (1009; 4009 in browsers).
   * @throws {Error} what `onError` throws.
   */
  tooLarge() {
    this.onError(tooLargeError(this.count + 1, this.limit));
  }
}

/** An error thrown by the `onError` policy, waiting in the queue for its turn. */
class Thrown {
  /** @param {unknown} error */
  constructor(error) {
    this.error = error;
  }
}

/**
 * What a link calls as frames arrive: each decoded through `frames` into `queue`, where an error
 * the `onError` policy throws takes its turn among the messages. Shared by the browser channel
 * and the Node listener's merged connections.
 * @param {Frames} frames
 * @param {MessageQueue} queue
 * @param {(why: string) => void} closed
 */
export function frameHandlers(frames, queue, closed) {
  return {
    /**
     * @param {any} data
     * @param {boolean} isBinary
     */
    message(data, isBinary) {
      let value;
      try {
        value = frames.take(data, isBinary, queue);
      } catch (error) {
        queue.pushError(error);
        return;
      }
      if (value !== SKIP) queue.push(value);
    },
    tooLarge() {
      try {
        frames.tooLarge();
      } catch (error) {
        queue.pushError(error);
      }
    },
    closed,
  };
}

/**
 * Received values waiting to be taken, with the receivers waiting for them. Above `high` values
 * it calls `onHigh` (pause the sources), and `onLow` once back to a quarter of that.
 */
export class MessageQueue {
  /** @type {any[]} */
  #items = [];
  #head = 0;
  /** @type {{resolve: (value: any) => void, reject: (error: unknown) => void}[]} */
  #waiters = [];
  /** @type {unknown} */
  #end = null;
  #high;
  #onHigh;
  #onLow;
  #paused = false;
  #told = false;

  /**
   * @param {{high?: number, onHigh?: () => void, onLow?: () => void}} [options]
   */
  constructor({ high = READ_AHEAD, onHigh = () => {}, onLow = () => {} } = {}) {
    this.#high = high;
    this.#onHigh = onHigh;
    this.#onLow = onLow;
  }

  /** @returns {number} values waiting. */
  get length() {
    return this.#items.length - this.#head;
  }

  /** @returns {boolean} whether a receiver has been handed the error that ended the queue. */
  get told() {
    return this.#told;
  }

  /**
   * Adds a value (it goes straight to a waiting receiver if there is one).
   * @param {any} value
   */
  push(value) {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      if (value instanceof Thrown) waiter.reject(value.error);
      else waiter.resolve(value);
      return;
    }
    this.#items.push(value);
    if (!this.#paused && this.length >= this.#high) {
      this.#paused = true;
      this.#onHigh();
    }
  }

  /**
   * Adds an error, thrown by `receive()` in its turn.
   * @param {unknown} error
   */
  pushError(error) {
    this.push(new Thrown(error));
  }

  /**
   * Ends the queue: once the values are taken, `receive()` throws `error`. The first call wins.
   * @param {unknown} error
   */
  end(error) {
    if (this.#end !== null) return;
    this.#end = error;
    for (const waiter of this.#waiters.splice(0)) {
      this.#told = true;
      waiter.reject(error);
    }
  }

  /**
   * The oldest value, there now (check `length` first): what lets `inboxIterator` hand it out
   * as one resolved promise.
   * @returns {any}
   * @throws {unknown} an error pushed with `pushError`, in its turn.
   * @throws {RangeError} nothing waits.
   */
  pop() {
    if (this.#head >= this.#items.length) throw new RangeError("pop() from an empty MessageQueue");
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.#paused && this.length <= this.#high >> 2) {
      this.#paused = false;
      this.#onLow();
    }
    if (item instanceof Thrown) throw item.error;
    return item;
  }

  /**
   * The oldest value, waiting for one.
   * @returns {Promise<any>}
   */
  receive() {
    if (this.#head < this.#items.length) {
      try {
        return Promise.resolve(this.pop());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (this.#end !== null) {
      this.#told = true;
      return Promise.reject(this.#end);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }
}

/**
 * Waits `ms` milliseconds, or less if `signal` aborts.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * One WebSocket connection as a channel: what `connect` returns, in the browser and in Node,
 * and what a Node listener's `accept()` hands out.
 *
 * `send` writes one text frame (waiting while the socket's buffer is full), `sendMany` one frame
 * of many messages; `receive` and iteration give the peer's messages; `close` closes with 1000.
 * With `redial`, a lost connection is dialled again (back-off from 50 ms, doubling up to 5 s)
 * until it works or `close()` is called: `receive` goes on, `send` waits; messages in flight may
 * be lost (nothing is sent twice; `close()` says so, below); a refusal (HTTP 403/404) ends the
 * channel with that ConnectError.
 *
 * A client's `close()` (one made with `timeout`) loses nothing silently: it resolves once the
 * peer's close frame has come, which the peer sends after it has read every message before our
 * close frame (the closing handshake is the confirmation). Without it within `timeout` ms, or
 * when the connection fails first (close code 1006), it rejects with TransportClosed, as tcp's
 * `close()` does: `<url>: close: the peer did not confirm within <s> s that it read what we sent
 * (<n> messages on this connection); it may be lost`, or `<url>: close: the connection was reset
 * before the peer confirmed it read what we sent (<n> messages on this connection); it may be
 * lost`. Nothing sent on the connection, or its loss already reported by `send`/`receive` (or,
 * reconnecting, the connection replaced): nothing to confirm on it. With `redial` too, a
 * connection that ended without the peer's close frame (dropped, reset: a clean close by the
 * peer confirms what it read) confirmed nothing of what it carried, and nothing is sent again:
 * once the current connection is confirmed (its own error comes first), `close()` rejects with
 * `<url>: close: <n> messages were sent on connections that broke before the peer confirmed
 * them (nothing is sent twice); they may be lost`, `<n>` counting the messages sent on those
 * connections. In a browser, a close that is not clean (1006) is all it can see; its own close
 * timeout may come before ours.
 */
export class WsChannel extends Channel {
  #url;
  /** @type {Link} */
  #link;
  #queue;
  #limit;
  #onError;
  #redial;
  #closed = false;
  /** @type {Promise<void> | null} */
  #closing = null;
  /** @type {Promise<void> | null} set while reconnecting */
  #reconnecting = null;
  /** @type {unknown} a refusal that ended the reconnection */
  #failure = null;
  /** @type {number | null} ms close() waits for the peer's confirmation; null: no check */
  #timeout;
  #spent = false; // the current link's loss has been reported (or it is being replaced)
  #brokenSent = 0; // messages sent on links that ended without a close frame (redial): unconfirmed
  #stop = new AbortController();
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => void this.close();

  /**
   * @param {Link} link the open connection.
   * @param {{url: string, maxLine?: number, onError?: import("./transports/base.js").ErrorHandler,
   *   redial?: (() => Promise<Link>) | null, signal?: AbortSignal, timeout?: number | null}}
   *   options `url`: shown in messages (never with the token); `redial`: opens a new link, for
   *   reconnecting; `signal`: aborting it closes the channel; `timeout`: ms `close()` waits for
   *   the peer to confirm what was sent (clients), else it rejects; null: no check (a
   *   listener's channels).
   */
  constructor(link, { url, maxLine = MAX_LINE, onError, redial = null, signal, timeout = null }) {
    super();
    this.#url = url;
    this.#timeout = timeout;
    this.#limit = maxLine;
    this.#onError = onError ?? logError;
    this.#redial = redial;
    this.#queue = new MessageQueue({ onHigh: () => this.#link.pause(), onLow: () => this.#link.resume() });
    this.#link = link;
    this.#attach(link);
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * The URL of the other side (without the token).
   * @returns {string}
   */
  get url() {
    return this.#url;
  }

  /** @param {Link} link */
  #attach(link) {
    this.#link = link;
    this.#spent = false;
    const frames = new Frames(this.#limit, this.#onError);
    link.attach(frameHandlers(frames, this.#queue, (why) => this.#lost(link, why)));
  }

  /**
   * @param {Link} link
   * @param {string} why
   */
  #lost(link, why) {
    if (link !== this.#link) return;
    if (this.#closed) {
      this.#queue.end(new TransportClosed(`${this.#url}: closed`));
    } else if (this.#redial === null) {
      this.#queue.end(new TransportClosed(`${this.#url}: connection closed (${why})`));
    } else {
      this.#spent = true; // what was in flight may be lost (see the class doc)
      if (!link.closeReceived) {
        this.#brokenSent += link.sent; // no close frame confirmed them, nobody is told: close() says it
      }
      this.#reconnecting = this.#reconnect();
    }
  }

  async #reconnect() {
    const redial = /** @type {() => Promise<Link>} */ (this.#redial);
    let attempt = 0;
    for (;;) {
      await sleep(backoff(attempt), this.#stop.signal);
      if (this.#closed) return;
      let link;
      try {
        link = await redial();
      } catch (error) {
        if (refused(error)) {
          this.#failure = error;
          this.#queue.end(error);
          return;
        }
        attempt++;
        continue;
      }
      if (this.#closed) {
        await link.close(1000);
        return;
      }
      this.#reconnecting = null;
      this.#attach(link);
      return;
    }
  }

  /**
   * Sends one message; waits while the socket's buffer is full (and, reconnecting, while away).
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("./errors.js").EncodeError} the value cannot cross.
   * @throws {TransportClosed} the channel is closed, or the connection is (without reconnect).
   * @throws {ConnectError} reconnecting was refused.
   */
  async send(value) {
    await this.#send(encode(value).slice(0, -1), 1);
  }

  /**
   * Sends the messages in one text frame of NDJSON lines (`encodeMany(values)`; several frames
   * when they pass `maxLine` bytes, none for no values); waits as `send` does. Mirror of
   * Python's `send_many`.
   * @param {Iterable<unknown>} values
   * @returns {Promise<void>}
   * @throws {import("./errors.js").EncodeError} a value cannot cross (nothing is sent).
   * @throws {TransportClosed} the channel is closed, or the connection is (without reconnect).
   * @throws {ConnectError} reconnecting was refused.
   */
  async sendMany(values) {
    for (const [text, count] of batches(values, this.#limit)) await this.#send(text, count);
  }

  /**
   * @param {string} text one frame.
   * @param {number} count the messages it holds.
   */
  async #send(text, count) {
    for (;;) {
      if (this.#closed) throw new TransportClosed(`${this.#url}: closed`);
      if (this.#failure !== null) throw this.#failure;
      if (this.#reconnecting !== null) {
        await this.#reconnecting;
        continue;
      }
      const link = this.#link;
      if (!link.isOpen()) {
        if (this.#redial === null) {
          this.#spent = true; // reported here
          throw new TransportClosed(`${this.#url}: connection closed`);
        }
        await link.closed; // then #lost has started the reconnection
        continue;
      }
      const wait = link.send(text, count);
      if (wait !== undefined) {
        try {
          await wait;
        } catch (error) {
          if (link === this.#link) this.#spent = true;
          throw new TransportClosed(`${this.#url}: connection closed while sending`, { cause: error });
        }
      }
      return;
    }
  }

  /**
   * The next message.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the channel or the connection is closed.
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  receive() {
    if (this.#closed) return Promise.reject(new TransportClosed(`${this.#url}: closed`));
    return this.#queue.receive();
  }

  /**
   * `for await (const message of channel)`: a message already received is handed out as one
   * resolved promise (no promise chain: it counts at a million messages).
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    return inboxIterator(
      this.#queue,
      () => !this.#closed,
      () => this.receive(),
    );
  }

  /**
   * Closes the connection (code 1000) and stops any reconnection. A client's resolves once the
   * peer has confirmed that it read every message sent (its close frame; see the class doc).
   * Safe to call twice: a call while the first waits has its outcome, a later one resolves.
   * @returns {Promise<void>}
   * @throws {TransportClosed} a client's peer did not confirm within `timeout`, or the
   *   connection failed first: what was sent may be lost (the message says how many messages);
   *   or, reconnecting, messages were sent on connections that broke (never confirmed).
   */
  close() {
    if (this.#closing === null) {
      this.#closed = true;
      this.#stop.abort();
      this.#signal?.removeEventListener("abort", this.#onAbort);
      const told = this.#redial === null && this.#queue.told; // receive() reported the loss
      this.#queue.end(new TransportClosed(`${this.#url}: closed`));
      const closing = this.#finish(this.#spent || told);
      this.#closing = closing;
      const settled = () => {
        this.#closing = Promise.resolve();
      };
      closing.then(settled, settled);
    }
    return this.#closing;
  }

  /**
   * @param {boolean} spent nothing to confirm: the link's loss was reported.
   * @returns {Promise<void>}
   */
  async #finish(spent) {
    const link = this.#link;
    const timeout = this.#timeout;
    if (timeout === null) {
      await link.close(1000);
      return;
    }
    // Something to confirm: the peer reads every message before our close frame first, so it
    // gets the whole `timeout` (as in Python); nothing to confirm: CLOSE_TIMEOUT at most.
    const confirming = !spent && link.sent > 0;
    const within = confirming ? timeout : Math.min(timeout, CLOSE_TIMEOUT);
    const outcome = await link.confirm(within);
    if (outcome !== "confirmed" && confirming) {
      const what = `what we sent (${link.sent} messages on this connection); it may be lost`;
      throw new TransportClosed(
        outcome === "timeout"
          ? `${this.#url}: close: the peer did not confirm within ${within / 1000} s that it read ${what}`
          : `${this.#url}: close: the connection was reset before the peer confirmed it read ${what}`,
      );
    }
    if (this.#brokenSent > 0) {
      throw new TransportClosed(
        `${this.#url}: close: ${this.#brokenSent} messages were sent on connections that broke before the peer ` +
          "confirmed them (nothing is sent twice); they may be lost",
      );
    }
  }
}

/**
 * The address as shown: never with the token.
 * @param {Address} address
 * @returns {string}
 */
export function publicUrl(address) {
  const params = { ...address.params };
  delete params.token;
  return new Address(address.scheme, { host: address.host, port: address.port, path: address.path, params }).url;
}

/**
 * The URL of the handshake request: the address with `?token=` when there is one.
 * @param {Address} address
 * @param {string | undefined | null} token
 * @returns {string}
 */
export function requestUrl(address, token) {
  const host = /** @type {string} */ (address.host);
  const url = `ws://${host.includes(":") ? `[${host}]` : host}:${address.port}${address.path}`;
  return token ? `${url}?token=${encodeURIComponent(token)}` : url;
}

/**
 * Throws a TypeError naming options nobody knows.
 * @param {Record<string, unknown>} rest
 * @param {string} where
 * @throws {TypeError}
 */
export function refuseUnknown(rest, where) {
  const names = Object.keys(rest);
  if (names.length > 0) {
    throw new TypeError(`${where}() got unknown option${names.length > 1 ? "s" : ""}: ${names.join(", ")}`);
  }
}

/**
 * Checks the options every WebSocket side shares.
 * @param {{maxLine: number, timeout?: number, token?: string | null}} options
 * @throws {RangeError | TypeError}
 */
export function checkOptions({ maxLine, timeout, token }) {
  if (!Number.isInteger(maxLine) || maxLine < 1) {
    throw new RangeError(`maxLine must be a whole number of bytes >= 1, got ${maxLine}`);
  }
  if (timeout !== undefined && timeout !== null && !(timeout > 0)) {
    throw new RangeError(`timeout must be a number of milliseconds > 0, got ${timeout}`);
  }
  if (token !== undefined && token !== null && (typeof token !== "string" || token === "")) {
    throw new TypeError("token must be a non-empty string");
  }
}

/**
 * A link over the browser's WebSocket.
 * @implements {Link}
 */
class BrowserLink {
  #ws;
  /** @type {Sink | null} */
  #sink = null;
  /** @type {[string, any, boolean?][]} events that came before attach() */
  #early = [];
  #tooLarge = false;
  #dropping = false; // closing: what still comes is dropped
  #code = 1006; // the close code, once closed
  /** @type {Promise<void>} */
  closed;
  /** Messages sent on it. @type {number} */
  sent = 0;

  /** @returns {boolean} whether the peer's close frame came (the browser says 1006 when not) */
  get closeReceived() {
    return this.#code !== 1006;
  }

  /**
   * @param {WebSocket} ws an open WebSocket.
   * @param {number} maxLine
   */
  constructor(ws, maxLine) {
    this.#ws = ws;
    /** @type {() => void} */
    let done = () => {};
    this.closed = new Promise((resolve) => (done = resolve));
    ws.onmessage = (event) => {
      if (this.#tooLarge || this.#dropping) return;
      const data = event.data;
      if (typeof data === "string") {
        // A string of n UTF-16 units holds n to 3n bytes of UTF-8: count only when it may matter.
        if (data.length * 3 > maxLine && utf8Length(data) > maxLine) {
          this.#tooLarge = true;
          this.#emit("tooLarge", null);
          ws.close(TOO_BIG_BROWSER, "message too big");
          return;
        }
        this.#emit("message", data, false);
      } else {
        this.#emit("message", data, true);
      }
    };
    ws.onerror = () => {}; // a close event follows, with the code
    ws.onclose = (event) => {
      this.#code = event.code;
      this.#emit("closed", `code ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
      done();
    };
  }

  /**
   * @param {string} kind
   * @param {any} data
   * @param {boolean} [isBinary]
   */
  #emit(kind, data, isBinary) {
    const sink = this.#sink;
    if (sink === null) {
      this.#early.push([kind, data, isBinary]);
    } else if (kind === "message") {
      sink.message(data, /** @type {boolean} */ (isBinary));
    } else if (kind === "tooLarge") {
      sink.tooLarge();
    } else {
      sink.closed(data);
    }
  }

  /** @param {Sink} sink */
  attach(sink) {
    this.#sink = sink;
    for (const [kind, data, isBinary] of this.#early.splice(0)) this.#emit(kind, data, isBinary);
  }

  /**
   * @param {string} text
   * @param {number} [count] the messages it holds.
   * @returns {Promise<void> | undefined}
   */
  send(text, count = 1) {
    const ws = this.#ws;
    this.sent += count;
    ws.send(text);
    return ws.bufferedAmount > HIGH_WATER ? drained(ws) : undefined;
  }

  isOpen() {
    return this.#ws.readyState === 1;
  }

  /**
   * @param {number} code
   * @returns {Promise<void>}
   */
  close(code) {
    if (this.#ws.readyState <= 1) this.#ws.close(code);
    return this.closed;
  }

  /**
   * See `Link.confirm`: the browser cannot end the connection at the timeout, only stop waiting
   * (it closes in its own time), and all it tells of a failed close is the code 1006.
   * @param {number} timeout ms.
   * @returns {Promise<"confirmed" | "timeout" | "reset">}
   */
  confirm(timeout) {
    const ws = this.#ws;
    this.#dropping = true;
    if (ws.readyState <= 1) ws.close(1000);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), timeout);
      this.closed.then(() => {
        clearTimeout(timer);
        resolve(this.#code === 1006 ? "reset" : "confirmed");
      });
    });
  }

  pause() {}

  resume() {}
}

/**
 * Resolves once the socket's send buffer is back under half the high-water mark (polled: the
 * browser's WebSocket has no 'drain' event), or once it is closed.
 * @param {WebSocket} ws
 * @returns {Promise<void>}
 */
function drained(ws) {
  return new Promise((resolve) => {
    const check = () => {
      if (ws.bufferedAmount <= HIGH_WATER / 2 || ws.readyState > 1) resolve();
      else setTimeout(check, 5);
    };
    setTimeout(check, 5);
  });
}

const utf8 = new TextEncoder();
const utf8Text = new TextDecoder();
const NEWLINE = 0x0a;

/**
 * @param {string} text
 * @returns {number} its length in UTF-8 bytes.
 */
function utf8Length(text) {
  return utf8.encode(text).length;
}

/**
 * Opens a browser WebSocket.
 * @param {string} target the request URL (with the token).
 * @param {string} url the URL for messages (without it).
 * @param {{timeout: number, maxLine: number, signal?: AbortSignal}} options
 * @returns {Promise<BrowserLink>}
 */
function openBrowser(target, url, { timeout, maxLine, signal }) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TransportClosed(`${url}: aborted`, { cause: signal.reason }));
      return;
    }
    let ws;
    try {
      ws = new WebSocket(target);
    } catch (error) {
      const failure = new ConnectError(`cannot open a WebSocket: ${/** @type {Error} */ (error).message}`, { url, cause: error });
      REFUSED.add(failure); // a bad URL or a blocked port: trying again would not help
      reject(failure);
      return;
    }
    const socket = ws;
    /** @param {unknown} error */
    const fail = (error) => {
      settle();
      socket.onclose = null;
      if (socket.readyState <= 1) socket.close();
      reject(error);
    };
    const onAbort = () => fail(new TransportClosed(`${url}: aborted`, { cause: signal?.reason }));
    const timer = setTimeout(() => fail(new ConnectError(`no WebSocket handshake within ${timeout / 1000} s`, { url })), timeout);
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.onerror = () => {}; // the close event that follows says more
    socket.onclose = (event) =>
      fail(
        new ConnectError(
          "refused or unreachable (close code " +
            `${event.code}; the browser does not say which: a wrong token, a refused origin, a wrong ` +
            "path, or nothing listening)",
          { url },
        ),
      );
    socket.onopen = () => {
      settle();
      resolve(new BrowserLink(socket, maxLine));
    };
  });
}

/**
 * Where a page loads mqtt.js's browser build from, for `mqtt+ws://` and `mqtt+wss://` (the
 * `library` option overrides it: another URL, resolved against the page, or the module itself).
 * It is imported on first use only: a page that never uses MQTT never loads it.
 */
export const MQTT_MODULE = "/vendor/mqtt/mqtt.esm.js";
const MQTT_SCHEMES = ["mqtt+ws", "mqtt+wss"];

/**
 * An mqtt channel through the broker's WebSocket listener (transports/mqtt.js, loaded on first
 * use, over mqtt.js's browser build).
 * @param {Address} address
 * @param {"connect" | "listen"} side
 * @param {Record<string, any>} options
 * @returns {Promise<import("./transports/mqtt.js").MqttChannel>}
 */
async function mqttChannel(address, side, options) {
  const transport = await import("./transports/mqtt.js");
  const { library = MQTT_MODULE, ...rest } = { ...address.options(side), ...options };
  const base = globalThis.document?.baseURI ?? import.meta.url; // (a URL is the page's)
  const from = typeof library === "string" ? new URL(library, base).href : library;
  return transport[side](address, { ...rest, library: from });
}

/**
 * Connects to a bothways WebSocket listener from a web page, or publishes to an MQTT broker
 * through its WebSocket listener (`mqtt+ws://host:port/topic`, `mqtt+wss://`: the publishing end
 * of transports/mqtt.js, whose options it takes; mqtt.js's browser build is imported from
 * `library`, default `MQTT_MODULE`).
 *
 * @param {string | Address} url `ws://host:port/path`, with `?token=` when the listener has one;
 *   or `mqtt+ws://host:port/topic`.
 * @param {{token?: string, timeout?: number, reconnect?: boolean, maxLine?: number,
 *   onError?: import("./transports/base.js").ErrorHandler, signal?: AbortSignal}
 *   | import("./transports/mqtt.js").MqttOptions} [options]
 *   override the URL's query options: `timeout` in milliseconds (default 10 s), `reconnect`
 *   (default false: dial again whenever the connection is lost, and retry the first dial, with
 *   back-off from 50 ms doubling up to 5 s, until `timeout` runs out), `maxLine` in bytes
 *   (default 16 MiB), `onError` for bad messages (default: `console.warn` and go on), `signal`
 *   to close the channel (or stop connecting).
 * @returns {Promise<WsChannel | import("./transports/mqtt.js").MqttChannel>}
 * @throws {import("./errors.js").UrlError} the URL cannot be used.
 * @throws {ConnectError} the listener cannot be reached or refused the handshake (with
 *   `reconnect`: the last attempt's error, once `timeout` has run out); the broker cannot be
 *   reached or refused the login.
 * @throws {TransportClosed} the signal was aborted.
 * @throws {TypeError} an unknown option.
 */
export async function connect(url, options = {}) {
  const address = url instanceof Address ? url : parse(url);
  if (MQTT_SCHEMES.includes(address.scheme)) {
    return mqttChannel(address, "connect", options);
  }
  if (address.scheme !== "ws") {
    const only = "ws://, mqtt+ws:// and mqtt+wss:// URLs only";
    throw new TransportError(`${address.url}: the browser module connects to ${only}`);
  }
  const {
    token,
    timeout = TIMEOUT,
    reconnect = false,
    maxLine = MAX_LINE,
    onError,
    signal,
    ...rest
  } = { ...address.options(), ...options };
  refuseUnknown(rest, "connect");
  checkOptions({ maxLine, timeout, token });
  const shown = publicUrl(address);
  const target = requestUrl(address, token);
  const dial = () => openBrowser(target, shown, { timeout, maxLine, signal });
  const deadline = performance.now() + timeout;
  // With reconnect, a listener not up yet is waited for, `timeout` ms at most.
  for (let attempt = 0; ; attempt++) {
    try {
      const link = await dial();
      return new WsChannel(link, { url: shown, maxLine, onError, redial: reconnect ? dial : null, signal });
    } catch (error) {
      const retry = error instanceof ConnectError && !refused(error);
      const wait = retry ? firstRetry(reconnect, attempt, deadline - performance.now()) : null;
      if (wait === null) throw error;
      await sleep(wait, signal);
      if (signal?.aborted) throw new TransportClosed(`${shown}: aborted`, { cause: signal.reason });
    }
  }
}

/**
 * Subscribes to a topic (or filter) of an MQTT broker through its WebSocket listener, from a web
 * page: the subscribing end of transports/mqtt.js (a page cannot serve connections, so mqtt is
 * the only scheme it listens on). mqtt.js's browser build is imported from `library` (default
 * `MQTT_MODULE`).
 *
 * ```js
 * const inbox = await listen("mqtt+ws://127.0.0.1:9001/sensors/#");
 * for await (const reading of inbox) show(reading);
 * ```
 *
 * @param {string | Address} url `mqtt+ws://host:port/topic/#` or `mqtt+wss://`.
 * @param {import("./transports/mqtt.js").MqttOptions} [options] override the URL's options.
 * @returns {Promise<import("./transports/mqtt.js").MqttChannel>}
 * @throws {import("./errors.js").UrlError} the URL cannot be used.
 * @throws {TransportError} not an mqtt+ws:// or mqtt+wss:// URL.
 * @throws {ConnectError} the broker cannot be reached, or refused the login or the subscription.
 * @throws {TypeError} an unknown option.
 */
export async function listen(url, options = {}) {
  const address = url instanceof Address ? url : parse(url);
  if (!MQTT_SCHEMES.includes(address.scheme)) {
    throw new TransportError(
      `${address.url}: the browser module listens on mqtt+ws:// and mqtt+wss:// URLs only ` +
        "(a page cannot serve connections)",
    );
  }
  return mqttChannel(address, "listen", options);
}
