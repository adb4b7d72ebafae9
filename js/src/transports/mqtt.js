/**
 * `mqtt://` channels: a topic on an MQTT broker, through mqtt.js 5. Mirrors
 * `src/bothways/transports/mqtt.py` name for name; its module docs are the normative description
 * (URL options, each end's behaviour, sessions, shared subscriptions, reconnect, errors) and
 * hold here too, with times in milliseconds (`timeout`; `session` and `keepalive` stay in
 * seconds, as in the URL). Both languages take their decisions from `plan` and `payloadValue`.
 *
 *     const inbox = await listen("mqtt://127.0.0.1:1883/sensors/#?share=ingest");
 *     for await (const reading of inbox) store(reading);
 *
 *     const out = await connect("mqtt://127.0.0.1:1883/sensors/kitchen");
 *     await out.send({ sensor: "kitchen", celsius: 21.5 });   // resolves once the broker has it
 *
 * Strategy
 * --------
 * - `connect` is the publishing end, `listen` the subscribing end; each refuses the other's job
 *   with a TransportError, in Python's words.
 * - `send`/`sendMany` publish one PUBLISH per message (its JSON text without the newline) at
 *   `qos`, then wait for every publish callback: mqtt.js calls it on the broker's PUBACK (QoS 1),
 *   PUBCOMP (QoS 2) or once written (QoS 0). While the broker is away mqtt.js holds them and
 *   sends them on the next connection; past `timeout` ms the send rejects with TransportClosed.
 * - Every connection (the first, and each automatic reconnection, mqtt.js's: every second)
 *   subscribes again (mqtt.js's own `resubscribe` is off); `listen` resolves once the first
 *   SUBACK has come, so that nothing published after it is missed.
 * - Payloads become messages through `payloadValue`; a bad one goes to `onError` as a
 *   DecodeError numbered among the messages received, and what `onError` throws is thrown by
 *   `receive()` in its turn. `receive()` hands out what came before `close()`, then throws
 *   TransportClosed (Python's `take`).
 * - mqtt.js itself is loaded on first use: `import("mqtt")` in Node, or the module given as
 *   `library` (a module, or a specifier/URL to import): `../browser.js` passes the browser build.
 *   Nothing here imports a `node:*` module, so this file loads in browsers unchanged.
 *
 * Calls through the broker (MQTT 5)
 * ---------------------------------
 *     const server = new Peer(await rpcListen("mqtt://127.0.0.1:1883/services/stats?share=stats"));
 *     server.expose(mean, { name: "mean" });
 *     await server.start();
 *
 *     const stats = await new Peer(await rpcConnect("mqtt://127.0.0.1:1883/services/stats")).start();
 *     await stats.call("mean", [1, 2, 3]);   // CallTimeout after callTimeout ms (30 s by default)
 *
 * - As in Python: a caller publishes each request to the service topic with its reply topic
 *   (`bothways/replies/<clientId>`) as the Response Topic and the JSON of the request's id as the
 *   Correlation Data; a server answers there, with that correlation data. Servers on one `share`
 *   group split the calls. `RpcRoutes` (sans-I/O, the same in both languages) renumbers the
 *   requests a server hands its Peer and puts each answer's id back.
 * - Each end's `send` resolves once the broker has the message, like `MqttChannel.send` (Python's
 *   ends publish without waiting): a request the broker refuses fails its call at once.
 * - `rpcConnect`'s channel carries `callTimeout`, which a Peer on it takes as its own.
 *
 * @module bothways/transports/mqtt
 */

import { MessageQueue, checkOptions, refuseUnknown } from "../browser.js";
import { ConnectError, DecodeError, FrameTooLarge, TransportClosed, TransportError, UrlError } from "../errors.js";
import { Address, parse } from "../urls.js";
import { MAX_LINE, decode, encode } from "../wire.js";
import { Listener, logError } from "./base.js";

/** Default milliseconds to reach the broker, and for a send to be acknowledged. */
export const TIMEOUT = 10_000;
/** Seconds a broker keeps a persistent session (one with a `clientId`) by default. */
export const SESSION = 86400;
/** The path of the broker's WebSocket listener, by default (`mqtt+ws:`, `mqtt+wss:`). */
export const WS_PATH = "/mqtt";
/** Milliseconds between two reconnection attempts (mqtt.js's `reconnectPeriod`). */
const RECONNECT = 1000;
/** Milliseconds `close()` waits for a clean DISCONNECT before it drops the connection. */
const CLOSE_TIMEOUT = 2000;
/**
 * QoS 1 and 2 messages in flight at most (sent, not yet acknowledged) under MQTT 3.1.1, which has
 * no Receive Maximum (paho's `max_inflight_messages` default); under MQTT 5, the broker's.
 */
const INFLIGHT_V3 = 20;
/** MQTT 5's Receive Maximum when the broker's CONNACK gives none. */
const INFLIGHT_V5 = 65535;
const MQTT = ["mqtt", "mqtts", "mqtt+ws", "mqtt+wss"];

/**
 * The broker's reasons, as paho-mqtt names them (so that ConnectError messages read the same in
 * both languages): MQTT 5 reason codes, and MQTT 3.1.1's CONNACK return codes mapped to them.
 * @type {Record<number, string>}
 */
const REASONS = {
  128: "Unspecified error",
  129: "Malformed packet",
  130: "Protocol error",
  131: "Implementation specific error",
  132: "Unsupported protocol version",
  133: "Client identifier not valid",
  134: "Bad user name or password",
  135: "Not authorized",
  136: "Server unavailable",
  137: "Server busy",
  138: "Banned",
  140: "Bad authentication method",
  143: "Topic filter invalid",
  144: "Topic name invalid",
  145: "Packet identifier in use",
  149: "Packet too large",
  151: "Quota exceeded",
  153: "Payload format invalid",
  154: "Retain not supported",
  155: "QoS not supported",
  156: "Use another server",
  157: "Server moved",
  158: "Shared subscription not supported",
  159: "Connection rate exceeded",
  161: "Subscription identifiers not supported",
  162: "Wildcard subscription not supported",
};
/** @type {Record<number, number>} MQTT 3.1.1 CONNACK return code -> MQTT 5 reason code */
const V3_CONNACK = { 1: 132, 2: 133, 3: 136, 4: 134, 5: 135 };

// --------------------------------------------------------------------------------------------
// Sans-I/O: what a URL asks of the broker, and what a payload delivers

/** What one end of an mqtt URL asks of the broker (from `plan`; no I/O). Mirror of Python's `Plan`. */
export class Plan {
  /**
   * @param {{url: string, host: string, port: number, transport: "tcp" | "websockets",
   *   tls: boolean, wsPath: string, clientId: string, clean: boolean, session: number,
   *   protocol: "5" | "3.1.1", qos: 0 | 1 | 2, keepalive: number, timeout: number,
   *   publish: string | null, subscribe: string | null}} fields
   */
  constructor(fields) {
    /** @type {string} */
    this.url = fields.url;
    /** @type {string} */
    this.host = fields.host;
    /** @type {number} */
    this.port = fields.port;
    /** `"tcp"` or `"websockets"`. @type {"tcp" | "websockets"} */
    this.transport = fields.transport;
    /** @type {boolean} */
    this.tls = fields.tls;
    /** @type {string} */
    this.wsPath = fields.wsPath;
    /** @type {string} */
    this.clientId = fields.clientId;
    /** @type {boolean} */
    this.clean = fields.clean;
    /** Seconds the broker keeps the session after we leave (MQTT 5). @type {number} */
    this.session = fields.session;
    /** @type {"5" | "3.1.1"} */
    this.protocol = fields.protocol;
    /** @type {0 | 1 | 2} */
    this.qos = fields.qos;
    /** Seconds. @type {number} */
    this.keepalive = fields.keepalive;
    /** Milliseconds. @type {number} */
    this.timeout = fields.timeout;
    /** The topic `send` publishes to (connect). @type {string | null} */
    this.publish = fields.publish;
    /** The filter the channel subscribes to (listen). @type {string | null} */
    this.subscribe = fields.subscribe;
    Object.freeze(this);
  }
}

/**
 * @typedef {object} PlanOptions
 * @property {string} nonce makes the random client id of a channel without `clientId`.
 * @property {string | null} [clientId] a persistent session's id.
 * @property {boolean} [clean] a clean start (default: true without `clientId`).
 * @property {number} [session] seconds the broker keeps the session (default: 0 when clean, else
 *   `SESSION`).
 * @property {string | null} [share] (listen) the shared subscription's group.
 * @property {"5" | "3.1.1"} [protocol] default `"5"`.
 * @property {0 | 1 | 2} [qos] default 1.
 * @property {number} [keepalive] seconds, default 60.
 * @property {number} [timeout] milliseconds, default `TIMEOUT`.
 * @property {string} [wsPath] default `WS_PATH`.
 */

/**
 * The Plan of `address` for one end, `"connect"` or `"listen"`. Mirror of Python's `plan`.
 * @param {import("../urls.js").Address} address an mqtt, mqtts, mqtt+ws or mqtt+wss address.
 * @param {"connect" | "listen"} side
 * @param {PlanOptions} options
 * @returns {Plan}
 * @throws {UrlError} a topic that end cannot use (a wildcard to publish to, `share` with a
 *   `$share/` topic), or not an mqtt address.
 */
export function plan(address, side, { nonce, ...options }) {
  if (!MQTT.includes(address.scheme) || address.host === null || address.port === null) {
    throw new UrlError(`not an mqtt URL: ${address.url}`, { url: address.url });
  }
  const topic = address.path;
  const share = options.share ?? null;
  let publish = null;
  let subscribe = null;
  if (side === "connect") {
    if (topic.startsWith("$share/") || topic.split("/").some((level) => level === "+" || level === "#")) {
      throw new UrlError(`a topic to publish to has no wildcards, got ${pyRepr(topic)}`, { url: address.url });
    }
    publish = topic;
  } else {
    if (share !== null && topic.startsWith("$share/")) {
      throw new UrlError("share= and a $share/ topic: give one of them", { url: address.url });
    }
    subscribe = share !== null ? `$share/${share}/${topic}` : topic;
  }
  const given = options.clientId ?? null;
  const clean = Boolean(options.clean ?? given === null);
  return new Plan({
    url: address.url,
    host: address.host,
    port: address.port,
    transport: address.scheme.startsWith("mqtt+ws") ? "websockets" : "tcp",
    tls: address.scheme === "mqtts" || address.scheme === "mqtt+wss",
    wsPath: options.wsPath ?? WS_PATH,
    clientId: given ?? `bothways-${side}-${nonce}`,
    clean,
    session: Math.trunc(Number(options.session ?? (clean ? 0 : SESSION))),
    protocol: options.protocol ?? "5",
    qos: /** @type {0 | 1 | 2} */ (Math.trunc(Number(options.qos ?? 1))),
    keepalive: Math.trunc(Number(options.keepalive ?? 60)),
    timeout: Number(options.timeout ?? TIMEOUT),
    publish,
    subscribe,
  });
}

/**
 * The message one PUBLISH payload delivers. Mirror of Python's `payload_value`.
 * @param {Uint8Array | string} payload
 * @param {number} number the message's number among those received (the error's `line`).
 * @param {number} maxLine the largest payload accepted, in bytes.
 * @returns {any}
 * @throws {DecodeError} it is not one JSON text, or it is longer than `maxLine` bytes.
 */
export function payloadValue(payload, number, maxLine) {
  const size = typeof payload === "string" ? utf8.encode(payload).length : payload.length;
  if (size > maxLine) {
    throw new FrameTooLarge({
      line: number,
      limit: maxLine,
      reason: `message is longer than the limit of ${maxLine} bytes (dropped)`,
    });
  }
  try {
    return decode(payload);
  } catch (error) {
    if (!(error instanceof DecodeError)) throw error;
    throw new DecodeError(error.reason, { line: number, column: error.column, excerpt: error.excerpt });
  }
}

const utf8 = new TextEncoder();

/** Default milliseconds a call through the broker waits for its answer (`rpcConnect`). */
export const CALL_TIMEOUT = 30_000;
/** The prefix of a caller's reply topic: `bothways/replies/<clientId>`. */
export const REPLIES = "bothways/replies/";
const CANCEL = "$/cancelRequest";

/**
 * @param {unknown} value
 * @returns {value is Record<string, any>} whether it is a JSON object (Python's dict).
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A call server's routes (sans-I/O): each request from a caller is given an id of our own before
 * the Peer sees it, so that equal ids from two callers cannot meet; an answer goes back to its
 * caller's reply topic with the caller's id and correlation data. Mirror of Python's `RpcRoutes`.
 */
export class RpcRoutes {
  #next = 0;
  /** @type {Map<number, [unknown, string, Uint8Array | null]>} our id -> theirs, and where */
  #routes = new Map();
  /** @type {Map<string, number>} the JSON of [reply topic, their id] -> our id */
  #ours = new Map();

  /**
   * The message the Peer gets for one that arrived with this reply topic (a batch: each of its
   * messages); a message without a reply topic is handed over as it is; `null` for a cancel of a
   * call this server does not hold (on a shared subscription another server may hold it).
   * @param {unknown} message
   * @param {string | null} replyTo the PUBLISH's Response Topic.
   * @param {Uint8Array | null} correlation its Correlation Data.
   * @returns {any}
   */
  incoming(message, replyTo, correlation) {
    if (Array.isArray(message)) {
      return message.map((one) => this.incoming(one, replyTo, correlation)).filter((one) => one !== null);
    }
    if (!isObject(message) || replyTo === null) return message;
    if (Object.hasOwn(message, "method") && Object.hasOwn(message, "id")) {
      const ours = ++this.#next;
      this.#routes.set(ours, [message.id, replyTo, correlation]);
      this.#ours.set(JSON.stringify([replyTo, message.id]), ours);
      return { ...message, id: ours };
    }
    if (message.method === CANCEL) {
      const params = isObject(message.params) ? message.params : {};
      const ours = this.#ours.get(JSON.stringify([replyTo, params.id ?? null]));
      return ours === undefined ? null : { ...message, params: { ...params, id: ours } };
    }
    return message;
  }

  /**
   * Where an answer of the Peer goes: `[replyTo, correlation, the caller's message]` for each
   * answer to a request we routed (each once); none for anything else (it has nowhere to go).
   * @param {unknown} message
   * @returns {[string, Uint8Array | null, Record<string, any>][]}
   */
  outgoing(message) {
    if (Array.isArray(message)) return message.flatMap((one) => this.outgoing(one));
    if (!isObject(message) || Object.hasOwn(message, "method") || !this.#routes.has(message.id)) return [];
    const [theirs, replyTo, correlation] = /** @type {[unknown, string, Uint8Array | null]} */ (
      this.#routes.get(message.id)
    );
    this.#routes.delete(message.id);
    this.#ours.delete(JSON.stringify([replyTo, theirs]));
    return [[replyTo, correlation, { ...message, id: theirs }]];
  }

  /**
   * Requests routed and not answered yet.
   * @returns {number}
   */
  get pending() {
    return this.#routes.size;
  }
}

/**
 * Quotes like Python's repr() of a str (for the topic in a message; ASCII in practice).
 * @param {string} text
 * @returns {string}
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  return quote + text.replace(/\\/g, "\\\\").replaceAll(quote, `\\${quote}`) + quote;
}

/**
 * Milliseconds as Python's `f"{seconds:g}"` writes the seconds.
 * @param {number} ms
 * @returns {string}
 */
function seconds(ms) {
  return String(Number((ms / 1000).toPrecision(6)));
}

/**
 * The broker's reason for a reason code, in paho's words.
 * @param {number} code
 * @param {boolean} v5 whether it is an MQTT 5 reason code (else a 3.1.1 CONNACK return code).
 * @returns {string}
 */
function reasonName(code, v5) {
  const key = v5 ? code : (V3_CONNACK[code] ?? code);
  return REASONS[key] ?? `reason code ${code}`;
}

// --------------------------------------------------------------------------------------------
// The client (mqtt.js's), shared by Node and the browser

/**
 * mqtt.js's `connect` from `library`: a module (Node's CommonJS one, or the browser build's
 * default export), or a specifier/URL to import.
 * @param {unknown} library
 * @returns {Promise<(options: Record<string, any>) => any>}
 * @throws {TransportError} it cannot be imported.
 * @throws {TypeError} it is not mqtt.js.
 */
async function mqttConnect(library) {
  let loaded = /** @type {any} */ (library);
  if (typeof library === "string") {
    try {
      loaded = await import(library);
    } catch (error) {
      const why = /** @type {Error} */ (error).message;
      throw new TransportError(`mqtt:// needs mqtt.js (npm install mqtt): cannot import ${library}: ${why}`, {
        cause: error,
      });
    }
  }
  const api = typeof loaded?.connect === "function" ? loaded : loaded?.default;
  if (typeof api?.connect !== "function") {
    throw new TypeError("library must be mqtt.js (a module with connect()), or a URL to import it from");
  }
  return api.connect;
}

/**
 * A random hex string for a client id (Web Crypto: Node >= 20 and browsers).
 * @returns {string}
 */
function nonce() {
  return [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One mqtt.js client: connected (or refused) in `open`, subscribed again on every connection,
 * its messages decoded into one queue. Mirror of Python's `_Client`.
 */
class Client {
  /** @type {any} the mqtt.js client */
  #mqtt = null;
  #queue = new MessageQueue();
  #maxLine;
  #onError;
  #options;
  /** Messages received (numbers the bad ones). */
  #count = 0;
  /** Sends waiting for acknowledgements. */
  #pending = 0;
  /**
   * How to end each of them: `close()` fails them at once (mqtt.js never calls back a publish
   * that a forced end cut off: its timer would keep Node running for `timeout`).
   * @type {Set<(error: unknown) => void>}
   */
  #unsettled = new Set();
  /** QoS 1 and 2 publishes handed to mqtt.js and not yet acknowledged. */
  #inflight = 0;
  /** How many of them the broker takes at once (its Receive Maximum). */
  #window = INFLIGHT_V3;
  /**
   * Publishes waiting for room: each with its topic and mqtt.js options (QoS, properties).
   * @type {{payload: string, done: (error?: unknown) => void, topic: string, options: Record<string, unknown>}[]}
   */
  #backlog = [];
  #next = 0; // the first of #backlog not yet handed to mqtt.js
  /** @type {unknown} an error that ended the channel (a refusal while reconnecting) */
  #failure = null;
  /** @type {Promise<void> | null} */
  #closing = null;
  connected = false;
  closed = false;
  /**
   * Keep each message's Response Topic and Correlation Data (calls): the queue then holds
   * `[value, responseTopic, correlationData]` (null for those missing). Set before `open`.
   */
  withReply = false;

  /**
   * @param {Plan} plan
   * @param {{maxLine: number, onError: import("./base.js").ErrorHandler,
   *   options: Record<string, any>}} settings `options`: mqtt.js's, for logins and TLS.
   */
  constructor(plan, { maxLine, onError, options }) {
    /** @type {Plan} */
    this.plan = plan;
    this.#maxLine = maxLine;
    this.#onError = onError;
    this.#options = options;
  }

  /**
   * Connects (and, to listen, subscribes); mqtt.js reconnects by itself from then on.
   * @param {(options: Record<string, any>) => any} connect mqtt.js's.
   * @param {AbortSignal} [signal]
   * @returns {Promise<void>}
   * @throws {ConnectError} unreachable, refused, or no answer within `timeout`.
   * @throws {TransportClosed} the signal was aborted.
   */
  open(connect, signal) {
    const plan = this.plan;
    const url = plan.url;
    const where = `${plan.host}:${plan.port}`;
    const v5 = plan.protocol === "5";
    return new Promise((resolve, reject) => {
      let settled = false;
      /** @param {unknown} [error] */
      const finish = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (error === undefined) {
          resolve();
          return;
        }
        this.closed = true;
        this.#mqtt?.end(true);
        reject(error);
      };
      const onAbort = () => finish(new TransportClosed(`${url}: aborted`, { cause: signal?.reason }));
      const timer = setTimeout(() => {
        const within = `within ${seconds(plan.timeout)} s`;
        finish(new ConnectError(`no answer from the broker at ${where} ${within}`, { url }));
      }, plan.timeout);
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      /** @param {unknown} failure */
      const fail = (failure) => (settled ? this.#fail(failure) : finish(failure));
      const tls = plan.tls || this.#options.tls !== undefined;
      const client = connect({
        protocol: plan.transport === "websockets" ? (tls ? "wss" : "ws") : tls ? "mqtts" : "mqtt",
        host: plan.host,
        port: plan.port,
        path: plan.wsPath,
        clientId: plan.clientId,
        clean: plan.clean,
        protocolVersion: v5 ? 5 : 4,
        keepalive: plan.keepalive,
        connectTimeout: plan.timeout,
        reconnectPeriod: RECONNECT,
        resubscribe: false, // (done here on every connection)
        ...(v5 ? { properties: { sessionExpiryInterval: plan.session } } : {}),
        ...(this.#options.username !== undefined ? { username: this.#options.username } : {}),
        ...(this.#options.password !== undefined ? { password: this.#options.password } : {}),
        ...(this.#options.tls ?? {}),
      });
      this.#mqtt = client;
      client.on("error", (/** @type {any} */ error) => {
        if (typeof error?.code === "number" && String(error.message).startsWith("Connection refused")) {
          // A CONNACK that refuses us (mqtt.js does not retry it).
          fail(new ConnectError(`refused by the broker: ${reasonName(error.code, v5)}`, { url, cause: error }));
        } else if (!settled && typeof error?.code === "string") {
          finish(new ConnectError(`cannot reach the broker at ${where}: ${error.message}`, { url, cause: error }));
        } // else: mqtt.js drops the connection and reconnects
      });
      client.on("close", () => {
        this.connected = false;
      });
      client.on("offline", () => {
        // The first connection went without an answer, and without a socket error to say why
        // (a browser's WebSocket gives none).
        if (!settled) {
          const why = "the connection closed before the broker answered";
          finish(new ConnectError(`cannot reach the broker at ${where}: ${why}`, { url }));
        }
      });
      client.on("connect", (/** @type {any} */ connack) => {
        this.connected = true;
        this.#window = v5 ? (connack?.properties?.receiveMaximum ?? INFLIGHT_V5) : INFLIGHT_V3;
        this.#pump();
        if (plan.subscribe === null) {
          finish();
          return;
        }
        client.subscribe(plan.subscribe, { qos: plan.qos }, (/** @type {any} */ error) => {
          if (error && typeof error.code === "number") {
            const reason = reasonName(error.code, v5);
            const what = `refused by the broker: ${reason} (subscribing to ${plan.subscribe})`;
            fail(new ConnectError(what, { url, cause: error }));
          } else if (!error) {
            finish();
          } // else the connection went before the SUBACK: the next one subscribes again
        });
      });
      client.on("message", (/** @type {string} */ _topic, /** @type {Uint8Array} */ payload, /** @type {any} */ packet) =>
        this.#message(payload, packet),
      );
    });
  }

  /**
   * @param {Uint8Array} payload
   * @param {any} [packet] the PUBLISH (its MQTT 5 properties: `withReply`).
   */
  #message(payload, packet) {
    if (this.closed) return; // (what still comes while disconnecting)
    const number = ++this.#count;
    let value;
    try {
      value = payloadValue(payload, number, this.#maxLine);
    } catch (error) {
      try {
        this.#onError(/** @type {DecodeError} */ (error));
      } catch (raised) {
        this.#queue.pushError(raised); // on_error's verdict: thrown by receive() in its turn
      }
      return;
    }
    if (this.withReply) {
      const properties = packet?.properties;
      value = [value, properties?.responseTopic ?? null, properties?.correlationData ?? null];
    }
    this.#queue.push(value);
  }

  /**
   * Ends the channel with `error` (a refusal while reconnecting: retrying would not help).
   * @param {unknown} error
   */
  #fail(error) {
    if (this.#failure !== null || this.closed) return;
    this.#failure = error;
    this.#queue.end(error);
    this.#drop(error);
    this.#mqtt?.end(true);
  }

  /**
   * Fails the publishes still waiting for room (never handed to mqtt.js).
   * @param {unknown} error
   */
  #drop(error) {
    const waiting = this.#backlog.slice(this.#next);
    this.#backlog = [];
    this.#next = 0;
    for (const { done } of waiting) done(error);
  }

  /**
   * Publishes in order; resolves once all are acknowledged.
   * @param {string[]} payloads
   * @param {string} [topic] default: the plan's (calls answer to each caller's reply topic).
   * @param {Record<string, unknown>} [properties] MQTT 5 PUBLISH properties (calls:
   *   `responseTopic`, `correlationData`).
   * @returns {Promise<void>}
   * @throws {TransportClosed} not all acknowledged within `timeout`, or the channel was closed.
   * @throws {TransportError} the broker refused one (its reason).
   * @throws {ConnectError} the broker refused us while reconnecting.
   */
  publish(payloads, topic = /** @type {string} */ (this.plan.publish), properties = undefined) {
    const plan = this.plan;
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const options = properties === undefined ? { qos: plan.qos } : { qos: plan.qos, properties };
    this.#pending++;
    return new Promise((resolve, reject) => {
      let waiting = payloads.length;
      let settled = false;
      /** @param {unknown} [error] */
      const settle = (error) => {
        if (settled) return;
        settled = true;
        this.#pending--;
        this.#unsettled.delete(settle);
        clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      const timer = setTimeout(() => {
        const late = `the broker did not acknowledge ${waiting} of ${payloads.length} messages within`;
        const lost = `${plan.url}: ${late} ${seconds(plan.timeout)} s; they may be lost`;
        settle(this.#failure ?? new TransportClosed(lost));
      }, plan.timeout);
      this.#unsettled.add(settle);
      /** @param {unknown} [error] */
      const done = (error) => {
        if (error) {
          settle(this.#publishError(error));
        } else if (--waiting === 0) {
          settle();
        }
      };
      if (plan.qos === 0) {
        for (const payload of payloads) this.#mqtt.publish(topic, payload, options, done);
      } else {
        for (const payload of payloads) this.#backlog.push({ payload, done, topic, options });
        this.#pump();
      }
    });
  }

  /**
   * Hands QoS 1 and 2 publishes to mqtt.js while the broker has room for them: mqtt.js itself
   * ignores the Receive Maximum (Mosquitto answers the excess with "Quota exceeded").
   */
  #pump() {
    if (this.closed || this.#failure !== null) return;
    const backlog = this.#backlog;
    while (this.#inflight < this.#window && this.#next < backlog.length) {
      const { payload, done, topic, options } = backlog[this.#next];
      backlog[this.#next++] = EMPTY;
      this.#inflight++;
      this.#mqtt.publish(topic, payload, options, (/** @type {unknown} */ error) => {
        this.#inflight--;
        done(error);
        this.#pump();
      });
    }
    if (this.#next === backlog.length) {
      this.#backlog = [];
      this.#next = 0;
    } else if (this.#next > 1024 && this.#next * 2 > backlog.length) {
      this.#backlog = backlog.slice(this.#next);
      this.#next = 0;
    }
  }

  /**
   * @param {any} error what mqtt.js gave a publish callback.
   * @returns {Error}
   */
  #publishError(error) {
    const url = this.plan.url;
    if (this.#failure !== null) return /** @type {Error} */ (this.#failure);
    if (this.closed) return new TransportClosed(`${url}: the channel is closed`, { cause: error });
    if (typeof error?.code === "number") {
      const reason = reasonName(error.code, true);
      return new TransportError(`${url}: the broker refused a message: ${reason}`, { cause: error });
    }
    return new TransportClosed(`${url}: ${error?.message ?? error}`, { cause: error });
  }

  /**
   * The next message (waiting for one); after `close()` those already received, then
   * TransportClosed.
   * @returns {Promise<any>}
   */
  receive() {
    return this.#queue.receive();
  }

  /** @returns {number} messages waiting to be taken. */
  get waiting() {
    return this.#queue.length;
  }

  /**
   * Disconnects (a DISCONNECT when connected and nothing waits for an acknowledgement, else the
   * connection is dropped); safe to call twice.
   * @returns {Promise<void>}
   */
  close() {
    if (this.#closing === null) {
      this.closed = true;
      this.#queue.end(new TransportClosed(`${this.plan.url}: the channel is closed`));
      this.#drop(new TransportClosed(`${this.plan.url}: the channel is closed`));
      const client = this.#mqtt;
      this.#closing = new Promise((resolve) => {
        if (client === null) {
          resolve();
          return;
        }
        const timer = setTimeout(() => {
          client.stream?.destroy?.();
          resolve();
        }, CLOSE_TIMEOUT);
        client.end(!this.connected || this.#pending > 0, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const closed = new TransportClosed(`${this.plan.url}: the channel is closed`);
      for (const settle of this.#unsettled) settle(closed);
    }
    return this.#closing;
  }
}

/** Stands in for a publish handed to mqtt.js until the backlog is trimmed. */
const EMPTY = { payload: "", done: () => {}, topic: "", options: {} };

// --------------------------------------------------------------------------------------------
// The channel

/**
 * Either end of an mqtt URL: publishing (`connect`) or subscribing (`listen`). Mirror of
 * Python's `MqttChannel`.
 */
export class MqttChannel extends Listener {
  #client;
  /** @type {unknown[]} an error met by `receiveMany` after some values: the next call throws it */
  #held = [];
  /** @type {AbortSignal | undefined} */
  #signal;
  #onAbort = () => void this.close();

  /**
   * Made by `connect` and `listen`.
   * @param {Client} client an open client.
   * @param {AbortSignal} [signal] aborting it closes the channel.
   */
  constructor(client, signal) {
    super();
    this.#client = client;
    this.url = client.plan.url;
    if (signal) {
      this.#signal = signal;
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /**
   * The client id the broker knows this end by (random without `clientId`).
   * @returns {string}
   */
  get clientId() {
    return this.#client.plan.clientId;
  }

  /**
   * Publishes one message; resolves once the broker has it (its acknowledgement at QoS 1 and 2).
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the value cannot cross.
   * @throws {TransportError} this is the subscribing end.
   * @throws {TransportClosed} the channel is closed, or no acknowledgement within `timeout`.
   */
  async send(value) {
    await this.sendMany([value]);
  }

  /**
   * Publishes each value (one PUBLISH each), then waits once; resolves once the broker has
   * them all. Mirror of Python's `send_many`.
   * @param {Iterable<unknown>} values
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} a value cannot cross (nothing is sent).
   * @throws {TransportError} this is the subscribing end, or the broker refused a message.
   * @throws {TransportClosed} the channel is closed, or not all acknowledged within `timeout`.
   */
  async sendMany(values) {
    const client = this.#client;
    if (client.plan.publish === null) {
      throw new TransportError(`${this.url}: the subscribing end only receives (connect() to publish)`);
    }
    if (client.closed) throw new TransportClosed(`${this.url}: the channel is closed`);
    const payloads = [];
    for (const value of values) payloads.push(encode(value).slice(0, -1));
    if (payloads.length > 0) await client.publish(payloads);
  }

  /**
   * The next message.
   * @returns {Promise<any>}
   * @throws {TransportError} this is the publishing end.
   * @throws {TransportClosed} the channel is closed (once the messages received before are taken).
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  async receive() {
    return (await this.receiveMany(1))[0];
  }

  /**
   * Every message already received, oldest first: at least one (it waits for that one). Mirror
   * of Python's `receive_many`.
   * @param {number} [most] take at most this many.
   * @returns {Promise<any[]>}
   * @throws {TransportError} this is the publishing end.
   * @throws {TransportClosed} the channel is closed (once the messages received before are taken).
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  async receiveMany(most = Infinity) {
    const client = this.#client;
    if (client.plan.subscribe === null) {
      throw new TransportError(`${this.url}: the publishing end only sends (listen() to subscribe)`);
    }
    if (this.#held.length > 0) throw this.#held.pop();
    const values = [await client.receive()];
    while (values.length < most && client.waiting > 0) {
      try {
        values.push(await client.receive());
      } catch (error) {
        this.#held.push(error); // its turn comes with the next call
        break;
      }
    }
    return values;
  }

  /**
   * Disconnects; safe to call twice. A publisher's sends were all acknowledged already (each
   * waited), so nothing it sent is lost by closing.
   * @returns {Promise<void>}
   */
  close() {
    this.#signal?.removeEventListener("abort", this.#onAbort);
    return this.#client.close();
  }
}

/**
 * @typedef {object} MqttOptions
 * @property {number} [qos] 0, 1 or 2 (default 1).
 * @property {string} [clientId] a persistent session's client id (default: a fresh random one
 *   and a clean session).
 * @property {boolean} [clean] force a clean start (default: true without `clientId`).
 * @property {number} [session] seconds the broker keeps a persistent session (default a day).
 * @property {string} [share] (listen) subscribe `$share/<share>/<topic>`: the group's listeners
 *   split the messages (ignored by `connect`: one URL serves both ends).
 * @property {"5" | "3.1.1"} [protocol] the MQTT version (default "5").
 * @property {number} [keepalive] seconds (default 60).
 * @property {number} [timeout] ms to reach the broker, and for a send to be acknowledged
 *   (default 10 s).
 * @property {string} [wsPath] the broker's WebSocket path (`mqtt+ws:`; default "/mqtt").
 * @property {number} [maxLine] the largest payload accepted, in bytes (default 16 MiB).
 * @property {import("./base.js").ErrorHandler} [onError] called with each DecodeError.
 * @property {string} [username] the login (never in the URL).
 * @property {string} [password]
 * @property {Record<string, any>} [tls] TLS options for mqtt.js (`ca`, `cert`, `key`,
 *   `rejectUnauthorized`, `servername`...); given, TLS is used whatever the scheme.
 * @property {AbortSignal} [signal] aborting it closes the channel (or the attempt to connect).
 * @property {unknown} [library] mqtt.js itself, or a specifier/URL to import it from (default
 *   "mqtt"; the browser module passes its browser build).
 */

/**
 * @param {import("../urls.js").Address} address
 * @param {"connect" | "listen"} side
 * @param {MqttOptions} options
 * @returns {Promise<MqttChannel>}
 */
async function open(address, side, options) {
  const [client, signal] = await openClient(address, side, options);
  return new MqttChannel(client, signal);
}

/**
 * An open client for one end (mirror of Python's `_open`, and of `_rpc_client` for calls).
 * @param {import("../urls.js").Address} address
 * @param {"connect" | "listen"} side
 * @param {MqttOptions} options
 * @param {"rpcConnect" | "rpcListen" | null} [calls] one end of calls (MQTT 5 only): the client
 *   keeps each message's reply topic and correlation data, and a caller (a fresh clean
 *   `bothways-caller-<nonce>` by default) subscribes to its reply topic instead of the service
 *   topic it publishes to.
 * @returns {Promise<[Client, AbortSignal | undefined]>}
 */
async function openClient(address, side, options, calls = null) {
  const {
    maxLine = MAX_LINE,
    onError,
    username,
    password,
    tls,
    signal,
    library = "mqtt",
    qos,
    clientId,
    clean,
    session,
    share,
    protocol,
    keepalive,
    timeout,
    wsPath,
    ...rest
  } = options;
  refuseUnknown(rest, calls ?? side);
  checkOptions({ maxLine, timeout });
  if (qos !== undefined && qos !== 0 && qos !== 1 && qos !== 2) {
    throw new RangeError(`qos must be 0, 1 or 2, got ${qos}`);
  }
  if (protocol !== undefined && protocol !== "5" && protocol !== "3.1.1") {
    throw new RangeError(`protocol must be "5" or "3.1.1", got ${protocol}`);
  }
  if (calls !== null && (protocol ?? "5") !== "5") {
    throw new UrlError("calls through the broker need MQTT 5 (protocol=5)", { url: address.url });
  }
  const caller = calls === "rpcConnect";
  let thePlan = plan(address, side, {
    nonce: nonce(),
    qos,
    clientId: caller ? (clientId ?? `bothways-caller-${nonce()}`) : clientId,
    clean: caller ? (clean ?? true) : clean,
    session,
    share: side === "listen" ? share : undefined,
    protocol,
    keepalive,
    timeout,
    wsPath,
  });
  if (caller) thePlan = new Plan({ ...thePlan, subscribe: REPLIES + thePlan.clientId });
  const connect = await mqttConnect(library);
  const client = new Client(thePlan, {
    maxLine,
    onError: onError ?? logError,
    options: { username, password, tls },
  });
  client.withReply = calls !== null; // (before the first message can come)
  await client.open(connect, signal);
  return [client, signal];
}

/**
 * The publishing end of an mqtt URL.
 * @param {import("../urls.js").Address} address `mqtt://host:port/topic` (or mqtts, mqtt+ws,
 *   mqtt+wss); the topic has no wildcard.
 * @param {MqttOptions} [options]
 * @returns {Promise<MqttChannel>}
 * @throws {UrlError} the topic holds a wildcard.
 * @throws {ConnectError} the broker cannot be reached, refused the login, or did not answer
 *   within `timeout`.
 * @throws {TypeError} an unknown option.
 */
export function connect(address, options = {}) {
  return open(address, "connect", options);
}

/**
 * The subscribing end of an mqtt URL (the topic may be a filter with `+` and `#`).
 * @param {import("../urls.js").Address} address `mqtt://host:port/topic/#` (or mqtts, mqtt+ws,
 *   mqtt+wss).
 * @param {MqttOptions} [options]
 * @returns {Promise<MqttChannel>}
 * @throws {UrlError} `share` with a `$share/` topic.
 * @throws {ConnectError} the broker cannot be reached, refused the login or the subscription, or
 *   did not answer within `timeout`.
 * @throws {TypeError} an unknown option.
 */
export function listen(address, options = {}) {
  return open(address, "listen", options);
}

// --------------------------------------------------------------------------------------------
// Calls through the broker: the two ends of a Peer

/**
 * What both ends of calls share: a client that keeps reply topics, read through an MqttChannel
 * (so that receiving, closing and the abort signal behave as there).
 */
class RpcLink {
  /**
   * @param {Client} client an open client that keeps reply topics.
   * @param {AbortSignal} [signal] aborting it closes the channel.
   */
  constructor(client, signal) {
    this.client = client;
    this.channel = new MqttChannel(client, signal);
  }

  /**
   * The messages received, each with its reply topic and correlation data (at least one: it
   * waits for that one).
   * @param {number} most
   * @returns {Promise<[any, string | null, Uint8Array | null][]>}
   */
  take(most) {
    return this.channel.receiveMany(most);
  }

  /**
   * Publishes one message to `topic` with MQTT 5 `properties`; resolves once the broker has it.
   * @param {unknown} message
   * @param {string} topic
   * @param {Record<string, unknown>} properties
   * @returns {Promise<void>}
   */
  async publish(message, topic, properties) {
    const payload = encode(message).slice(0, -1);
    if (this.client.closed) throw new TransportClosed(`${this.client.plan.url}: the channel is closed`);
    await this.client.publish([payload], topic, properties);
  }
}

/** The channel face of both ends of calls. Mirror of Python's `_AsyncRpcEnd`. */
class RpcEnd extends Listener {
  #link;

  /** @param {RpcLink} link */
  constructor(link) {
    super();
    this.#link = link;
    this.url = link.client.plan.url;
  }

  /**
   * The client id the broker knows this end by (a caller's reply topic ends with it).
   * @returns {string}
   */
  get clientId() {
    return this.#link.client.plan.clientId;
  }

  /**
   * The next message.
   * @returns {Promise<any>}
   * @throws {TransportClosed} the channel is closed (once the messages received before are taken).
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  async receive() {
    return (await this.receiveMany(1))[0];
  }

  /**
   * Disconnects; safe to call twice.
   * @returns {Promise<void>}
   */
  close() {
    return this.#link.channel.close();
  }
}

/**
 * The serving end of calls on a service topic: give it to a Peer and expose functions. Mirror of
 * Python's `AsyncRpcServer`.
 */
export class RpcServer extends RpcEnd {
  #link;
  /** Where each answer goes. @type {RpcRoutes} */
  routes = new RpcRoutes();

  /**
   * Made by `rpcListen`.
   * @param {RpcLink} link
   */
  constructor(link) {
    super(link);
    this.#link = link;
  }

  /**
   * The requests (renumbered by `routes`) and the other messages received, oldest first: at
   * least one (it waits for that one).
   * @param {number} [most] take at most this many.
   * @returns {Promise<any[]>}
   * @throws {TransportClosed} the channel is closed (once the messages received before are taken).
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  async receiveMany(most = Infinity) {
    const routes = this.routes;
    for (;;) {
      // (a batch of only cancels for calls held elsewhere: nothing to hand out)
      const messages = (await this.#link.take(most))
        .map(([value, replyTo, correlation]) => routes.incoming(value, replyTo, correlation))
        .filter((message) => message !== null);
      if (messages.length > 0) return messages;
    }
  }

  /**
   * Sends an answer of the Peer to its caller's reply topic, with the caller's id and
   * correlation data; drops what answers nothing routed here (it has nowhere to go). Resolves
   * once the broker has it.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the answer cannot cross.
   * @throws {TransportClosed} the channel is closed, or no acknowledgement within `timeout`.
   * @throws {TransportError} the broker refused it.
   */
  async send(value) {
    const sent = this.routes.outgoing(value).map(([replyTo, correlation, message]) =>
      this.#link.publish(message, replyTo, correlation === null ? {} : { correlationData: correlation }),
    );
    await Promise.all(sent);
  }
}

/**
 * The calling end: requests to the service topic, answers on its own reply topic
 * (`bothways/replies/<clientId>`). Nothing tells a caller that the server which took its call
 * died: a Peer's calls on it time out after `callTimeout` ms (CallTimeout) unless given a
 * `timeout` of their own. Mirror of Python's `AsyncRpcCaller`.
 */
export class RpcCaller extends RpcEnd {
  #link;

  /**
   * Made by `rpcConnect`.
   * @param {RpcLink} link its client subscribed to its reply topic.
   * @param {number | null} callTimeout ms; null: calls wait for ever.
   */
  constructor(link, callTimeout) {
    super(link);
    this.#link = link;
    /**
     * What a Peer on this channel waits for an answer by default, in ms (null: for ever).
     * @type {number | null}
     */
    this.callTimeout = callTimeout;
  }

  /**
   * The answers received, oldest first: at least one (it waits for that one).
   * @param {number} [most] take at most this many.
   * @returns {Promise<any[]>}
   * @throws {TransportClosed} the channel is closed (once the messages received before are taken).
   * @throws {Error} what the `onError` policy threw, in its turn.
   */
  async receiveMany(most = Infinity) {
    return (await this.#link.take(most)).map(([value]) => value);
  }

  /**
   * Publishes a message of the Peer to the service topic, with our reply topic and, for a
   * request, its id (its JSON, as bytes) as the correlation data. Resolves once the broker has it.
   * @param {unknown} value
   * @returns {Promise<void>}
   * @throws {import("../errors.js").EncodeError} the message cannot cross (nothing is sent).
   * @throws {TransportClosed} the channel is closed, or no acknowledgement within `timeout`.
   * @throws {TransportError} the broker refused it.
   */
  async send(value) {
    const plan = this.#link.client.plan;
    const callId = isObject(value) ? (value.id ?? null) : null;
    /** @type {Record<string, unknown>} */
    const properties = { responseTopic: REPLIES + plan.clientId };
    if (callId !== null) properties.correlationData = utf8.encode(encode(callId).slice(0, -1));
    await this.#link.publish(value, /** @type {string} */ (plan.publish), properties);
  }
}

/**
 * @typedef {Omit<MqttOptions, "share"> & {callTimeout?: number | null}} RpcConnectOptions
 *   `callTimeout`: ms a Peer's call waits for its answer unless it gives a `timeout` of its own
 *   (default `CALL_TIMEOUT`, 30 s; null: for ever).
 */

/**
 * `address` parsed, and its query's options for `side` merged under `options`.
 * @param {string | Address} address
 * @param {"connect" | "listen"} side
 * @param {Record<string, any>} options
 * @returns {[Address, Record<string, any>]}
 */
function resolved(address, side, options) {
  const parsed = address instanceof Address ? address : parse(address);
  return [parsed, { ...parsed.options(side), ...options }];
}

/**
 * The serving end of calls on the service topic of `address` (`share` to split the calls among
 * several servers, in any process): `new Peer(await rpcListen(url))`. Mirror of Python's
 * `async_rpc_listen`.
 * @param {string | Address} address `mqtt://host:port/services/name?share=group` (or mqtts,
 *   mqtt+ws, mqtt+wss); the query's options apply, under those given here.
 * @param {MqttOptions} [options] `share`: the group whose servers split the calls (each call
 *   goes to one of them).
 * @returns {Promise<RpcServer>}
 * @throws {UrlError} not MQTT 5, or a topic it cannot use.
 * @throws {ConnectError} the broker cannot be reached, refused the login or the subscription, or
 *   did not answer within `timeout`.
 * @throws {TypeError} an unknown option.
 */
export async function rpcListen(address, options = {}) {
  const [parsed, merged] = resolved(address, "listen", options);
  const [client, signal] = await openClient(parsed, "listen", merged, "rpcListen");
  return new RpcServer(new RpcLink(client, signal));
}

/**
 * The calling end for the service topic of `address`: `new Peer(await rpcConnect(url))`; its
 * calls time out after `callTimeout` ms by default. Mirror of Python's `async_rpc_connect`.
 * @param {string | Address} address `mqtt://host:port/services/name` (or mqtts, mqtt+ws,
 *   mqtt+wss); no wildcard.
 * @param {RpcConnectOptions} [options]
 * @returns {Promise<RpcCaller>}
 * @throws {UrlError} not MQTT 5, or the topic holds a wildcard.
 * @throws {ConnectError} the broker cannot be reached, refused the login or the subscription to
 *   the reply topic, or did not answer within `timeout`.
 * @throws {TypeError} an unknown option.
 * @throws {RangeError} a `callTimeout` that is not null nor a number of ms > 0.
 */
export async function rpcConnect(address, { callTimeout = CALL_TIMEOUT, ...options } = {}) {
  if (callTimeout !== null && !(callTimeout > 0)) {
    throw new RangeError(`callTimeout must be a number of milliseconds > 0 or null, got ${callTimeout}`);
  }
  const [parsed, merged] = resolved(address, "connect", options);
  const [client, signal] = await openClient(parsed, "connect", merged, "rpcConnect");
  return new RpcCaller(new RpcLink(client, signal), callTimeout);
}
