/**
 * WebSockets in Node: `ws://host:port/path` over the `ws` package. Mirrors
 * `src/bothways/transports/ws.py` name for name; its module docs are the normative description
 * of the wire, the handshake gate, keepalive, reconnection and the listener's rules, and hold
 * here too (times in milliseconds). The channel logic itself, shared with the browser, is in
 * `../browser.js` (`WsChannel` over a "link"); this module adds the `ws` links, the client's
 * dialling and the server.
 *
 * Strategy
 * --------
 * - A text frame holds one JSON text (`send`) or several NDJSON lines (`sendMany`), no
 *   compression (`perMessageDeflate: false` on both sides), `maxPayload` = `maxLine`: `ws`
 *   closes with 1009 on a larger frame and emits `WS_ERR_UNSUPPORTED_MESSAGE_LENGTH`, which is
 *   reported as FrameTooLarge after the messages before it. Frames are decoded by `Frames` in
 *   ../browser.js, shared with the browser.
 * - Backpressure: `send` resolves at once while the socket buffers less than 1 MiB, else when
 *   the frame has been written (and so does every 256th send, so that a tight send loop gives
 *   the event loop a turn to notice a dead peer); a channel pauses its socket when 1024 messages wait unread, and
 *   the merged queue of a listener pauses every merged socket.
 * - With `reconnect`, the first dial is retried too, on the back-off of later reconnections
 *   (`firstRetry`: 50 ms doubling to 5 s), until `timeout` runs out; then its last ConnectError is
 *   thrown. A refusal (an HTTP answer such as 403 or 404 instead of the upgrade) is thrown at
 *   once, as it is while reconnecting. Without `reconnect`, the first failure is thrown at once.
 * - Keepalive by hand (`ws` has none): every `pingInterval` each side pings; a link that has not
 *   ponged since the previous ping is terminated (the survivor's `receive` throws
 *   TransportClosed).
 * - The server is a plain `node:http` server whose 'upgrade' handler runs the same gate as
 *   Python's `check_request` (path 404, origin 403, token 403, compared in constant time)
 *   before handing the socket to a `WebSocketServer({ noServer: true })`. It listens with
 *   `backlog` (default `BACKLOG` = 4096, as tcp's; the kernel caps it at `net.core.somaxconn`),
 *   and does nothing slow per connection before the next accept.
 * - A client's `close()` is confirmed by the closing handshake: it resolves once the listener's
 *   close frame has come (`ws` sends it as soon as it has parsed ours, so after every message
 *   before it; a listener paused for backpressure answers once it reads again), within the
 *   channel's `timeout`; else it ends the connection and rejects with
 *   TransportClosed saying how many messages may be lost (see `WsChannel`). Unlike a TCP
 *   client's data, a WebSocket's messages cannot vanish in an overflowing accept queue (the
 *   opening handshake needs the server's answer), but the confirmation covers every other way
 *   of losing the tail of a stream (a server that dies, or resets, before reading it). With
 *   `reconnect`, what was sent on a connection that ended without the listener's close frame
 *   is not sent again and was never confirmed: `close()` then rejects, once the current
 *   connection is confirmed, with `<url>: close: <n> messages were sent on connections that
 *   broke before the peer confirmed them (nothing is sent twice); they may be lost`.
 *
 * @module bothways/transports/ws
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { STATUS_CODES, createServer } from "node:http";
import { setTimeout as delay } from "node:timers/promises";

import WebSocket, { WebSocketServer } from "ws";

import {
  CLOSE_TIMEOUT,
  HIGH_WATER,
  MessageQueue,
  PING_INTERVAL,
  TIMEOUT,
  Frames,
  WsChannel,
  batches,
  checkOptions,
  frameHandlers,
  publicUrl,
  refusal,
  refused,
  refuseUnknown,
  requestUrl,
} from "../browser.js";
import { ConnectError, TransportClosed, TransportError } from "../errors.js";
import { MAX_LINE, encode } from "../wire.js";
import { BACKLOG, Listener, Router, checkBacklog, firstRetry, inboxIterator } from "./base.js";

export { PING_INTERVAL, TIMEOUT, WsChannel } from "../browser.js";
export { BACKLOG };

const CONFIRM_EVERY = 256; // frames sent between two waits for a write to complete
const HELD = 16; // messages a connection nobody has claimed yet may bring before it is paused
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * The handshake gate, run before the upgrade: null to accept, else [HTTP status, reason].
 * Mirror of Python's `check_request`.
 * @param {string} target the request target, path and query (`/feed?token=abc`).
 * @param {string | null | undefined} origin the `Origin` header, null when absent.
 * @param {{path: string, token?: string | null, origins?: string[] | null}} options
 * @returns {[number, string] | null}
 */
export function checkRequest(target, origin, { path, token = null, origins = null }) {
  const q = target.indexOf("?");
  const got = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? "" : target.slice(q + 1);
  if (got !== path) {
    return [404, `no WebSocket at ${got} (this listener serves ${path})`];
  }
  if (!originAllowed(origin ?? null, origins)) {
    return [403, `origin ${origin} is not allowed`];
  }
  if (token !== null && token !== undefined) {
    const given = queryValue(query, "token");
    if (given === null) {
      return [403, "missing token (add ?token=... to the URL)"];
    }
    if (!sameSecret(given, token)) {
      return [403, "wrong token"];
    }
  }
  return null;
}

/**
 * @param {string | null} origin
 * @param {string[] | null | undefined} origins
 * @returns {boolean}
 */
function originAllowed(origin, origins) {
  if (origin === null) return true;
  if (origins !== null && origins !== undefined) return origins.includes(origin);
  const lower = origin.toLowerCase();
  const sep = lower.indexOf("://");
  if (sep < 0) return false;
  const scheme = lower.slice(0, sep);
  if (scheme !== "http" && scheme !== "https") return false;
  let host = lower.slice(sep + 3);
  host = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
  return LOCAL_HOSTS.has(host);
}

/**
 * A query parameter, percent-decoded (`+` stays `+`, as in the URL parser).
 * @param {string} query
 * @param {string} name
 * @returns {string | null}
 */
function queryValue(query, name) {
  for (const item of query.split("&")) {
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    if (unquote(key) === name) return unquote(eq < 0 ? "" : item.slice(eq + 1));
  }
  return null;
}

/**
 * Percent-decoding that leaves a bad escape as it is (as Python's `unquote`).
 * @param {string} text
 * @returns {string}
 */
function unquote(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Compares two secrets in constant time (their hashes, so that lengths leak nothing either).
 * @param {string} a
 * @param {string} b
 * @returns {boolean}
 */
function sameSecret(a, b) {
  const digest = (/** @type {string} */ s) => createHash("sha256").update(s, "utf8").digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * A link over a `ws` WebSocket (see `Link` in ../browser.js), with its keepalive.
 * @implements {import("../browser.js").Link}
 */
class NodeLink {
  #ws;
  /** @type {import("../browser.js").Sink | null} */
  #sink = null;
  /** @type {[string, any, boolean?][]} */
  #early = [];
  /** @type {NodeJS.Timeout | null} */
  #timer = null;
  #alive = true;
  #unconfirmed = 0; // frames sent since the last one whose write was waited for
  /** @type {Error | null} */
  #error = null;
  #dropping = false; // closing: what still comes is dropped
  #code = 1006; // the close code, once closed (1006: no close frame came)
  /** @type {Promise<void>} */
  closed;
  /** Messages sent on it. @type {number} */
  sent = 0;

  /** @returns {boolean} whether the peer's close frame came (`ws` says 1006 when not) */
  get closeReceived() {
    return this.#code !== 1006;
  }

  /**
   * @param {WebSocket} ws an open WebSocket.
   * @param {number | null | undefined} pingInterval ms; null or 0: no keepalive.
   */
  constructor(ws, pingInterval) {
    this.#ws = ws;
    /** @type {() => void} */
    let done = () => {};
    this.closed = new Promise((resolve) => (done = resolve));
    ws.on("message", (data, isBinary) => {
      this.#emit("message", isBinary ? data : data.toString(), isBinary);
    });
    ws.on("error", (error) => {
      this.#error = error;
      if (/** @type {any} */ (error).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") this.#emit("tooLarge", null);
    });
    ws.on("pong", () => {
      this.#alive = true;
    });
    ws.on("close", (code, reason) => {
      this.#code = code;
      if (this.#timer !== null) clearInterval(this.#timer);
      let why = `code ${code}${reason.length > 0 ? `: ${reason}` : ""}`;
      if (this.#error !== null) why += `; ${this.#error.message}`;
      this.#emit("closed", why);
      done();
    });
    if (pingInterval) {
      this.#timer = setInterval(() => {
        if (!this.#alive) {
          this.#error = new Error(`no answer to a ping within ${pingInterval} ms`);
          ws.terminate();
          return;
        }
        this.#alive = false;
        ws.ping();
      }, pingInterval);
      this.#timer.unref();
    }
  }

  /**
   * @param {string} kind
   * @param {any} data
   * @param {boolean} [isBinary]
   */
  #emit(kind, data, isBinary) {
    const sink = this.#sink;
    if (this.#dropping && kind !== "closed") return;
    if (sink === null) {
      // Not claimed yet: keep reading (a close frame must be seen), but only a few messages.
      if (this.#early.push([kind, data, isBinary]) === HELD) this.#ws.pause();
    } else if (kind === "message") {
      sink.message(data, /** @type {boolean} */ (isBinary));
    } else if (kind === "tooLarge") {
      sink.tooLarge();
    } else {
      sink.closed(data);
    }
  }

  /** @param {import("../browser.js").Sink} sink */
  attach(sink) {
    this.#sink = sink;
    for (const [kind, data, isBinary] of this.#early.splice(0)) this.#emit(kind, data, isBinary);
    this.resume();
  }

  /**
   * @param {string} text
   * @param {number} [count] the messages it holds.
   * @returns {Promise<void> | undefined}
   */
  send(text, count = 1) {
    const ws = this.#ws;
    this.sent += count;
    if (ws.bufferedAmount < HIGH_WATER && ++this.#unconfirmed < CONFIRM_EVERY) {
      ws.send(text);
      return undefined;
    }
    // Wait for this frame to be written: when the buffer is full (backpressure), and every
    // CONFIRM_EVERY frames anyway, so that a sender in a tight loop lets the event loop see a
    // peer that went away (writes to a dead socket fail without filling the buffer).
    this.#unconfirmed = 0;
    return new Promise((resolve, reject) => ws.send(text, (error) => (error ? reject(error) : resolve())));
  }

  isOpen() {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /**
   * @param {number} code
   * @returns {Promise<void>}
   */
  close(code) {
    const ws = this.#ws;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code);
    return this.closed;
  }

  /**
   * See `Link.confirm` in ../browser.js: at the timeout the connection is terminated.
   * @param {number} timeout ms.
   * @returns {Promise<"confirmed" | "timeout" | "reset">}
   */
  confirm(timeout) {
    const ws = this.#ws;
    this.#dropping = true; // and reading goes on: the peer's close frame must be read
    this.resume();
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    return new Promise((resolve) => {
      let late = false;
      const timer = setTimeout(() => {
        late = true;
        ws.terminate();
      }, timeout);
      this.closed.then(() => {
        clearTimeout(timer);
        resolve(this.#code !== 1006 ? "confirmed" : late ? "timeout" : "reset");
      });
    });
  }

  pause() {
    this.#ws.pause();
  }

  resume() {
    this.#ws.resume();
  }
}

/**
 * A ConnectError for a failed dial.
 * @param {string} url
 * @param {any} error
 * @param {number} timeout
 * @returns {ConnectError}
 */
function connectError(url, error, timeout) {
  if (error?.code === "ECONNREFUSED") {
    return new ConnectError("connection refused (is the listener running?)", { url, cause: error });
  }
  if (/handshake has timed out/i.test(error?.message ?? "")) {
    return new ConnectError(`no WebSocket handshake within ${timeout / 1000} s`, { url, cause: error });
  }
  return new ConnectError(`cannot connect: ${error?.message ?? error}`, { url, cause: error });
}

/**
 * Dials a listener; resolves with the open link. `ws` ends a closing connection itself only
 * after `timeout` + CLOSE_TIMEOUT ms, so that `confirm(timeout)` decides first.
 * @param {string} target the request URL (with the token).
 * @param {string} url the URL for messages (without it).
 * @param {{timeout: number, maxLine: number, pingInterval: number | null, origin?: string,
 *   signal?: AbortSignal}} options
 * @returns {Promise<NodeLink>}
 */
function dial(target, url, { timeout, maxLine, pingInterval, origin, signal }) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TransportClosed(`${url}: aborted`, { cause: signal.reason }));
      return;
    }
    const ws = new WebSocket(target, {
      perMessageDeflate: false,
      maxPayload: maxLine,
      handshakeTimeout: timeout,
      closeTimeout: timeout + CLOSE_TIMEOUT,
      followRedirects: false,
      ...(origin ? { origin } : {}),
    });
    let settled = false;
    /** @param {unknown} error */
    const fail = (error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      ws.terminate();
      reject(error);
    };
    const onAbort = () => fail(new TransportClosed(`${url}: aborted`, { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    ws.on("error", (error) => fail(connectError(url, error, timeout))); // stays, as a no-op after
    ws.on("unexpected-response", (_request, response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk) => {
        if (body.length < 1000) body += chunk;
      });
      response.on("error", () => {});
      response.on("end", () => fail(refusal(url, response.statusCode ?? 0, body)));
    });
    ws.once("open", () => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      resolve(new NodeLink(ws, pingInterval));
    });
  });
}

/**
 * @typedef {object} ConnectOptions
 * @property {string} [token] the listener's token (sent as `?token=`).
 * @property {number} [timeout] ms the opening handshake may take (with `reconnect`: the time
 *   within which the first dial is retried), and the peer's confirmation of `close()` (default
 *   10 s).
 * @property {boolean} [reconnect] dial again, with back-off, whenever the connection is lost; the
 *   first dial too, until `timeout` runs out (a listener not up yet is waited for; a refusal is
 *   not retried).
 * @property {number} [maxLine] the largest message accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] called with each DecodeError.
 * @property {number | null} [pingInterval] ms between keepalive pings (null or 0: none).
 * @property {string} [origin] an Origin header to send.
 * @property {AbortSignal} [signal] aborting it closes the channel (or the attempt to connect).
 * @property {number} [backlog] a listener option, ignored here (one URL serves both sides).
 */

/**
 * Connects to the WebSocket listener at `address`. With `reconnect`, a listener that cannot be
 * reached is dialled again (back-off from 50 ms, doubling up to 5 s) until `timeout` runs out.
 * @param {import("../urls.js").Address} address `ws://host:port/path`.
 * @param {ConnectOptions} [options]
 * @returns {Promise<WsChannel>}
 * @throws {ConnectError} the listener cannot be reached (with `reconnect`: the last attempt's
 *   error, once `timeout` has run out) or refused the handshake (never retried).
 * @throws {TransportClosed} the signal was aborted.
 * @throws {TypeError} an unknown option.
 */
export async function connect(address, options = {}) {
  const {
    token,
    timeout = TIMEOUT,
    reconnect = false,
    maxLine = MAX_LINE,
    onError,
    pingInterval = PING_INTERVAL,
    origin,
    signal,
    ...rest
  } = options;
  delete rest.backlog; // a listener option: accepted, so that one URL serves both sides
  refuseUnknown(rest, "connect");
  checkOptions({ maxLine, timeout, token });
  const url = publicUrl(address);
  const target = requestUrl(address, token);
  const redial = () => dial(target, url, { timeout, maxLine, pingInterval, origin, signal });
  const deadline = performance.now() + timeout;
  // With reconnect, a listener not up yet is waited for, `timeout` ms at most.
  for (let attempt = 0; ; attempt++) {
    try {
      const link = await redial();
      return new WsChannel(link, { url, maxLine, onError, redial: reconnect ? redial : null, signal, timeout });
    } catch (error) {
      const retry = error instanceof ConnectError && !refused(error);
      const wait = retry ? firstRetry(reconnect, attempt, deadline - performance.now()) : null;
      if (wait === null) throw error;
      try {
        await delay(wait, undefined, { signal });
      } catch (stopped) {
        if (signal?.aborted) throw new TransportClosed(`${url}: aborted`, { cause: signal.reason });
        throw stopped;
      }
    }
  }
}

/**
 * The HTTP answer that refuses a handshake, written on the raw socket.
 * @param {import("node:stream").Duplex} socket
 * @param {number} status
 * @param {string} reason
 */
function refuse(socket, status, reason) {
  const body = `${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/**
 * A WebSocket server: made by `listen`. See the module docs of ws.py for the rules; where a
 * connection goes is `Router`'s rule (./base.js), the same as tcp's: to a waiting `accept()`,
 * else merged once the first `receive()` or `send()` has come, else held until one of them
 * takes it.
 */
export class WsListener extends Listener {
  #server;
  #wss;
  #path;
  #token;
  #origins;
  #maxLine;
  #onError;
  #pingInterval;
  /** @type {Router<NodeLink>} */
  #router = new Router();
  /** @type {(() => void)[]} */
  #acceptWaiters = [];
  /** @type {Set<NodeLink>} */
  #merged = new Set();
  /** @type {Set<NodeLink>} */
  #links = new Set();
  #queue;
  #closed = false;
  /** @type {Promise<void> | null} */
  #closing = null;
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => void this.close();

  /**
   * Made by `listen`.
   * @param {import("../urls.js").Address} address
   * @param {{token?: string, origins?: string[] | null, maxLine: number,
   *   onError?: import("./base.js").ErrorHandler, pingInterval: number | null, timeout: number,
   *   signal?: AbortSignal}} options
   */
  constructor(address, { token, origins, maxLine, onError, pingInterval, timeout, signal }) {
    super();
    this.url = publicUrl(address);
    this.#path = address.path;
    this.#token = token ?? null;
    this.#origins = origins ?? null;
    this.#maxLine = maxLine;
    this.#onError = onError;
    this.#pingInterval = pingInterval;
    this.#queue = new MessageQueue({
      onHigh: () => this.#merged.forEach((link) => link.pause()),
      onLow: () => this.#merged.forEach((link) => link.resume()),
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: maxLine,
      perMessageDeflate: false,
      clientTracking: false,
      closeTimeout: CLOSE_TIMEOUT,
    });
    this.#server = createServer((request, response) => {
      const [status, reason] = this.#gate(request) ?? [426, "this is a WebSocket endpoint (ws://)"];
      response.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" });
      response.end(`${reason}\n`);
    });
    this.#server.headersTimeout = timeout;
    this.#server.requestTimeout = timeout;
    this.#server.on("upgrade", (request, socket, head) => {
      socket.on("error", () => {}); // a peer that resets mid-handshake is no failure of ours
      const refusal = this.#closed ? [503, "the listener is closing"] : this.#gate(request);
      if (refusal !== null) {
        refuse(socket, refusal[0], String(refusal[1]));
        return;
      }
      this.#wss.handleUpgrade(request, socket, head, (ws) => this.#arrived(new NodeLink(ws, this.#pingInterval)));
    });
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * Starts listening; resolves once the port is bound.
   * @param {import("../urls.js").Address} address
   * @param {number} [backlog] connections the kernel may hold until accepted.
   * @returns {Promise<void>}
   * @throws {TransportError} the address cannot be listened on.
   */
  start(address, backlog = BACKLOG) {
    return new Promise((resolve, reject) => {
      const server = this.#server;
      const onError = (/** @type {Error} */ error) => {
        reject(new TransportError(`${this.url}: cannot listen: ${error.message}`, { cause: error }));
      };
      server.once("error", onError);
      server.listen({ port: address.port, host: address.host ?? "127.0.0.1", backlog }, () => {
        server.removeListener("error", onError);
        const bound = /** @type {import("node:net").AddressInfo} */ (server.address());
        this.url = publicUrl(address.withPort(bound.port));
        resolve();
      });
    });
  }

  /**
   * @param {import("node:http").IncomingMessage} request
   * @returns {[number, string] | null}
   */
  #gate(request) {
    const found = request.headersDistinct.origin ?? [];
    if (found.length > 1) return [403, "several Origin headers"];
    return checkRequest(request.url ?? "/", found[0] ?? null, {
      path: this.#path,
      token: this.#token,
      origins: this.#origins,
    });
  }

  /** @param {NodeLink} link */
  #arrived(link) {
    if (this.#closed) {
      link.close(1001);
      return;
    }
    this.#links.add(link);
    link.closed.then(() => {
      this.#links.delete(link);
      this.#merged.delete(link);
      this.#router.forget(link);
    });
    if (this.#router.arrive(link)) {
      this.#merge(link);
    } else {
      this.#acceptWaiters.shift()?.();
    }
  }

  /** @param {NodeLink} link */
  #merge(link) {
    const frames = new Frames(this.#maxLine, this.#onError);
    this.#merged.add(link);
    link.attach(frameHandlers(frames, this.#queue, () => this.#merged.delete(link)));
  }

  #startMerging() {
    for (const link of this.#router.startMerging()) this.#merge(link);
  }

  /**
   * The next message from any merged connection, in arrival order.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the listener is closed.
   */
  receive() {
    if (this.#closed) return Promise.reject(new TransportClosed(`${this.url}: closed`));
    if (!this.#router.merging) this.#startMerging();
    return this.#queue.receive();
  }

  /**
   * `for await (const message of listener)`: as `WsChannel`'s, a message already received is
   * handed out as one resolved promise.
   * @returns {AsyncIterableIterator<any>}
   */
  [Symbol.asyncIterator]() {
    return inboxIterator(
      this.#queue,
      () => !this.#closed && this.#router.merging,
      () => this.receive(),
    );
  }

  /**
   * Sends one message to every merged connection (none connected: it goes nowhere); waits
   * while a slow one's buffer is full.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {TransportClosed} the listener is closed.
   */
  async send(value) {
    await this.#broadcast([[encode(value).slice(0, -1), 1]]);
  }

  /**
   * Sends the messages to every merged connection in one text frame of NDJSON lines, as
   * `WsChannel.sendMany` does; waits as `send` does.
   * @param {Iterable<unknown>} values
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} a value cannot cross (nothing is sent).
   * @throws {TransportClosed} the listener is closed.
   */
  async sendMany(values) {
    await this.#broadcast(batches(values, this.#maxLine));
  }

  /**
   * @param {[string, number][]} frames each frame's text, and how many messages it holds.
   * @returns {Promise<void>}
   */
  async #broadcast(frames) {
    if (this.#closed) throw new TransportClosed(`${this.url}: closed`);
    if (!this.#router.merging) this.#startMerging();
    for (const [text, count] of frames) {
      const waits = [];
      for (const link of this.#merged) {
        if (link.isOpen()) {
          const wait = link.send(text, count);
          if (wait !== undefined) waits.push(wait.catch(() => {}));
        }
      }
      if (waits.length > 0) await Promise.all(waits);
    }
  }

  /**
   * The next connection as its own duplex channel (waits for one).
   * @returns {Promise<WsChannel>}
   * @throws {TransportClosed} the listener is closed.
   */
  async accept() {
    this.#router.beginAccept();
    try {
      for (;;) {
        if (this.#closed) throw new TransportClosed(`${this.url}: closed`);
        const link = this.#router.take();
        if (link !== undefined) {
          return new WsChannel(link, { url: this.url, maxLine: this.#maxLine, onError: this.#onError });
        }
        await new Promise((resolve) => this.#acceptWaiters.push(() => resolve(undefined)));
      }
    } finally {
      for (const link of this.#router.endAccept()) this.#merge(link);
    }
  }

  /**
   * Stops listening and closes every connection (1001), accepted ones included; safe to call
   * twice.
   * @returns {Promise<void>}
   */
  close() {
    if (this.#closing === null) {
      this.#closed = true;
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#queue.end(new TransportClosed(`${this.url}: closed`));
      this.#router.close(); // (the held links are among #links, closed below)
      for (const wake of this.#acceptWaiters.splice(0)) wake();
      const links = [...this.#links];
      for (const link of links) link.close(1001);
      this.#closing = (async () => {
        await new Promise((resolve) => {
          this.#server.close(() => resolve(undefined));
          this.#server.closeAllConnections();
        });
        await Promise.all(links.map((link) => link.closed));
        this.#wss.close();
      })();
    }
    return this.#closing;
  }
}

/**
 * @typedef {object} ListenOptions
 * @property {string} [token] require `?token=<token>` in the request URL (403 otherwise).
 * @property {string[] | null} [origins] the browser origins allowed (default: pages on
 *   localhost, 127.0.0.1 or [::1]).
 * @property {number} [timeout] ms a client may take to send its handshake request.
 * @property {number} [backlog] connections the kernel holds until they are accepted (default
 *   `BACKLOG` = 4096; the kernel caps it at `net.core.somaxconn`).
 * @property {number} [maxLine] the largest message accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] called with each DecodeError.
 * @property {number | null} [pingInterval] ms between keepalive pings (null or 0: none).
 * @property {boolean} [reconnect] a client option, ignored here (one URL serves both sides).
 * @property {AbortSignal} [signal] aborting it closes the listener.
 */

/**
 * Serves WebSocket connections on `address` (port 0: a free port, see `.url`).
 * @param {import("../urls.js").Address} address `ws://host:port/path`; only `path` is served.
 * @param {ListenOptions} [options]
 * @returns {Promise<WsListener>}
 * @throws {TransportError} the address cannot be listened on.
 * @throws {TypeError} an unknown option.
 */
export async function listen(address, options = {}) {
  const {
    token,
    origins = null,
    timeout = TIMEOUT,
    maxLine = MAX_LINE,
    onError,
    pingInterval = PING_INTERVAL,
    signal,
    backlog = BACKLOG,
    ...rest
  } = options;
  delete rest.reconnect; // a client option: accepted, so that one URL serves both sides
  refuseUnknown(rest, "listen");
  checkOptions({ maxLine, timeout, token });
  checkBacklog(backlog);
  const listener = new WsListener(address, { token, origins, maxLine, onError, pingInterval, timeout, signal });
  await listener.start(address, backlog);
  return listener;
}
