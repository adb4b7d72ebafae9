/**
 * The telemetry app's readings, and what delivers them. Mirrors `src/bothways/telemetry/readings.py`
 * and the Outbox, HttpPoster and Rejected of `sensor.py`, name for name (camelCase here, times in
 * milliseconds); spec/vectors/readings.json pins `toReading` in both languages.
 *
 * A reading is `{sensor: string, seq: number, t: number, celsius: number}` plus any other fields
 * the sensor sent (kept, after the four, in their order). `toReading` turns a decoded message
 * into one or throws InvalidReading saying why, in the same words as Python:
 *
 * - a bare number (the tutorial's sensors write one per line) becomes a reading of the sensor
 *   named after its source, at the time it was received, numbered by that time in microseconds
 *   (one more than the last number given to the source when that is not larger), so that
 *   numbers from a listener that was restarted are new ones;
 * - an object must have `sensor` (a non-empty string), `seq` (an integer from 0 to 2**53-1: the
 *   sensor's own count, which makes a resend harmless) and `celsius` (a finite number); `t`
 *   (seconds since the epoch, a finite number) defaults to the time received;
 * - anything else is not a reading.
 *
 * `toReading` is sans-I/O: no clock; the caller passes `now`.
 *
 * Delivering readings (`Outbox`, `Sender`, `HttpPoster`, `Rejected`): the sensor's buffer and
 * send loop (bin/sensor.mjs; bin/listen.mjs's `--to`). A sensor that loses its channel keeps
 * its readings, reconnects and sends them once the channel is back. The Outbox is sans-I/O; the
 * Sender does I/O through `connect` (or `fetch` for `http://`), with no `node:*` import.
 *
 * @module bothways/telemetry
 */

import { refused } from "./browser.js";
import { connect } from "./channels.js";
import { BothwaysError, ConnectError, EncodeError, TransportError, UrlError } from "./errors.js";
import { Channel, backoff } from "./transports/base.js";
import { parse } from "./urls.js";
import { encodeMany } from "./wire.js";

/**
 * The four fields of a reading, in their order.
 * @type {readonly ["sensor", "seq", "t", "celsius"]}
 */
export const FIELDS = Object.freeze(["sensor", "seq", "t", "celsius"]);
/** The largest seq: the largest integer both languages hold exactly (2**53 - 1). */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/**
 * @typedef {object} Reading
 * @property {string} sensor who measured it.
 * @property {number} seq the sensor's own count (an integer from 0 to `MAX_SEQ`).
 * @property {number} t when, in seconds since the epoch.
 * @property {number} celsius the temperature.
 */

/**
 * The last seq given to each source's bare numbers. A `Map` reads best (any source name, no
 * prototype to trip over, and it is what a long-lived listener keeps); a plain object works too
 * (the vectors' form, and what `JSON.parse` gives back from a saved state).
 * @typedef {Map<string, number> | Record<string, number>} Seqs
 */

/**
 * A message that is not a reading: `reason` says why, `source` where it came from. The message
 * is `"<source>: <reason>"`, or the reason alone when there is no source.
 */
export class InvalidReading extends BothwaysError {
  static code = "INVALID_READING";

  /**
   * @param {string} reason why it is not a reading.
   * @param {{source?: string, cause?: unknown}} [options] `source`: where it came from.
   */
  constructor(reason, { source = "", cause } = {}) {
    super(source ? `${source}: ${reason}` : reason, cause === undefined ? undefined : { cause });
    /** @type {string} */
    this.reason = reason;
    /** @type {string} */
    this.source = source;
  }

  /** @returns {{reason: string, source: string}} */
  details() {
    return { reason: this.reason, source: this.source };
  }
}

/**
 * @param {unknown} value
 * @returns {value is number}
 */
function isNumber(value) {
  return typeof value === "number";
}

/**
 * What `value` is, in the words of the error messages ("a string", "an array", ...).
 * @param {unknown} value
 * @returns {string}
 */
function kind(value) {
  if (typeof value === "string") return "a string";
  if (typeof value === "boolean") return "a boolean";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return /** @type {object} */ (value).constructor?.name ?? "object";
  return typeof value;
}

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>} a JSON object (what `decode` gives for one).
 */
function isObject(value) {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Sets `object[key]` as an own property, even when `key` is `"__proto__"`.
 * @param {Record<string, unknown>} object
 * @param {string} key
 * @param {unknown} value
 */
function put(object, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

/**
 * @param {Seqs} seqs
 * @param {string} source
 * @returns {number}
 */
function lastSeq(seqs, source) {
  if (seqs instanceof Map) return seqs.get(source) ?? 0;
  return Object.hasOwn(seqs, source) ? seqs[source] : 0;
}

/**
 * The reading that `value` (a decoded message from `source`) stands for.
 * @param {unknown} value the message.
 * @param {{source: string, now: number, seqs: Seqs}} options `source`: where it came from (a
 *   URL, a command, "http"); names the sensor of bare numbers. `now`: the time it was received,
 *   seconds since the epoch. `seqs`: the last seq given to each source's bare numbers (updated
 *   here).
 * @returns {Reading & Record<string, unknown>} a new object: the four fields, then the others.
 * @throws {InvalidReading} it is not a reading; the reason says why.
 */
export function toReading(value, { source, now, seqs }) {
  if (isNumber(value)) {
    if (!Number.isFinite(value)) {
      throw new InvalidReading('"celsius" must be a finite number', { source });
    }
    // Math.trunc is Python's int(): the same number for any clock.
    const seq = Math.max(lastSeq(seqs, source) + 1, Math.trunc(now * 1_000_000));
    if (seqs instanceof Map) {
      seqs.set(source, seq);
    } else {
      put(seqs, source, seq);
    }
    return { sensor: source, seq, t: now, celsius: value };
  }
  if (!isObject(value)) {
    throw new InvalidReading(`a reading is an object or a number, not ${kind(value)}`, { source });
  }
  if (!Object.hasOwn(value, "sensor")) {
    throw new InvalidReading('missing "sensor"', { source });
  }
  const sensor = value.sensor;
  if (typeof sensor !== "string" || !sensor) {
    throw new InvalidReading('"sensor" must be a non-empty string', { source });
  }
  if (!Object.hasOwn(value, "seq")) {
    throw new InvalidReading('missing "seq"', { source });
  }
  const seq = value.seq;
  if (!(isNumber(seq) && Number.isInteger(seq) && 0 <= seq && seq <= MAX_SEQ)) {
    throw new InvalidReading(`"seq" must be an integer from 0 to ${MAX_SEQ}`, { source });
  }
  const t = Object.hasOwn(value, "t") ? value.t : now;
  if (!(isNumber(t) && Number.isFinite(t))) {
    throw new InvalidReading('"t" must be a number (seconds since the epoch)', { source });
  }
  if (!Object.hasOwn(value, "celsius")) {
    throw new InvalidReading('missing "celsius"', { source });
  }
  const celsius = value.celsius;
  if (!(isNumber(celsius) && Number.isFinite(celsius))) {
    throw new InvalidReading('"celsius" must be a finite number', { source });
  }
  /** @type {Reading & Record<string, unknown>} */
  const reading = { sensor, seq: seq + 0, t, celsius }; // (seq + 0: -0 becomes 0, as int() does)
  for (const key of Object.keys(value)) {
    if (!FIELDS.includes(key)) {
      put(reading, key, value[key]);
    }
  }
  return reading;
}

// ----------------------------------------------------------------------------------------------
// Delivering readings: the Outbox (sans-I/O) and the Sender that drives it. The Outbox, Rejected
// and HttpPoster mirror `src/bothways/telemetry/sensor.py` (times in milliseconds here); the
// Sender is its send loop, shared by bin/sensor.mjs and bin/listen.mjs (`--to`).

/** Readings an Outbox holds at most (`--buffer`). */
export const DEFAULT_BUFFER = 10_000;
/**
 * Milliseconds a reading sent on a channel without acknowledgement (tcp, ws, fifo) is kept, to
 * be sent again if the connection turns out lost.
 */
export const RESEND_WINDOW = 10_000;
/** Milliseconds, at the end, to go on trying to deliver what is held (`--wait`). */
export const FINAL_WAIT = 10_000;
const SEND_BATCH = 5000; // readings per sendMany at most
const HTTP_BATCH = 1000; // readings per POST
const HTTP_TIMEOUT = 10_000;
const CONFIRMING = ["file", "http", "https"]; // a successful write is a delivery
const SIGNALLED = ["tcp", "ws", "fifo", "file"]; // transports whose connect takes a `signal`
const COMPACT = 4096; // consumed slots an array keeps before it is copied down

/**
 * The readings a sensor holds, oldest first: those sent but not confirmed, then the ones not sent
 * yet. Bounded: adding past `capacity` drops the oldest (counted in `dropped` when they were
 * never sent). Sans-I/O: the caller gives the time.
 */
export class Outbox {
  /** @type {unknown[]} */
  #items = [];
  #head = 0;
  /** @type {number[]} when each unconfirmed reading (the first ones of #items) was sent */
  #sentAt = [];
  #sentHead = 0;
  #taken = 0; // readings `take` gave, not yet `sent`

  /**
   * @param {{capacity?: number, window?: number}} [options] `capacity`: readings held at most
   *   (default `DEFAULT_BUFFER`); `window`: ms a sent, unconfirmed reading is kept (`expire`),
   *   to be sent again after `lost` (default `RESEND_WINDOW`).
   * @throws {RangeError} `capacity` is below 1.
   */
  constructor({ capacity = DEFAULT_BUFFER, window = RESEND_WINDOW } = {}) {
    if (!(capacity >= 1)) {
      throw new RangeError(`capacity must be >= 1, not ${capacity}`);
    }
    /** @type {number} */
    this.capacity = capacity;
    /** @type {number} */
    this.window = window;
    /** Readings dropped before they were ever sent (the buffer was full). */
    this.dropped = 0;
  }

  /** Readings held. @returns {number} */
  get length() {
    return this.#items.length - this.#head;
  }

  /** Readings not sent yet (or to be sent again). @returns {number} */
  get pending() {
    return this.length - this.unconfirmed;
  }

  /** Readings sent but kept, in case the connection turns out lost. @returns {number} */
  get unconfirmed() {
    return this.#sentAt.length - this.#sentHead;
  }

  /**
   * Adds readings.
   * @param {Iterable<unknown>} values
   * @returns {number} how many never-sent readings were dropped to make room.
   */
  add(values) {
    for (const value of values) {
      this.#items.push(value);
    }
    const over = this.length - this.capacity;
    if (over <= 0) {
      return 0;
    }
    const sent = Math.min(over, this.unconfirmed); // sent already: most likely delivered
    this.#sentHead += sent;
    // Readings a `take` gave are on their way: they go from here, but are not "never sent".
    const leaving = Math.min(over - sent, this.#taken);
    this.#taken -= leaving;
    const dropped = over - sent - leaving;
    this.#head += over;
    this.dropped += dropped;
    this.#compact();
    return dropped;
  }

  /**
   * The oldest pending readings, `limit` at most (they stay until `sent`).
   * @param {number} limit
   * @returns {unknown[]}
   */
  take(limit) {
    const start = this.#head + this.unconfirmed;
    const batch = this.#items.slice(start, start + limit);
    this.#taken = batch.length;
    return batch;
  }

  /**
   * The `count` readings that `take` gave were sent at `now`.
   * @param {number} count
   * @param {number} now ms, on the clock `expire` gets.
   * @param {{confirmed: boolean}} options `confirmed`: they are delivered (dropped from here),
   *   else kept for the window.
   */
  sent(count, now, { confirmed }) {
    count = Math.min(count, this.#taken); // (some may have been pushed out meanwhile by `add`)
    this.#taken = 0;
    if (confirmed) {
      if (this.unconfirmed === 0) {
        this.#head += count;
      } else {
        this.#items.splice(this.#head + this.unconfirmed, count);
      }
    } else {
      for (let i = 0; i < count; i++) {
        this.#sentAt.push(now);
      }
    }
    this.#compact();
  }

  /**
   * Forgets sent readings older than the window.
   * @param {number} now ms.
   */
  expire(now) {
    const oldest = now - this.window;
    const sentAt = this.#sentAt;
    let i = this.#sentHead;
    while (i < sentAt.length && sentAt[i] < oldest) {
      i++;
    }
    this.#head += i - this.#sentHead;
    this.#sentHead = i;
    this.#compact();
  }

  /** Every sent reading is delivered (a confirmed close). */
  confirm() {
    this.#head += this.unconfirmed;
    this.#sentHead = this.#sentAt.length;
    this.#compact();
  }

  /**
   * The connection was lost: the sent, unconfirmed readings are pending again.
   * @returns {number} how many.
   */
  lost() {
    const again = this.unconfirmed;
    this.#sentHead = this.#sentAt.length;
    this.#taken = 0;
    this.#compact();
    return again;
  }

  /** Drops consumed slots now and then (moving a head index is O(1); copying is amortised). */
  #compact() {
    if (this.#head > COMPACT && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.#sentHead === this.#sentAt.length) {
      this.#sentAt = [];
      this.#sentHead = 0;
    } else if (this.#sentHead > COMPACT && this.#sentHead * 2 > this.#sentAt.length) {
      this.#sentAt = this.#sentAt.slice(this.#sentHead);
      this.#sentHead = 0;
    }
  }
}

/**
 * The HTTP server refused a batch for good (a 4xx answer): sending it again cannot help, so the
 * sensor stops (exit 1).
 */
export class Rejected extends BothwaysError {
  static code = "REJECTED";
}

// `name` on each prototype, spelled out (as errors.js does), so that minifiers cannot change it.
for (const [name, cls] of Object.entries({ InvalidReading, Rejected })) {
  Object.defineProperty(cls.prototype, "name", { value: name, writable: true, configurable: true });
}

/**
 * A sending-only channel that POSTs each `sendMany` as one `application/x-ndjson` body (`fetch`).
 * An answer 2xx delivers the batch; 4xx (except 408 and 429) throws Rejected; anything else (no
 * answer, 5xx) TransportError.
 */
export class HttpPoster extends Channel {
  /**
   * @param {string} url
   * @param {{timeout?: number}} [options] `timeout`: ms for the whole request (default 10 s).
   */
  constructor(url, { timeout = HTTP_TIMEOUT } = {}) {
    super();
    /** @type {string} */
    this.url = url;
    /** @type {number} */
    this.timeout = timeout;
  }

  /**
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {Rejected | TransportError} as `sendMany`.
   */
  send(value) {
    return this.sendMany([value]);
  }

  /**
   * POSTs `values` as one NDJSON body.
   * @param {Iterable<unknown>} values
   * @returns {Promise<void>}
   * @throws {Rejected} a 4xx answer (but 408 and 429).
   * @throws {TransportError} no answer, or any other answer but 2xx.
   * @throws {EncodeError} a value cannot be sent.
   */
  async sendMany(values) {
    const body = encodeMany(values);
    let answer;
    try {
      answer = await fetch(this.url, {
        method: "POST",
        headers: { "content-type": "application/x-ndjson" },
        body,
        signal: AbortSignal.timeout(this.timeout),
      });
    } catch (error) {
      const cause = /** @type {any} */ (error)?.cause;
      throw new TransportError(`${this.url}: ${cause?.code ?? cause?.message ?? why(error)}`, { cause: error });
    }
    const text = await answer.text().catch(() => "");
    if (answer.ok) {
      return;
    }
    const detail = text.slice(0, 300).trim().replaceAll("\n", " ") || answer.statusText;
    const status = answer.status;
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
      throw new Rejected(`${this.url}: HTTP ${status}: ${detail}`);
    }
    throw new TransportError(`${this.url}: HTTP ${status}: ${detail}`);
  }

  /**
   * @returns {Promise<any>}
   * @throws {TransportError} always: it only sends.
   */
  async receive() {
    throw new TransportError(`${this.url}: an HTTP sensor only sends`);
  }

  async close() {}
}

/**
 * @param {string} url
 * @returns {boolean}
 */
function isHttp(url) {
  return /^https?:\/\//i.test(url);
}

/**
 * The sending side of `url`: `connect(url, options)`, or an HttpPoster for http(s) URLs.
 * @param {string} url
 * @param {Record<string, unknown>} [options] for `connect`.
 * @returns {Promise<Channel>}
 * @throws {import("./errors.js").UrlError | ConnectError} as `connect`.
 */
export async function openChannel(url, options = {}) {
  if (isHttp(url)) {
    return new HttpPoster(url);
  }
  return connect(url, options);
}

/**
 * @param {unknown} error
 * @returns {string} its message.
 */
function why(error) {
  return error instanceof Error ? error.message : String(error);
}

/**
 * An error's message without the channel URL it starts with (the caller names the channel).
 * @param {unknown} error
 * @returns {string}
 */
function reason(error) {
  return why(error).replace(/^[a-z][a-z0-9+.-]*:\S*: /i, "");
}

/**
 * @param {unknown} error
 * @returns {boolean} whether trying again cannot help (a refusal, a bad URL or option, a
 *   transport that cannot be loaded).
 */
function isFinal(error) {
  return (
    error instanceof Rejected ||
    refused(error) || // a WebSocket listener said no (403, 404)
    (error instanceof ConnectError && error.message.includes(": refused by the server: ")) || // tcp's token
    error instanceof UrlError ||
    /** @type {any} */ (error)?.code === "ERR_MODULE_NOT_FOUND" || // a transport's npm package is missing
    error instanceof EncodeError ||
    error instanceof TypeError ||
    error instanceof RangeError
  );
}

/**
 * @typedef {object} SenderOptions
 * @property {Outbox} [outbox] what to deliver (default: a new Outbox with the defaults).
 * @property {(text: string) => void} [say] gets each warning (default `console.warn`).
 * @property {Record<string, unknown>} [options] options for `connect` (tcp and ws always get
 *   `reconnect: false`: the Sender reconnects by itself, and knows then what to send again).
 */

/**
 * Delivers what an Outbox holds to `to`: any channel URL (`connect`) or `http(s)://` (HttpPoster),
 * in batches (`sendMany`), from the moment it is made until `finish()`.
 *
 * - When the channel cannot be reached or is lost, the readings stay in the outbox, the Sender
 *   connects again with back-off (`backoff`: 50 ms doubling to 5 s, back to 50 ms after a batch
 *   went through) and sends them once the channel is back. A tcp or ws connection is watched
 *   (what the listener sends is read and dropped), so its loss is noticed at once, not at the
 *   next send.
 * - On channels without acknowledgement (all but file and http), a sent reading is kept for the
 *   outbox's window and sent again after a reconnection: every reading arrives at least once.
 * - Final: a Rejected batch (HTTP 4xx) or a refusal (`failed` tells which); stdout closed, the
 *   reader gone (`gone`): nothing to wait for, it ends quietly.
 * - `finish(wait)` sends what is left and closes the channel (on tcp and ws, confirmed by the
 *   listener; an unconfirmed close sends the held readings again), `wait` ms at most.
 */
export class Sender {
  #to;
  #kind;
  #say;
  #options;
  #confirming;
  #batch;
  /** @type {{channel: Channel, broken: unknown} | null} */
  #link = null;
  /** @type {number | null} when the time to deliver runs out (once finishing) */
  #deadline = null;
  /** @type {(() => void) | null} */
  #wake = null;
  #abort = new AbortController();
  #warnedDrops = 0;
  #lastDropWarning = -Infinity;
  /** Readings handed to the channel (resends counted). */
  delivered = 0;
  /** Why it stopped for good (a Rejected batch, a refusal), else null. @type {unknown} */
  failed = null;
  /** The reader of stdout went away: nothing more to do. */
  gone = false;
  /** Settles when the send loop has ended (finished, failed or gone); never rejects. @type {Promise<void>} */
  done;

  /**
   * @param {string} to where to deliver (`stdio:` is our stdout).
   * @param {SenderOptions} [options]
   * @throws {UrlError} the URL cannot be used.
   */
  constructor(to, { outbox = new Outbox(), say, options = {} } = {}) {
    if (isHttp(to)) {
      try {
        new URL(to);
      } catch (error) {
        throw new UrlError("not a valid http URL", { url: to, cause: error });
      }
      this.#kind = to.slice(0, to.indexOf(":")).toLowerCase();
    } else {
      this.#kind = parse(to).scheme; // a bad URL fails here, before anything runs
    }
    this.#to = to;
    /** @type {Outbox} */
    this.outbox = outbox;
    this.#say = say ?? ((/** @type {string} */ text) => console.warn(text));
    const extra = {};
    if (this.#kind === "tcp" || this.#kind === "ws") Object.assign(extra, { reconnect: false });
    if (SIGNALLED.includes(this.#kind)) Object.assign(extra, { signal: this.#abort.signal });
    this.#options = { ...options, ...extra };
    this.#confirming = CONFIRMING.includes(this.#kind);
    this.#batch = this.#kind.startsWith("http") ? HTTP_BATCH : SEND_BATCH;
    this.done = this.#run().catch((error) => {
      this.failed ??= error; // (a bug: said, and the sender stops)
      this.#say(`${this.#to}: ${why(error)}`);
    });
  }

  /** Where the readings go. @returns {string} */
  get to() {
    return this.#to;
  }

  /**
   * Adds readings to the outbox and wakes the sender; says (once a second at most) when the
   * buffer is full and the oldest were dropped.
   * @param {Iterable<unknown>} values
   * @returns {number} how many never-sent readings were dropped to make room.
   */
  add(values) {
    const dropped = this.outbox.add(values);
    if (dropped > 0) {
      const now = performance.now();
      if (now - this.#lastDropWarning >= 1000) {
        this.#lastDropWarning = now;
        const total = this.outbox.dropped;
        this.#say(
          `buffer full (${this.outbox.capacity} readings): dropped the ${total - this.#warnedDrops} oldest ` +
            `(${total} in all)`,
        );
        this.#warnedDrops = total;
      }
    }
    this.#wake?.();
    return dropped;
  }

  /**
   * Delivers what is left, then closes the channel; `wait` ms at most (called again, the
   * earlier deadline holds).
   * @param {number} [wait] ms (default `FINAL_WAIT`).
   * @returns {Promise<number>} the readings that could not be delivered (0: all of them).
   */
  async finish(wait = FINAL_WAIT) {
    const deadline = performance.now() + Math.max(wait, 0);
    this.#deadline = this.#deadline === null ? deadline : Math.min(this.#deadline, deadline);
    this.#wake?.();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    // A send, a dial or a close in progress may outlast the deadline: it is cut short then.
    const late = new Promise((resolve) => {
      timer = setTimeout(resolve, Math.max(/** @type {number} */ (this.#deadline) - performance.now(), 0) + 100);
    });
    await Promise.race([this.done, late]);
    clearTimeout(timer);
    const cut = this.#link !== null || this.#abort.signal.aborted;
    this.#abort.abort();
    this.#wake?.();
    if (this.outbox.dropped > this.#warnedDrops) {
      this.#warnedDrops = this.outbox.dropped;
      this.#say(`dropped ${this.outbox.dropped} readings in all: the buffer was full`);
    }
    return cut ? this.outbox.length : this.outbox.pending;
  }

  /**
   * @param {number} ms
   * @returns {Promise<void>} after `ms`, or sooner when woken (add, finish, a lost connection).
   */
  #sleep(ms) {
    return new Promise((resolve) => {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      if (Number.isFinite(ms)) {
        timer = setTimeout(wake, Math.max(ms, 1));
      }
      this.#wake = wake;
    });
  }

  /**
   * Reads (and drops) what a tcp or ws listener sends, until the connection ends.
   * @param {{channel: Channel, broken: unknown}} link
   */
  async #watch(link) {
    try {
      for (;;) {
        await link.channel.receiveMany();
      }
    } catch (error) {
      link.broken = error;
      if (this.#link === link) {
        this.#wake?.();
      }
    }
  }

  /** The send loop (the only one to touch the channel). */
  async #run() {
    await null; // (the constructor returns first)
    const outbox = this.outbox;
    let attempt = 0; // failed tries since a batch last went through
    let retryAt = 0;
    /** @type {number | null} */
    let down = null; // since when the channel is down
    const retryLater = () => {
      retryAt = performance.now() + backoff(attempt++);
    };
    try {
      for (;;) {
        if (this.#abort.signal.aborted) return;
        const now = performance.now();
        outbox.expire(now);
        let link = this.#link;
        if (link !== null && link.broken !== null) {
          if (this.#kind === "stdio") return this.#gone();
          this.#drop();
          const again = outbox.lost();
          retryLater();
          if (down === null) {
            down = now; // (said once an outage: an HTTP server answering 503 would repeat it)
            const lately = `${again} sent lately will go again`;
            this.#say(`lost ${this.#to} (${reason(link.broken)}); keeping readings (${lately}), reconnecting`);
          }
          continue;
        }
        const deadline = this.#deadline;
        if (deadline !== null && (outbox.pending === 0 || now >= deadline)) {
          if (link === null || outbox.pending > 0) return;
          this.#link = null;
          try {
            await link.channel.close(); // on tcp and ws: the listener confirms it read everything
            outbox.confirm();
            if (outbox.pending === 0 || performance.now() >= deadline) return;
            continue; // (more came meanwhile: `add` after `finish` is allowed)
          } catch (error) {
            const again = outbox.lost();
            if (again > 0) this.#say(`${this.#to}: ${reason(error)}; sending ${again} readings again`);
            retryLater();
            continue;
          }
        }
        if (outbox.pending === 0 || (link === null && now < retryAt)) {
          let until = outbox.pending > 0 ? retryAt : Infinity;
          if (deadline !== null) until = Math.min(until, deadline);
          await this.#sleep(until - now);
          continue;
        }
        if (link === null) {
          try {
            const channel = await openChannel(this.#to, this.#options);
            link = this.#link = { channel, broken: null };
          } catch (error) {
            if (this.#kind === "stdio") return this.#gone();
            if (isFinal(error)) return this.#fail(error);
            if (down === null) {
              down = performance.now();
              this.#say(`cannot reach ${this.#to} (${reason(error)}); keeping readings, trying again`);
            }
            retryLater();
            continue;
          }
          if (this.#kind === "tcp" || this.#kind === "ws") {
            this.#watch(link);
          }
        }
        const batch = outbox.take(this.#batch);
        try {
          await link.channel.sendMany(batch);
        } catch (error) {
          if (this.#kind === "stdio") return this.#gone();
          if (isFinal(error)) return this.#fail(error);
          link.broken ??= error; // (dealt with at the top of the loop)
          continue;
        }
        outbox.sent(batch.length, performance.now(), { confirmed: this.#confirming });
        this.delivered += batch.length;
        attempt = 0;
        if (down !== null) {
          const seconds = ((performance.now() - down) / 1000).toFixed(1);
          const rest = outbox.pending > 0 ? `; sending the ${outbox.pending} readings held` : "";
          this.#say(`reached ${this.#to} again after ${seconds} s${rest}`);
          down = null;
        }
      }
    } finally {
      this.#drop();
    }
  }

  /** Closes the current channel, if any, without waiting. */
  #drop() {
    const link = this.#link;
    this.#link = null;
    link?.channel.close().catch(() => {});
  }

  /** stdout is closed: whoever read it has gone; nothing to wait for. */
  #gone() {
    this.gone = true;
  }

  /** @param {unknown} error a final one. */
  #fail(error) {
    this.failed = error;
    this.#say(`${why(error)}; stopping`);
  }
}
