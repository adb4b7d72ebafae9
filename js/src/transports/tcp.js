/**
 * TCP: NDJSON both ways over `tcp://host:port`. Mirrors `src/bothways/transports/tcp.py` name for
 * name (camelCase here, times in milliseconds); its module docstring is the normative text.
 *
 * `connect(address, options)` is the client, `listen(address, options)` the server; both are
 * duplex. `ServerGate`, `ClientHandshake` and `backoff` are the sans-I/O pieces.
 *
 * Wire (the same bytes as Python)
 * -------------------------------
 * - Both directions are NDJSON (spec/PROTOCOL.md §2), decoded by an Inbox: a malformed or
 *   over-long line goes to `onError` with its line number, and the stream goes on.
 * - No token on either side: no handshake at all (plain NDJSON: `nc` works).
 * - A client given `token` sends `{"bothways":"hello","token":"<token>"}` as its first line and
 *   waits (up to `timeout`) for the answer. A server always looks at the first line of each
 *   connection (at most `HELLO_LIMIT` = 4096 bytes before its `\n`): a JSON object whose
 *   `"bothways"` member is `"hello"` is answered `{"bothways":"welcome"}` when the server has no
 *   token or the same one (`crypto.timingSafeEqual` on the UTF-8 bytes), else
 *   `{"bothways":"refused","reason":"wrong token"}` and the connection is closed. The hello is
 *   never delivered but counts as line 1.
 * - A server with a token answers any other first line (or none within 4096 bytes, or none within
 *   `timeout`) with `{"bothways":"refused","reason":"token required"}` and closes; nothing from
 *   that connection is delivered. Without a token, such a first line is an ordinary message.
 * - Lines before the welcome are messages, delivered after it; a `refused` line fails `connect`
 *   with `ConnectError(url, "refused by the server: <reason>")`. A client without a token that
 *   gets a `refused` line first throws that ConnectError from `receive()`, and also from its
 *   next `send()`/`sendMany()` or `close()` when it only sends (it watches the first line the
 *   server sends, `firstRefusal`); the message adds "(nothing sent on this connection was
 *   delivered)", and `close()` does not call the connection confirmed. Once thrown, sends
 *   throw it again and `close()` is quiet.
 * - The token never appears in a URL we show.
 *
 * Behaviour
 * ---------
 * - `connect` options: `token`, `timeout` (connect + handshake, and the wait for the confirmation
 *   of `close()`; default 10000 ms), `reconnect` (default false), `maxLine`, `onError`,
 *   `signal`. Refused, unresolvable, timed out: ConnectError naming the URL. TCP_NODELAY; sends
 *   in one tick leave in one writev().
 * - Without `reconnect`, a lost peer gives TransportClosed on `send()`/`receive()` (a clean close
 *   ends iteration after the last message). With `reconnect`, a lost connection is opened again
 *   with back-off (`backoff`: 50 ms doubling to 5000 ms) and the handshake; `receive()` goes on,
 *   `send()` waits for it; only `close()` (or the signal) stops it. What was sent is delivered
 *   at least once: a reconnecting client keeps the newest `RESEND` (1 MiB) of what it wrote on
 *   its connection (whole writes; the last one always) and writes it again, first, on the next
 *   one, since nothing says how much of it the peer had read; so messages from before a break
 *   arrive twice when the peer had read them (a seq or id in the message lets the application
 *   drop the copy). A refusal while reconnecting is thrown as ConnectError, not retried (the
 *   channel is closed; `close()` still reports a loss). With `reconnect`, the first `connect`
 *   is retried too, on the same schedule (`firstRetry`), until `timeout` runs out (a client
 *   started a moment before its server waits for it), then its last ConnectError is thrown; a
 *   `refused` answer is thrown at once. Without `reconnect`, it fails at once.
 * - `listen` options: `token`, `timeout` (for the hello, with a token), `maxLine`, `onError`,
 *   `backlog` (default `BACKLOG` = 4096), `signal`; `reconnect` is accepted and ignored (and
 *   `backlog` by `connect`), so one URL serves both sides. Resolves once bound; `url` has the
 *   real port.
 * - Which connection goes where is `Router`'s rule (./base.js), the same as ws's: a connection
 *   whose handshake is done goes to an `accept()` that waits, else to the merged stream once the
 *   listener merges (from its first `receive()`, iteration or `send()` on), else it is held
 *   (read ahead into its own inbox, `READ_AHEAD` bytes at most) until one of them takes it.
 *   `accept()` takes the oldest held connection (one that connected before the call included),
 *   with everything it sent, as a `TcpConnection`; a merged connection is never handed to
 *   `accept()`. Merged connections feed `receive()` and iteration in arrival order, and `send()`
 *   broadcasts to them (failed ones are dropped). A merged client that goes away just leaves; a
 *   held one that goes away with nothing sent is forgotten. Closing the listener closes every
 *   connection.
 * - A listener answers a client's FIN with its own as soon as it has read everything before it
 *   (merged and accepted connections alike: an accepted one can still receive what was read, but
 *   no longer send), which is what confirms a client's `close()`.
 * - A client's `close()` loses nothing silently: it sends a FIN after our data, reads and drops
 *   what the peer still sends, and resolves once the peer's FIN has come (and our data has
 *   been handed to the kernel). No FIN within `timeout`, or a reset: it rejects with
 *   TransportClosed, `<url>: close: the peer did not confirm within <s> s that it read what we
 *   sent (<n> bytes on this connection); it may be lost` (or `... the connection was reset
 *   before the peer confirmed it read what we sent (...)`), and the socket is destroyed. `<n>`
 *   is what the connection carried, the hello excluded. A connection that carried nothing is
 *   closed as a listener's are (below), without waiting; so is one whose loss a `send()` or
 *   `receive()` has already reported. With `reconnect`, `close()` wants the FIN on the newest
 *   connection only (older ones were drained, what they carried went again), and a FIN that
 *   was there before ours (the server went away, maybe before reading our last writes; the
 *   event loop turns until what is in the kernel is read, so it is seen even when nobody
 *   reads) confirms nothing, nor does a connection given up by a reconnection under way: the
 *   connection is opened again (back-off `firstRetry`), what it kept is written again, and that
 *   one must confirm, all within `timeout`, else the last failure is thrown. Then, only bytes
 *   sent on a connection that broke when more than `RESEND` were unconfirmed cannot have been
 *   sent again: `close()` rejects with TransportClosed, `<url>: close: <n> bytes were sent on
 *   connections that broke before the peer confirmed them, more than the last 1048576 bytes
 *   that were sent again (opened again <reconnects> times); they may be lost`. 1,000
 *   reconnecting Node clients whose Python server is restarted under them lose nothing
 *   (tests/cross/test_many_clients.py). Called again while it waits, `close()` gives the same
 *   outcome; after, it resolves.
 * - A listener's connections (and a client's, when there is nothing to confirm) close without
 *   loss too: a FIN after our data, then what the peer still sends is read and dropped until
 *   its FIN (`LINGER` = 2000 ms at most) before the socket is destroyed, in the background
 *   (unref'd), since destroying it with unread input would send a reset that drops what the
 *   peer had not read.
 * - Backpressure: `send()` waits for 'drain'; a listener reads at most `READ_AHEAD` bytes ahead of
 *   its consumer per stream, then pauses the sockets.
 *
 * Why the FIN is the confirmation: the accept queue
 * -------------------------------------------------
 * The kernel completes a TCP handshake by itself and puts the connection in the listening socket's
 * accept queue, which holds `backlog` connections (capped by `net.core.somaxconn`; Node's own
 * default is 511) until the program accepts them. When the queue is full, Linux (with
 * `net.ipv4.tcp_abort_on_overflow` = 0, the default) drops the handshake's last ACK and counts it
 * in `TcpExtListenOverflows` (`nstat -az TcpExtListenOverflows`): the client believes it is
 * connected, its `connect` succeeds, it sends its data and its FIN, and its kernel takes them into
 * the send buffer, so every `write` succeeds too. The server has no connection; it keeps the
 * half-made one for a while (retransmitting its SYN-ACK) and may still accept it late, once the
 * queue has room, or drop it and answer the client's next segments with a reset. With a `close()`
 * that only handed our data to the kernel, nothing said so: 3,000 clients opened at once (20
 * messages each) into a Node listener with backlog 511 delivered 33,000 to 48,000 of their 60,000
 * messages, every `close()` resolved, and the lost clients' connections were reset within 3 s
 * (after `close()` had resolved). Hence a bigger `backlog` (the accept loop does nothing slow per
 * connection: Node accepts every waiting connection as soon as the event loop turns; with 4096,
 * none of those 3,000 overflowed), and, because no backlog is big enough for every burst, a
 * `close()` that waits for proof: a bothways listener sends its FIN only after it has read
 * everything before the client's FIN, so that FIN is the confirmation; without it, the client says
 * that what it sent may be lost instead of saying nothing (with backlog 511, the clients that lost
 * messages, 550 to 1,000 of the 3,000, each got that error, and every other message arrived). The
 * FIN costs nothing and works with any server that reads to the end and closes; a confirmation with
 * data would need an acknowledgement in the protocol.
 *
 * @module bothways/tcp
 */

import { timingSafeEqual } from "node:crypto";
import net from "node:net";
import { setTimeout as delay } from "node:timers/promises";

import { ConnectError, DecodeError, TransportClosed, TransportError } from "../errors.js";
import { Address } from "../urls.js";
import { MAX_LINE, decode, encode } from "../wire.js";
import {
  BACKLOG,
  BACKOFF_CAP,
  BACKOFF_FIRST,
  Channel,
  Inbox,
  Listener,
  Router,
  backoff,
  checkBacklog,
  firstRetry,
} from "./base.js";

export { BACKLOG, BACKOFF_CAP, BACKOFF_FIRST, backoff }; // part of this module's API, as in tcp.py

/** The longest first line a server reads when looking for a hello, in bytes before the newline. */
export const HELLO_LIMIT = 4096;
/**
 * Default milliseconds for connect + handshake, and for the peer to confirm a client's `close()`
 * (on a server with a token: for the hello).
 */
export const TIMEOUT = 10_000;
const READ_AHEAD = 1024 * 1024; // bytes read ahead of the consumer, per stream, before pausing
/**
 * Milliseconds a closed connection goes on reading (and dropping) what the peer still sends,
 * waiting for its FIN, so that the kernel does not answer it with a reset that would drop our
 * last data at the peer.
 */
export const LINGER = 2000;
/**
 * Bytes of what a reconnecting client sent on its connection that it keeps, newest first, to
 * send again on the next connection if this one breaks before the peer confirms them (not
 * exported: tcp.py's `RESEND` is not in its `__all__` either).
 */
const RESEND = 1024 * 1024;

const WAITING = "waiting";
const OPEN = "open";
const REFUSED = "refused";
const OPTIONS = ["token", "timeout", "reconnect", "maxLine", "onError", "signal", "backlog"];

// ----------------------------------------------------------------------------------------------
// Sans-I/O: the handshake and the back-off

/**
 * The client's first line when it has a token.
 * @param {string} token
 * @returns {string}
 */
export function helloLine(token) {
  return encode({ bothways: "hello", token });
}

/** The server's answer to a good hello. */
export const WELCOME = encode({ bothways: "welcome" });

/**
 * The server's answer to a connection it does not take.
 * @param {string} reason
 * @returns {string}
 */
export function refusedLine(reason) {
  return encode({ bothways: "refused", reason });
}


/**
 * `"hello"`, `"welcome"` or `"refused"` for a handshake line's value, else null.
 * @param {unknown} value
 * @returns {string | null}
 */
function control(value) {
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    const kind = /** @type {Record<string, unknown>} */ (value).bothways;
    if (kind === "hello" || kind === "welcome" || kind === "refused") {
      return kind;
    }
  }
  return null;
}

/**
 * What a server does with the first line of a connection (sans-I/O).
 *
 * Feed it what the connection sends while `state` is `"waiting"`; each call returns
 * `[reply, data]`: a line to send back (the welcome or the refusal, else "") and bytes for the
 * connection's Inbox (everything after a hello, preceded by a newline so that the hello counts
 * as line 1; or, without a hello, everything from the first byte). Once `state` is `"refused"`,
 * send the reply and close the connection.
 */
export class ServerGate {
  /** @type {Buffer | null} */
  #token;
  /** @type {Buffer} */
  #held = Buffer.alloc(0);
  /** `"waiting"`, `"open"` or `"refused"`. @type {string} */
  state = WAITING;
  /** Why it was refused. @type {string} */
  reason = "";

  /** @param {string | null | undefined} token the server's token; none: any hello is welcome. */
  constructor(token) {
    this.#token = token == null ? null : Buffer.from(token, "utf8");
  }

  /**
   * Takes bytes received while waiting.
   * @param {Uint8Array} data
   * @returns {[string, Uint8Array]} the reply to send ("" for none) and the bytes for the Inbox
   *   (a Buffer).
   */
  feed(data) {
    const buf = this.#held.length > 0 ? Buffer.concat([this.#held, data]) : Buffer.from(data);
    const end = buf.subarray(0, HELLO_LIMIT + 1).indexOf(10);
    if (end < 0) {
      if (buf.length <= HELLO_LIMIT) {
        this.#held = buf;
        return ["", Buffer.alloc(0)];
      }
      this.#held = Buffer.alloc(0);
      return this.#notHello(buf);
    }
    this.#held = Buffer.alloc(0);
    let value = null;
    try {
      value = decode(buf.subarray(0, end));
    } catch (error) {
      if (!(error instanceof DecodeError)) {
        throw error;
      }
    }
    if (control(value) !== "hello") {
      return this.#notHello(buf);
    }
    const token = value.token;
    if (this.#token === null || (typeof token === "string" && sameToken(token, this.#token))) {
      this.state = OPEN;
      return [WELCOME, Buffer.concat([Buffer.from("\n"), buf.subarray(end + 1)])];
    }
    return [this.#refuse(typeof token === "string" ? "wrong token" : "token required"), Buffer.alloc(0)];
  }

  /**
   * The connection ended while waiting.
   * @returns {Uint8Array} the bytes for the Inbox (without a token), else empty (a Buffer).
   */
  feedEof() {
    const buf = this.#held;
    this.#held = Buffer.alloc(0);
    if (this.state !== WAITING) {
      return Buffer.alloc(0);
    }
    if (this.#token !== null) {
      this.state = REFUSED;
      this.reason = "token required";
      return Buffer.alloc(0);
    }
    this.state = OPEN;
    return buf;
  }

  /**
   * No hello within the timeout (servers with a token).
   * @returns {string} the refusal to send.
   */
  timedOut() {
    return this.#refuse("token required");
  }

  /**
   * @param {Buffer} buf
   * @returns {[string, Buffer]}
   */
  #notHello(buf) {
    if (this.#token !== null) {
      return [this.#refuse("token required"), Buffer.alloc(0)];
    }
    this.state = OPEN;
    return ["", buf];
  }

  /**
   * @param {string} reason
   * @returns {string}
   */
  #refuse(reason) {
    this.state = REFUSED;
    this.reason = reason;
    return refusedLine(reason);
  }
}

/**
 * @param {string} token
 * @param {Buffer} expected
 * @returns {boolean}
 */
function sameToken(token, expected) {
  const given = Buffer.from(token, "utf8");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The server answered the hello with a refusal (`message` is its reason). */
export class Refused extends Error {}

/** An error thrown by the `onError` policy, kept in its place among early values. */
class Raise {
  /** @param {unknown} error */
  constructor(error) {
    this.error = error;
  }
}

/**
 * The client's side of the token handshake (sans-I/O).
 *
 * Send `hello`, then give `check` each batch of values decoded from the server (the whole stream
 * goes through the connection's Inbox) until it returns true. Values before and after the
 * welcome are kept in `early`: deliver them first.
 */
export class ClientHandshake {
  /** @param {string} token */
  constructor(token) {
    /** The first line to send. @type {string} */
    this.hello = helloLine(token);
    /** Messages that came with the answer, in order. @type {unknown[]} */
    this.early = [];
  }

  /**
   * Looks for the server's answer among `values`.
   * @param {unknown[]} values
   * @returns {boolean} true once welcomed.
   * @throws {Refused} the server refused us.
   */
  check(values) {
    for (let i = 0; i < values.length; i++) {
      const kind = control(values[i]);
      if (kind === "welcome") {
        this.early.push(...values.slice(0, i), ...values.slice(i + 1));
        return true;
      }
      if (kind === "refused") {
        throw new Refused(String(/** @type {any} */ (values[i]).reason ?? ""));
      }
    }
    this.early.push(...values);
    return false;
  }
}

/**
 * The reason, when the server's first message is a refusal (clients without a token).
 * @param {unknown} value the first message.
 * @returns {string | null}
 */
export function refusal(value) {
  return control(value) === "refused" ? String(/** @type {any} */ (value).reason ?? "") : null;
}

/**
 * The reason, when `data` (the first bytes a server sent) starts with a whole refusal line;
 * null otherwise (another line, or none whole yet). A client without a token looks there
 * before it sends, and while it closes, since a server that wants a token answers its first
 * line with a refusal that the client, sending only, would never read. Mirror of Python's
 * `first_refusal`.
 * @param {Uint8Array} data
 * @returns {string | null}
 */
export function firstRefusal(data) {
  const end = data.subarray(0, HELLO_LIMIT + 1).indexOf(0x0a);
  if (end < 0) {
    return null;
  }
  try {
    return refusal(decode(data.subarray(0, end)));
  } catch {
    return null;
  }
}

// ----------------------------------------------------------------------------------------------
// Options, errors and small helpers

/**
 * @typedef {object} TcpOptions
 * @property {string} [token] the shared secret (see the module's "Wire").
 * @property {number} [timeout] ms for connect + handshake (with `reconnect`: for all the
 *   attempts of the first connect), and for the peer to confirm `close()` (listen: for the
 *   hello); default 10000.
 * @property {boolean} [reconnect] clients: open the connection again when it is lost, and retry
 *   the first one until `timeout` runs out (not after a refusal).
 * @property {number} [backlog] listeners: connections the kernel holds until they are accepted
 *   (default `BACKLOG` = 4096; the kernel caps it at `net.core.somaxconn`).
 * @property {number} [maxLine] the longest line accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] the policy for bad lines.
 * @property {AbortSignal} [signal] aborting it closes the channel or listener.
 */

/**
 * @param {Record<string, any>} options
 * @returns {Required<Omit<TcpOptions, "signal" | "onError" | "token">> & TcpOptions}
 */
function checkOptions(options) {
  for (const key of Object.keys(options)) {
    if (!OPTIONS.includes(key)) {
      throw new TypeError(`tcp: unknown option ${JSON.stringify(key)} (known: ${OPTIONS.join(", ")})`);
    }
  }
  const {
    token = undefined,
    timeout = TIMEOUT,
    reconnect = false,
    maxLine = MAX_LINE,
    onError,
    signal,
    backlog = BACKLOG,
  } = options;
  if (token != null) {
    if (typeof token !== "string" || token === "") {
      throw new TypeError(`token must be a non-empty string, not ${String(token)}`);
    }
    if (Buffer.byteLength(helloLine(token)) > HELLO_LIMIT) {
      throw new RangeError(`token is too long (the hello line must fit in ${HELLO_LIMIT} bytes)`);
    }
  }
  if (typeof timeout !== "number" || !(timeout > 0)) {
    throw new RangeError(`timeout must be a number of milliseconds > 0, not ${String(timeout)}`);
  }
  if (!Number.isInteger(maxLine) || maxLine < 1) {
    throw new RangeError(`maxLine must be a whole number of bytes >= 1, not ${String(maxLine)}`);
  }
  if (onError != null && typeof onError !== "function") {
    throw new TypeError("onError must be a function");
  }
  return {
    token: token ?? undefined,
    timeout,
    reconnect: Boolean(reconnect),
    maxLine,
    onError,
    signal,
    backlog: checkBacklog(backlog),
  };
}

/**
 * @param {Address} address
 * @returns {[string, number, string]} host, port and the URL to show (no token).
 */
function target(address) {
  if (!(address instanceof Address) || address.scheme !== "tcp" || address.host === null || address.port === null) {
    throw new TypeError(`not a tcp:// Address: ${String(address)}`);
  }
  return [address.host, address.port, new Address("tcp", { host: address.host, port: address.port }).url];
}

/**
 * @param {NodeJS.ErrnoException} error
 * @param {string} host
 * @returns {string}
 */
function connectReason(error, host) {
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection refused (nothing listens there)";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_FAIL":
    case "EAI_NONAME":
      return `cannot resolve host '${host}' (${error.code})`;
    default:
      return `cannot connect: ${error.message}`;
  }
}

/**
 * @param {unknown} error
 * @returns {string}
 */
function lost(error) {
  if (error === null || error === undefined) {
    return "the peer closed the connection";
  }
  const code = /** @type {NodeJS.ErrnoException} */ (error).code;
  return `connection lost: ${code ?? /** @type {Error} */ (error).message ?? String(error)}`;
}

/**
 * @param {number} ms
 * @returns {string} the seconds, as Python's `f"{seconds:g}"` writes them
 */
function seconds(ms) {
  return String(Number((ms / 1000).toPrecision(6)));
}

/** @type {Set<import("node:stream").Writable>} sockets corked until the next tick */
const corked = new Set();

/**
 * `socket.write(data)`, corked until the next tick: a burst of `await send()` leaves in one
 * writev() instead of one system call (and one TCP segment) each.
 * @param {net.Socket} socket
 * @param {string | Uint8Array} data
 * @returns {boolean} false: wait for 'drain'.
 */
function write(socket, data) {
  if (!corked.has(socket)) {
    corked.add(socket);
    socket.cork();
    process.nextTick(() => {
      if (corked.delete(socket)) {
        socket.uncork();
      }
    });
  }
  return socket.write(data);
}

/**
 * Waits until `socket` wants more data ('drain').
 * @param {net.Socket} socket
 * @returns {Promise<void>}
 * @throws {Error} the socket failed or closed first.
 */
function drained(socket) {
  return new Promise((resolve, reject) => {
    const done = (/** @type {Error | undefined} */ error) => {
      socket.removeListener("drain", onDrain);
      socket.removeListener("error", onError);
      socket.removeListener("close", onClose);
      if (error) {
        reject(error);
      } else {
        resolve();
      }
    };
    const onDrain = () => done(undefined);
    const onError = (/** @type {Error} */ error) => done(error);
    const onClose = () => done(new Error("the connection closed"));
    socket.on("drain", onDrain);
    socket.on("error", onError);
    socket.on("close", onClose);
  });
}

/**
 * @param {net.Socket} socket
 * @returns {boolean}
 */
function writable(socket) {
  return !socket.destroyed && socket.writable && !socket.writableEnded;
}

/** A list of callbacks to wake together. */
class Waiters {
  /** @type {(() => void)[]} */
  #list = [];

  /** @returns {Promise<void>} resolves at the next `wake()` */
  wait() {
    return new Promise((resolve) => this.#list.push(() => resolve()));
  }

  wake() {
    const list = this.#list;
    this.#list = [];
    for (const wake of list) {
      wake();
    }
  }
}

// ----------------------------------------------------------------------------------------------
// Client

/**
 * The error of a close the peer did not confirm (the same words as tcp.py's `_unconfirmed`).
 * @param {string} url
 * @param {number} timeout ms.
 * @param {number} sent bytes on the connection.
 * @param {"timeout" | "reset"} outcome
 * @param {unknown} cause
 * @returns {TransportClosed}
 */
function unconfirmed(url, timeout, sent, outcome, cause) {
  const what = `what we sent (${sent} bytes on this connection); it may be lost`;
  return new TransportClosed(
    outcome === "timeout"
      ? `${url}: close: the peer did not confirm within ${seconds(timeout)} s that it read ${what}`
      : `${url}: close: the connection was reset before the peer confirmed it read ${what}`,
    cause ? { cause } : undefined,
  );
}

/**
 * The error of a reconnecting client's close when connections broke under more than it could
 * send again (`RESEND` bytes); tcp.py's `_broken`.
 * @param {string} url
 * @param {number} sent
 * @param {number} reconnects
 * @returns {TransportClosed}
 */
function broken(url, sent, reconnects) {
  return new TransportClosed(
    `${url}: close: ${sent} bytes were sent on connections that broke before the peer confirmed ` +
      `them, more than the last ${RESEND} bytes that were sent again (opened again ${reconnects} ` +
      "times); they may be lost",
  );
}

/**
 * What a reconnecting client sent on its connection, the newest `RESEND` bytes of it (whole
 * writes, the last one always), to send again first on the next connection when this one
 * breaks: the peer gets everything at least once (what it had read already, twice). Sans-I/O;
 * tcp.py's `_Kept`.
 */
class Kept {
  /** @type {(string | Buffer)[]} */
  #chunks = [];
  /** @type {number[]} */
  #sizes = [];
  #head = 0; // chunks before it are no longer kept
  size = 0; // bytes kept
  dropped = 0; // bytes sent but no longer kept: beyond sending again

  /** @param {string | Uint8Array} data a write, as given to the socket. */
  add(data) {
    const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    this.#chunks.push(typeof data === "string" ? data : Buffer.from(data)); // (a copy: the caller may reuse it)
    this.#sizes.push(size);
    this.size += size;
    while (this.size > RESEND && this.#chunks.length - this.#head > 1) {
      const old = this.#sizes[this.#head];
      this.size -= old;
      this.dropped += old;
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
  }

  /** @returns {number} the bytes dropped since the last call. */
  takeDropped() {
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }

  /** @returns {Buffer} what is kept, oldest first, as one chunk. */
  data() {
    return Buffer.concat(this.#chunks.slice(this.#head).map((chunk) => (typeof chunk === "string" ? Buffer.from(chunk) : chunk)));
  }
}

/** One TCP connection of a client channel, with the Inbox of what it received. */
class Link {
  /** @type {unknown[]} values (and `Raise`s) to deliver before the inbox's */
  early = [];
  ended = false;
  /** @type {unknown} */
  error = null;
  fin = false; // the peer's FIN has come
  spent = false; // given up (its loss reported, or replaced): close() has nothing to confirm on it
  hello = 0; // bytes of the hello line, not counted in `sent`
  /** @type {Kept | null} a reconnecting client's: to send again if it breaks */
  kept = null;
  /** @type {string | null} the server's refusal, once seen (clients without a token) */
  refused = null;
  told = false; // the refusal was thrown to the application already
  /** @type {Buffer | null} the first bytes received, until they show whether it is a refusal */
  #head = null;
  #queued = 0;
  #paused = false;
  #waiters = new Waiters();

  /**
   * @param {import("node:net").Socket} socket
   * @param {Inbox} inbox
   * @param {boolean} fresh nothing received yet (a client without token checks for a refusal).
   */
  constructor(socket, inbox, fresh) {
    this.socket = socket;
    this.inbox = inbox;
    this.fresh = fresh;
    if (fresh) {
      this.#head = Buffer.alloc(0);
      socket.on("data", this.#watch); // stays while close() drops what comes
      socket.once("end", () => this.#decide());
    }
    socket.on("data", this.#onData);
    socket.on("end", () => {
      this.fin = true;
    });
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    socket.on("error", (error) => {
      this.error ??= error;
    });
  }

  /**
   * Looks at the first line the server sends for a refusal (see `firstRefusal`).
   * @param {Buffer} chunk
   */
  #watch = (chunk) => {
    if (this.#head !== null) {
      this.#head = Buffer.concat([this.#head, chunk.subarray(0, HELLO_LIMIT + 1 - this.#head.length)]);
      if (this.#head.includes(0x0a) || this.#head.length > HELLO_LIMIT) {
        this.#decide();
      }
    }
  };

  #decide() {
    if (this.#head !== null) {
      this.refused ??= firstRefusal(this.#head);
      this.#head = null;
      this.socket.removeListener("data", this.#watch);
    }
  }

  /** @param {Buffer} chunk */
  #onData = (chunk) => {
    const inbox = this.inbox;
    inbox.feed(chunk);
    if (inbox.length === 0) {
      this.#queued = 0;
    } else if ((this.#queued += chunk.length) >= READ_AHEAD && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
    this.#waiters.wake();
  };

  #onEnd = () => {
    if (!this.ended) {
      this.ended = true;
      this.inbox.feedEof();
      this.#waiters.wake();
    }
  };

  /** Reads on (after a pause for backpressure); call when the inbox is empty. */
  resume() {
    this.#queued = 0;
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** @returns {Promise<void>} resolves when data comes or the connection ends */
  wait() {
    return this.#waiters.wait();
  }

  /**
   * Every value waiting in the inbox, with the policy's errors as `Raise`s in their place.
   * @returns {unknown[]}
   */
  drain() {
    const out = [];
    while (this.inbox.length > 0) {
      try {
        out.push(this.inbox.pop());
      } catch (error) {
        out.push(new Raise(error));
      }
    }
    return out;
  }

  /**
   * Bytes written on this connection (buffered ones included), the hello excluded.
   * @returns {number}
   */
  get sent() {
    return this.socket.bytesWritten - this.hello;
  }

  /**
   * Ends the connection, reporting a line it cut short (reconnecting, or its loss reported):
   * what it carried is beyond confirming.
   */
  destroy() {
    this.spent = true;
    this.socket.destroy();
    this.#onEnd();
  }

  /**
   * Closes the connection once the peer has confirmed that it read everything we sent: our FIN
   * after our data, then its FIN, within `timeout` ms; what it still sends meanwhile is read
   * and dropped. A connection with nothing to confirm is closed as `stop()` does.
   * @param {number} timeout ms.
   * @param {boolean} [strict] (a reconnecting client) a FIN already there before ours confirms
   *   nothing: the server went away, maybe before reading our last writes.
   * @returns {Promise<"confirmed" | "timeout" | "reset">} "reset": the connection failed (or
   *   closed without the peer's FIN, or, strict, with a FIN from before ours) first. Unless
   *   confirmed, the socket is destroyed.
   */
  async confirm(timeout, strict = false) {
    const socket = this.socket;
    if (this.spent || this.sent === 0) {
      await this.stop();
      return "confirmed";
    }
    this.ended = true;
    this.#waiters.wake();
    corked.delete(socket);
    socket.uncork();
    socket.removeListener("data", this.#onData);
    socket.on("data", () => {}); // dropped
    socket.resume();
    if (strict && (await this.#finCame())) {
      socket.destroy();
      return "reset";
    }
    return new Promise((resolve) => {
      /** @param {"confirmed" | "timeout" | "reset"} outcome */
      const finish = (outcome) => {
        clearTimeout(timer);
        socket.removeListener("end", check);
        socket.removeListener("finish", check);
        socket.removeListener("close", check);
        socket.destroy(); // confirmed: nothing is left to read or to write
        resolve(outcome);
      };
      const check = () => {
        if (this.fin && socket.writableFinished && this.error === null) {
          finish("confirmed");
        } else if (this.error !== null || socket.destroyed) {
          finish("reset");
        }
      };
      const timer = setTimeout(() => finish("timeout"), timeout);
      socket.on("end", check);
      socket.on("finish", check);
      socket.on("close", check);
      if (!socket.writableEnded && !socket.destroyed) {
        socket.end();
      }
      check();
    });
  }

  /**
   * Whether the peer's FIN (or a failure) is here already, before ours. The socket flows (its
   * input dropped); the event loop turns, so that what the kernel holds is read, until a turn
   * brings no more data (a FIN behind unread input included), 64 turns at most.
   * @returns {Promise<boolean>}
   */
  async #finCame() {
    const socket = this.socket;
    let moved = true;
    const onData = () => {
      moved = true;
    };
    socket.on("data", onData);
    for (let turn = 0; moved && !this.fin && !socket.destroyed && turn < 64; turn++) {
      moved = false;
      await new Promise((resolve) => setImmediate(resolve));
    }
    socket.removeListener("data", onData);
    return this.fin || this.error !== null || socket.destroyed;
  }

  /**
   * Ends the connection quietly (closing): nothing more is fed or reported; see `linger`.
   * @returns {Promise<void>}
   */
  stop() {
    this.ended = true;
    this.#waiters.wake();
    return linger(this.socket);
  }
}

/**
 * Opens a TCP connection.
 * @param {string} host
 * @param {number} port
 * @param {number} timeout ms.
 * @param {string} url
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<net.Socket>}
 * @throws {ConnectError} refused, unresolvable or timed out.
 * @throws {TransportClosed} the signal was aborted.
 */
function dial(host, port, timeout, url, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TransportClosed(`${url}: aborted`, { cause: signal.reason }));
      return;
    }
    const socket = net.connect({ host, port, noDelay: true });
    const finish = (/** @type {Error | null} */ error) => {
      clearTimeout(timer);
      socket.removeListener("connect", onConnect);
      socket.removeListener("error", onError);
      signal?.removeEventListener("abort", onAbort);
      if (error !== null) {
        socket.destroy();
        reject(error);
      } else {
        resolve(socket);
      }
    };
    const onConnect = () => finish(null);
    const onError = (/** @type {NodeJS.ErrnoException} */ error) =>
      finish(new ConnectError(connectReason(error, host), { url, cause: error }));
    const onAbort = () => finish(new TransportClosed(`${url}: aborted`, { cause: signal?.reason }));
    const timer = setTimeout(() => finish(new ConnectError(`no connection within ${seconds(timeout)} s`, { url })), timeout);
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Connects and shakes hands.
 * @param {string} host
 * @param {number} port
 * @param {string} url
 * @param {{token?: string, timeout: number, maxLine: number, onError?: any, signal?: AbortSignal}} options
 * @returns {Promise<Link>}
 * @throws {ConnectError} the server cannot be reached or does not answer.
 * @throws {Refused} the server refused the token.
 */
async function open(host, port, url, options) {
  const { token, timeout, maxLine, onError, signal } = options;
  const deadline = Date.now() + timeout;
  const socket = await dial(host, port, timeout, url, signal);
  socket.setNoDelay(true);
  const link = new Link(socket, new Inbox({ maxLine, onError }), token === undefined);
  if (token === undefined) {
    return link;
  }
  try {
    const handshake = new ClientHandshake(token);
    write(socket, handshake.hello);
    link.hello = Buffer.byteLength(handshake.hello);
    for (;;) {
      if (handshake.check(link.drain())) {
        break;
      }
      if (link.ended) {
        throw new ConnectError(
          link.error ? `connection lost during the handshake: ${lost(link.error)}` : "the server closed the connection during the handshake",
          { url, cause: link.error ?? undefined },
        );
      }
      if (signal?.aborted) {
        throw new TransportClosed(`${url}: aborted`, { cause: signal.reason });
      }
      const left = deadline - Date.now();
      /** @type {NodeJS.Timeout | undefined} */
      let timer;
      const late = new Promise((resolve) => {
        timer = setTimeout(resolve, Math.max(left, 1), "late");
      });
      const aborted = new Promise((resolve) => signal?.addEventListener("abort", () => resolve("aborted"), { once: true }));
      const why = await Promise.race([link.wait(), late, aborted]);
      clearTimeout(timer);
      if (why === "late") {
        throw new ConnectError(`no answer to the hello within ${seconds(timeout)} s (is it a bothways server?)`, { url });
      }
    }
    link.early = handshake.early;
    return link;
  } catch (error) {
    link.destroy();
    throw error;
  }
}

/**
 * The client's side of a TCP connection (made by `connect`): duplex.
 */
export class TcpChannel extends Channel {
  #host;
  #port;
  #options;
  /** @type {Link} the newest connection (senders use it) */
  #link;
  /** @type {Link} the one `receive()` drains (an old one until it is empty) */
  #rlink;
  /** @type {Promise<Link> | null} */
  #relinking = null;
  #closed = false;
  /** @type {Promise<void> | null} the outcome of close() while it waits */
  #closing = null;
  /** @type {(() => void) | null} ends the back-off sleep early (close) */
  #interrupt = null;
  #brokenSent = 0; // bytes sent on connections that broke, beyond what was sent again
  #wasRefused = false; // a refusal closed us: close() has no connection to confirm, only a loss to report
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `connect`.
   * @param {Link} link
   * @param {string} url
   * @param {string} host
   * @param {number} port
   * @param {ReturnType<typeof checkOptions>} options
   */
  constructor(link, url, host, port, options) {
    super();
    /** The server's URL (without the token). @type {string} */
    this.url = url;
    /** How many times the connection was opened again. @type {number} */
    this.reconnects = 0;
    this.#link = link;
    this.#rlink = link;
    if (options.reconnect) {
      link.kept = new Kept();
    }
    this.#host = host;
    this.#port = port;
    this.#options = options;
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /**
   * Sends one message; waits for 'drain' when the socket's buffer is full (and, with
   * `reconnect`, while the connection is down).
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot be sent.
   * @throws {TransportClosed} the peer went away (without `reconnect`), or we closed.
   * @throws {ConnectError} reconnecting, the server refused us.
   */
  send(value) {
    let data;
    try {
      data = encode(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendBytes(data);
  }

  /**
   * Writes encoded NDJSON lines as they are (`sendMany` comes here with one chunk).
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   * @throws {TransportClosed | ConnectError} as `send`.
   */
  async sendBytes(data) {
    let link = this.#link;
    for (;;) {
      if (this.#closed) {
        throw this.#closedError();
      }
      if (link.refused !== null) {
        link.told = true;
        throw this.#refusal(link);
      }
      let cause = link.error;
      if (cause === null && writable(link.socket)) {
        link.kept?.add(data);
        if (write(link.socket, data)) {
          return;
        }
        try {
          await drained(link.socket);
          return;
        } catch (error) {
          cause = link.error ?? error;
        }
        if (link.kept !== null) {
          await this.#relink(link, cause); // it is kept: the next connection sends it again first
          return;
        }
      }
      link = await this.#relink(link, cause);
    }
  }

  /**
   * The next message.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the peer closed (without `reconnect`), or we closed.
   * @throws {ConnectError} a server that wants a token refused us.
   * @throws {DecodeError} a bad line, when `onError` is `raiseError`.
   */
  receive() {
    const link = this.#rlink;
    if (!this.#closed && link.inbox.length > 0 && link.early.length === 0 && !link.fresh) {
      try {
        return Promise.resolve(link.inbox.pop()); // the fast path: one promise per message
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receive();
  }

  async #receive() {
    let link = this.#rlink;
    for (;;) {
      if (this.#closed) {
        throw this.#closedError();
      }
      if (link.early.length > 0) {
        const item = link.early.shift();
        if (item instanceof Raise) {
          throw item.error;
        }
        return item;
      }
      if (link.inbox.length > 0) {
        const value = link.inbox.pop();
        if (link.fresh) {
          link.fresh = false;
          const reason = refusal(value);
          if (reason !== null) {
            link.refused = reason;
            link.told = true;
            throw new ConnectError(`refused by the server: ${reason}`, { url: this.url });
          }
        }
        return value;
      }
      if (link.ended) {
        link = this.#rlink = await this.#relink(link, link.error);
        continue;
      }
      link.resume();
      await link.wait();
    }
  }

  /**
   * The connection `link` failed: the next one, or TransportClosed.
   * @param {Link} link
   * @param {unknown} cause
   * @returns {Promise<Link>}
   */
  #relink(link, cause) {
    if (this.#closed) {
      return Promise.reject(this.#closedError());
    }
    if (this.#link !== link) {
      return Promise.resolve(this.#link);
    }
    this.#relinking ??= this.#replace(link, cause).finally(() => {
      this.#relinking = null;
    });
    return this.#relinking;
  }

  /**
   * @param {Link} link
   * @param {unknown} cause
   * @returns {Promise<Link>}
   */
  async #replace(link, cause) {
    link.destroy(); // beyond confirming now: this error, or close(), says so
    const kept = link.kept;
    if (kept === null) {
      throw new TransportClosed(`${this.url}: ${lost(cause)}`, cause ? { cause } : undefined);
    }
    this.#brokenSent += kept.takeDropped(); // nobody is told now: close() says it
    for (let attempt = 0; ; attempt++) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, backoff(attempt));
        this.#interrupt = () => {
          clearTimeout(timer);
          resolve(undefined);
        };
      });
      this.#interrupt = null;
      if (this.#closed) {
        throw this.#closedError();
      }
      let next;
      try {
        next = await this.#reopen(kept, this.#options.timeout);
      } catch (error) {
        if (error instanceof Refused) {
          this.#refused(); // closed; the links are destroyed: close() has only a loss to report
          throw new ConnectError(`refused by the server: ${error.message}`, { url: this.url });
        }
        if (error instanceof ConnectError) {
          continue;
        }
        throw error;
      }
      if (this.#closed) {
        next.destroy();
        throw this.#closedError();
      }
      this.#link = next;
      this.reconnects++;
      return next;
    }
  }

  /**
   * A new connection, with what the broken one may not have delivered written first (handed to
   * the socket: a failure shows on the next send or receive, or in close(), which open it
   * again).
   * @param {Kept} kept
   * @param {number} timeout ms for connect + handshake.
   * @returns {Promise<Link>}
   * @throws {ConnectError | Refused} as `open`.
   */
  async #reopen(kept, timeout) {
    const next = await open(this.#host, this.#port, this.url, { ...this.#options, timeout, signal: undefined });
    next.kept = kept;
    if (kept.size > 0) {
      write(next.socket, kept.data());
    }
    return next;
  }

  /**
   * Reconnecting, the server refused us: the channel is closed for good. Unlike `close()`, this
   * leaves the report of what broken connections carried to the caller's `close()`.
   */
  #refused() {
    this.#closed = true;
    this.#wasRefused = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  /**
   * What a refused client throws: nothing it sent was delivered.
   * @param {Link} link
   * @returns {ConnectError}
   */
  #refusal(link) {
    return new ConnectError(`refused by the server: ${link.refused} (nothing sent on this connection was delivered)`, {
      url: this.url,
    });
  }

  /**
   * close(): whether the server refused us; throws the ConnectError unless `send()` or
   * `receive()` threw it already. Nothing to confirm: the server delivered nothing of ours.
   * @param {Link[]} links
   * @returns {Promise<boolean>}
   */
  async #closeRefused(links) {
    const refused = links.filter((link) => link.refused !== null);
    if (refused.length === 0) {
      return false;
    }
    for (const link of links) {
      link.destroy();
    }
    const untold = refused.find((link) => !link.told);
    for (const link of refused) {
      link.told = true;
    }
    if (untold !== undefined) {
      throw this.#refusal(untold);
    }
    return true;
  }

  /** @returns {TransportClosed} */
  #closedError() {
    if (this.#signal?.aborted) {
      return new TransportClosed(`${this.url}: the channel is closed (aborted)`, { cause: this.#signal.reason });
    }
    return new TransportClosed(`${this.url}: the channel is closed`);
  }

  /**
   * Closes the connection and stops reconnecting; resolves once the server has confirmed that it
   * read everything sent on it (its FIN after ours: quick when it reads; see the module's doc).
   * Safe to call twice: a call while the first waits has its outcome, a later one resolves.
   * @returns {Promise<void>}
   * @throws {TransportClosed} the server did not confirm within `timeout`, or reset the
   *   connection: what was sent may be lost (the message says how many bytes were at stake);
   *   or, with `reconnect`, bytes were sent on connections that broke (never confirmed).
   */
  close() {
    if (this.#closing === null) {
      this.#closed = true;
      this.#signal?.removeEventListener("abort", this.#onAbort);
      this.#interrupt?.();
      const closing = this.#confirm();
      this.#closing = closing;
      closing.then(
        () => {
          this.#closing = Promise.resolve();
        },
        () => {
          this.#closing = Promise.resolve();
        },
      );
    }
    return this.#closing;
  }

  async #confirm() {
    const links = [...new Set([this.#link, this.#rlink])];
    if (await this.#closeRefused(links)) {
      return;
    }
    if (this.#options.reconnect) {
      return this.#closeReconnecting();
    }
    const timeout = this.#options.timeout;
    const outcomes = await Promise.all(links.map((link) => link.confirm(timeout)));
    if (await this.#closeRefused(links)) {
      return;
    }
    for (let i = 0; i < links.length; i++) {
      const outcome = outcomes[i];
      if (outcome !== "confirmed") {
        throw unconfirmed(this.url, timeout, links[i].sent, outcome, links[i].error);
      }
    }
  }

  /**
   * close() with `reconnect`: the newest connection must confirm what it kept (strictly: a FIN
   * from before ours confirms nothing); when it does not, it is opened again (what it kept
   * written first) until `timeout` runs out. Then the bytes that fell out of the window.
   * @returns {Promise<void>}
   */
  async #closeReconnecting() {
    let link = this.#link;
    if (this.#rlink !== link) {
      this.#rlink.stop(); // an old one the receiver drained: what it carried went again
    }
    const timeout = this.#options.timeout;
    const deadline = performance.now() + timeout;
    for (let attempt = 0; !this.#wasRefused; ) {
      const kept = /** @type {Kept} */ (link.kept);
      // Given up by a reconnection under way (destroyed, not yet replaced): what it kept goes again.
      const outcome =
        link.spent && kept.size > 0 ? "reset" : await link.confirm(Math.max(deadline - performance.now(), 1), true);
      if (outcome === "confirmed") {
        break;
      }
      this.#brokenSent += kept.takeDropped();
      const failure = unconfirmed(this.url, timeout, link.sent, outcome, link.error);
      for (;;) {
        const wait = firstRetry(true, attempt, deadline - performance.now());
        if (wait === null) {
          throw failure;
        }
        await delay(wait);
        attempt++;
        try {
          link = await this.#reopen(kept, Math.max(Math.round(deadline - performance.now()), 1));
        } catch (error) {
          if (error instanceof ConnectError || error instanceof Refused) {
            continue;
          }
          throw error;
        }
        this.#link = link;
        this.reconnects++;
        break;
      }
    }
    if (this.#brokenSent > 0) {
      throw broken(this.url, this.#brokenSent, this.reconnects);
    }
  }
}

/**
 * Closes a socket without losing what we sent: a FIN after our data, then what the peer still
 * sends is read and dropped until its FIN (`LINGER` ms at most), and only then the socket is
 * destroyed. Destroying it with unread data would make the kernel send a reset, and a reset
 * makes the peer's kernel drop what it has not handed out yet. The lingering goes on in the
 * background (the socket no longer keeps the process alive).
 * @param {net.Socket} socket
 * @param {string} [last] a last line to send (a refusal).
 * @returns {Promise<void>} resolves once our data is handed to the kernel.
 */
function linger(socket, last = "") {
  if (socket.destroyed) {
    return Promise.resolve();
  }
  corked.delete(socket);
  socket.uncork();
  socket.removeAllListeners("data");
  socket.on("data", () => {}); // dropped
  socket.resume();
  socket.unref();
  const timer = setTimeout(() => socket.destroy(), LINGER);
  timer.unref();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once("close", done);
    if (socket.writableEnded) {
      resolve();
    } else {
      socket.end(last, () => resolve());
    }
  });
}

/**
 * Connects to a `tcp://host:port` server. With `reconnect`, a server that cannot be reached is
 * tried again (back-off from 50 ms, doubling up to 5 s) until `timeout` runs out.
 * @param {Address} address as parsed by `urls.parse` (the channels table passes it).
 * @param {TcpOptions} [options]
 * @returns {Promise<TcpChannel>}
 * @throws {ConnectError} refused, unresolvable, timed out (with `reconnect`: the last attempt's
 *   error, once `timeout` has run out), or the server refused the token (never retried).
 * @throws {TransportClosed} the signal was aborted.
 * @throws {TypeError | RangeError} an unknown or invalid option.
 */
export async function connect(address, options = {}) {
  const checked = checkOptions(options);
  const [host, port, url] = target(address);
  const { timeout, reconnect, signal } = checked;
  const deadline = performance.now() + timeout;
  // With reconnect, a server not up yet is waited for, `timeout` ms at most in all.
  for (let attempt = 0; ; attempt++) {
    const left = attempt === 0 ? timeout : Math.max(Math.round(deadline - performance.now()), 1);
    try {
      const link = await open(host, port, url, { ...checked, timeout: left });
      return new TcpChannel(link, url, host, port, checked);
    } catch (error) {
      if (error instanceof Refused) {
        throw new ConnectError(`refused by the server: ${error.message}`, { url });
      }
      const wait = error instanceof ConnectError ? firstRetry(reconnect, attempt, deadline - performance.now()) : null;
      if (wait === null) {
        throw error;
      }
      await pause(wait, url, signal);
    }
  }
}

/**
 * Waits `ms` milliseconds before the next attempt to connect.
 * @param {number} ms
 * @param {string} url for the error.
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<void>}
 * @throws {TransportClosed} the signal was aborted (before or during the wait).
 */
async function pause(ms, url, signal) {
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    if (signal?.aborted) {
      throw new TransportClosed(`${url}: aborted`, { cause: signal.reason });
    }
    throw error;
  }
}

// ----------------------------------------------------------------------------------------------
// Server

/** One connection of a listener. */
class Peer {
  /** `"pending"` (token check), `"held"` (see `Router`), `"merged"` or `"own"` (taken by accept()). */
  mode = "pending";
  ended = false;
  closed = false;
  reason = "";
  /** @type {unknown} */
  error = null;
  queued = 0;
  paused = false;
  pending = 0; // values of it in the merged stream
  waiters = new Waiters();
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer;

  /**
   * @param {import("node:net").Socket} socket
   * @param {string | undefined} token
   * @param {Inbox} inbox
   */
  constructor(socket, token, inbox) {
    this.socket = socket;
    this.name = `${socket.remoteAddress}:${socket.remotePort}`;
    this.gate = new ServerGate(token);
    this.inbox = inbox;
  }

  pause() {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  resume() {
    this.queued = 0;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

/**
 * A TCP server (made by `listen`): merged messages, broadcast, `accept()`.
 */
export class TcpListener extends Listener {
  #server;
  #token;
  #timeout;
  #maxLine;
  #onError;
  #closed = false;
  /** @type {Peer[]} the merged connections, oldest first */
  #members = [];
  /** @type {Router<Peer>} */
  #router = new Router();
  /** @type {Set<Peer>} every connection not yet closed */
  #peers = new Set();
  /** @type {[Peer, number][]} runs of values in the peers' inboxes, in arrival order */
  #segments = [];
  #queued = 0; // bytes read into the merged stream since it was last empty
  /** @type {Set<Peer>} merged peers paused for backpressure */
  #paused = new Set();
  #waiters = new Waiters();
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => {
    this.close().catch(() => {});
  };

  /**
   * Made by `listen`.
   * @param {import("node:net").Server} server not yet listening.
   * @param {ReturnType<typeof checkOptions>} options
   */
  constructor(server, options) {
    super();
    this.#server = server;
    this.#token = options.token;
    this.#timeout = options.timeout;
    this.#maxLine = options.maxLine;
    this.#onError = options.onError;
    this.#signal = options.signal;
    server.on("connection", (socket) => this.#connection(socket));
  }

  /**
   * Starts listening (called by `listen`).
   * @param {string} host
   * @param {number} port
   * @param {string} url for errors.
   * @param {number} backlog connections the kernel may hold until accepted.
   * @returns {Promise<void>}
   */
  async start(host, port, url, backlog) {
    await new Promise((resolve, reject) => {
      const onError = (/** @type {NodeJS.ErrnoException} */ error) => {
        reject(new TransportError(`${url}: cannot listen: ${error.code ?? error.message}`, { cause: error }));
      };
      this.#server.once("error", onError);
      this.#server.listen({ host, port, backlog }, () => {
        this.#server.removeListener("error", onError);
        resolve(undefined);
      });
    });
    this.#server.on("error", (error) => console.warn(`${this.url}: ${error.message}`));
    const bound = /** @type {net.AddressInfo} */ (this.#server.address());
    this.url = new Address("tcp", { host: bound.address, port: bound.port }).url;
    if (this.#signal?.aborted) {
      await this.close();
    } else {
      this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * How many open connections `accept()` has not taken: the ones a `send()` reaches (merged, or
   * held: a send merges them).
   * @returns {number}
   */
  get peers() {
    const open = (/** @type {Peer} */ peer) => !peer.ended;
    return this.#members.filter(open).length + this.#router.held.filter(open).length;
  }

  /** @param {net.Socket} socket */
  #connection(socket) {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const peer = new Peer(socket, this.#token, new Inbox({ maxLine: this.#maxLine, onError: this.#onError }));
    this.#peers.add(peer);
    socket.on("data", (chunk) => this.#data(peer, chunk));
    socket.on("end", () => this.#end(peer));
    socket.on("close", () => this.#gone(peer));
    socket.on("error", (error) => {
      peer.error ??= error;
    });
    if (this.#token === undefined) {
      this.#arrive(peer);
    } else {
      peer.timer = setTimeout(() => {
        if (peer.gate.state === WAITING) {
          this.#refuse(peer, peer.gate.timedOut());
        }
      }, this.#timeout);
    }
  }

  /**
   * @param {Peer} peer
   * @param {string} reply
   */
  #refuse(peer, reply) {
    clearTimeout(peer.timer);
    this.#peers.delete(peer);
    peer.closed = true;
    linger(peer.socket, reply); // the refusal must reach a client that may still be sending
  }

  /**
   * @param {Peer} peer
   * @param {Buffer} chunk
   */
  #data(peer, chunk) {
    if (peer.closed) {
      return;
    }
    if (peer.gate.state === WAITING) {
      const [reply, rest] = peer.gate.feed(chunk);
      if (peer.gate.state === REFUSED) {
        this.#refuse(peer, reply);
        return;
      }
      if (reply) {
        write(peer.socket, reply);
      }
      if (peer.gate.state !== OPEN) {
        return;
      }
      clearTimeout(peer.timer);
      if (peer.mode === "pending") {
        this.#arrive(peer);
      }
      chunk = rest;
    }
    this.#feed(peer, chunk);
  }

  /**
   * Feeds a connection's bytes (or its end) and files the values where they belong.
   * @param {Peer} peer
   * @param {Buffer | null} chunk null: the end of its stream.
   */
  #feed(peer, chunk) {
    const inbox = peer.inbox;
    const before = inbox.length;
    if (chunk === null) {
      inbox.feedEof();
    } else if (chunk.length > 0) {
      inbox.feed(chunk);
    }
    const added = inbox.length - before;
    const size = chunk === null ? 0 : chunk.length;
    if (peer.mode === "merged") {
      if (added > 0) {
        this.#segments.push([peer, added]);
        peer.pending += added;
        this.#waiters.wake();
      }
      // Read ahead only while values wait for the consumer: a long line must go on arriving.
      if (this.#segments.length === 0) {
        this.#queued = 0;
      } else if ((this.#queued += size) >= READ_AHEAD && !peer.ended) {
        peer.pause();
        this.#paused.add(peer);
      }
    } else {
      if (inbox.length === 0) {
        peer.queued = 0;
      } else if ((peer.queued += size) >= READ_AHEAD && !peer.ended) {
        peer.pause();
      }
      peer.waiters.wake();
      this.#waiters.wake(); // accept() may wait for it
    }
  }

  /** @param {Peer} peer */
  #end(peer) {
    if (peer.ended || peer.closed) {
      return;
    }
    if (peer.gate.state === WAITING) {
      const rest = peer.gate.feedEof();
      if (peer.gate.state !== OPEN) {
        this.#refuse(peer, "");
        return;
      }
      if (peer.mode === "pending") {
        this.#arrive(peer);
      }
      this.#feed(peer, rest);
    }
    if (peer.gate.state !== OPEN) {
      return;
    }
    this.#feed(peer, null);
    peer.ended = true;
    peer.reason = lost(peer.error);
    if (peer.mode === "merged") {
      this.#prune(peer);
    }
    // Everything the client sent before its FIN is read: our FIN tells its close() so (an
    // accepted connection stays its owner's to receive from and to close).
    if (writable(peer.socket)) {
      corked.delete(peer.socket);
      peer.socket.uncork();
      peer.socket.end();
    }
    peer.waiters.wake();
  }

  /** @param {Peer} peer */
  #gone(peer) {
    clearTimeout(peer.timer);
    if (!peer.ended && !peer.closed && peer.gate.state === OPEN) {
      peer.reason = lost(peer.error);
      this.#feed(peer, null);
      peer.ended = true;
    }
    peer.ended = true;
    this.#paused.delete(peer);
    if (peer.mode !== "own") {
      this.#peers.delete(peer); // nothing left to close
      this.#prune(peer);
    }
    if (peer.mode === "held" && peer.inbox.length === 0) {
      this.#router.forget(peer); // gone with nothing sent: nothing to accept
    }
    peer.waiters.wake();
    this.#waiters.wake();
  }

  /**
   * A connection is ready (welcomed, or at once without a token): routed (see `Router`).
   * @param {Peer} peer
   */
  #arrive(peer) {
    peer.mode = "held";
    if (this.#router.arrive(peer)) {
      this.#merge(peer);
    }
    this.#waiters.wake(); // accept() may wait for it
  }

  /**
   * A held connection joins the merged stream, with the values it holds.
   * @param {Peer} peer
   */
  #merge(peer) {
    peer.mode = "merged";
    this.#members.push(peer);
    const held = peer.inbox.length;
    if (held > 0) {
      this.#segments.push([peer, held]);
      peer.pending += held;
    }
    if (peer.paused) {
      this.#paused.add(peer); // the merged stream's consumer resumes it
    }
    this.#prune(peer);
    this.#waiters.wake();
  }

  /** The merged stream is used (`receive()`, iteration, `send()`): the held ones join it. */
  #startMerging() {
    for (const peer of this.#router.startMerging()) {
      this.#merge(peer);
    }
  }

  /**
   * Forgets a merged connection that ended once its last message has been taken.
   * @param {Peer} peer
   */
  #prune(peer) {
    if (peer.ended && peer.pending === 0) {
      const at = this.#members.indexOf(peer);
      if (at >= 0) {
        this.#members.splice(at, 1);
      }
    }
  }

  /**
   * Sends one message to every merged connection.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot be sent.
   * @throws {TransportClosed} the listener is closed.
   */
  send(value) {
    let data;
    try {
      data = encode(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendBytes(data);
  }

  /**
   * Writes encoded lines to every merged connection (waits for the slowest); a connection that
   * fails is dropped.
   * @param {string | Uint8Array} data
   * @returns {Promise<void>}
   * @throws {TransportClosed} the listener is closed.
   */
  async sendBytes(data) {
    if (this.#closed) {
      throw new TransportClosed(`${this.url}: the listener is closed`);
    }
    if (!this.#router.merging) {
      this.#startMerging();
    }
    const waits = [];
    for (const peer of this.#members) {
      if (peer.ended || peer.error !== null || !writable(peer.socket)) {
        continue;
      }
      if (!write(peer.socket, data)) {
        waits.push(drained(peer.socket).catch(() => peer.socket.destroy())); // it leaves
      }
    }
    await Promise.all(waits);
  }

  /**
   * The next message from any merged connection.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the listener is closed.
   * @throws {DecodeError} a bad line, when `onError` is `raiseError`.
   */
  receive() {
    if (!this.#router.merging && !this.#closed) {
      this.#startMerging();
    }
    if (!this.#closed && this.#segments.length > 0) {
      try {
        return Promise.resolve(this.#pop());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receive();
  }

  /** @returns {any} the next value of the merged stream (segments must not be empty) */
  #pop() {
    const segment = this.#segments[0];
    const peer = segment[0];
    if (--segment[1] === 0) {
      this.#segments.shift();
    }
    peer.pending--;
    this.#prune(peer);
    return peer.inbox.pop();
  }

  async #receive() {
    for (;;) {
      if (this.#closed) {
        throw new TransportClosed(`${this.url}: the listener is closed`);
      }
      if (this.#segments.length > 0) {
        return this.#pop();
      }
      this.#queued = 0;
      for (const peer of this.#paused) {
        peer.resume();
      }
      this.#paused.clear();
      await this.#waiters.wait();
    }
  }

  /**
   * The oldest held connection (one that arrived before the call included; never a merged one),
   * else the next to come, as its own channel (see `Router`).
   * @returns {Promise<TcpConnection>}
   * @throws {TransportClosed} the listener is closed.
   */
  async accept() {
    this.#router.beginAccept();
    try {
      for (;;) {
        if (this.#closed) {
          throw new TransportClosed(`${this.url}: the listener is closed`);
        }
        const peer = this.#router.take();
        if (peer !== undefined) {
          peer.mode = "own"; // its values are in its inbox; its own receive() resumes it
          return new TcpConnection(peer, this.url, (p) => this.#release(p));
        }
        await this.#waiters.wait();
      }
    } finally {
      for (const peer of this.#router.endAccept()) {
        this.#merge(peer);
      }
    }
  }

  /**
   * An accepted connection was closed by its owner.
   * @param {Peer} peer
   * @returns {Promise<void>}
   */
  async #release(peer) {
    peer.closed = true;
    this.#peers.delete(peer);
    peer.waiters.wake();
    await linger(peer.socket);
  }

  /**
   * Stops listening and closes every connection; safe to call twice.
   * @returns {Promise<void>} never rejects.
   */
  async close() {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#server.close(); // no more connections; those we have linger in the background
    const peers = [...this.#peers];
    this.#peers.clear();
    this.#members = [];
    this.#router.close(); // (the held ones are among the peers)
    for (const peer of peers) {
      peer.closed = true;
      clearTimeout(peer.timer);
      peer.waiters.wake();
    }
    this.#waiters.wake();
    await Promise.all(peers.map((peer) => linger(peer.socket)));
  }
}

/**
 * One connection taken by `TcpListener.accept()`: duplex, its own stream.
 */
export class TcpConnection extends Channel {
  #peer;
  #release;

  /**
   * Made by `TcpListener.accept()`.
   * @param {Peer} peer
   * @param {string} url
   * @param {(peer: Peer) => Promise<void>} release
   */
  constructor(peer, url, release) {
    super();
    this.#peer = peer;
    this.#release = release;
    /** The listener's URL. @type {string} */
    this.url = url;
    /** The client's address, `host:port`. @type {string} */
    this.peer = peer.name;
  }

  /**
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {TransportClosed} the client went away, or we closed.
   */
  send(value) {
    let data;
    try {
      data = encode(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sendBytes(data);
  }

  /**
   * @param {string | Uint8Array} data encoded lines.
   * @returns {Promise<void>}
   * @throws {TransportClosed} the client went away, or we closed.
   */
  async sendBytes(data) {
    const peer = this.#peer;
    if (peer.closed) {
      throw new TransportClosed(`${this.url}: the connection from ${this.peer} is closed`);
    }
    if (peer.error !== null || !writable(peer.socket)) {
      throw new TransportClosed(`${this.url}: connection from ${this.peer}: ${lost(peer.error)}`);
    }
    if (!write(peer.socket, data)) {
      try {
        await drained(peer.socket);
      } catch (error) {
        throw new TransportClosed(`${this.url}: connection from ${this.peer}: ${lost(peer.error ?? error)}`, {
          cause: error,
        });
      }
    }
  }

  /**
   * The next message from this client.
   * @returns {Promise<any>}
   * @throws {TransportClosed} it closed the connection (or went away), or we closed.
   */
  receive() {
    const peer = this.#peer;
    if (!peer.closed && peer.inbox.length > 0) {
      try {
        return Promise.resolve(peer.inbox.pop());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#receive();
  }

  async #receive() {
    const peer = this.#peer;
    for (;;) {
      if (peer.closed) {
        throw new TransportClosed(`${this.url}: the connection from ${this.peer} is closed`);
      }
      if (peer.inbox.length > 0) {
        return peer.inbox.pop();
      }
      if (peer.ended) {
        throw new TransportClosed(`${this.url}: ${this.peer}: ${peer.reason}`);
      }
      peer.resume();
      await peer.waiters.wait();
    }
  }

  /**
   * Closes this connection (what was sent is flushed first); safe to call twice.
   * @returns {Promise<void>}
   */
  async close() {
    if (!this.#peer.closed) {
      await this.#release(this.#peer);
    }
  }
}

/**
 * Listens on `tcp://host:port` (port 0: a free one; `url` tells which).
 * @param {Address} address as parsed by `urls.parse`.
 * @param {TcpOptions} [options] `token`, `timeout`, `maxLine`, `onError`, `backlog`, `signal`
 *   (`reconnect` is accepted and ignored, so one URL serves both sides).
 * @returns {Promise<TcpListener>}
 * @throws {TransportError} the address cannot be bound.
 * @throws {TypeError | RangeError} an unknown or invalid option.
 */
export async function listen(address, options = {}) {
  const checked = checkOptions(options);
  const [host, port, url] = target(address);
  const server = net.createServer({ allowHalfOpen: true });
  const listener = new TcpListener(server, checked);
  await listener.start(host, port, url, checked.backlog);
  return listener;
}
