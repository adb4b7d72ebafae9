/**
 * JSON-RPC 2.0, sans-I/O: objects in, objects and events out. Mirrored name for name from
 * `src/bothways/rpc.py`.
 *
 * Strategy
 * --------
 * `RpcEndpoint` is one side of a connection, caller and callee at once (both sides may call each
 * other at the same time). It keeps the bookkeeping only: ids of our calls in flight, the batches
 * it owes an answer to. It never calls a function, waits, or touches a socket: the adapter does
 * that, and a test can drive the endpoint with plain objects (spec/vectors/rpc.json).
 *
 * - `request(method, params) -> id` / `notify(...)` / `cancel(id)` queue messages to send;
 *   `forget(id)` drops a call whose request was never sent (the peer is told nothing).
 * - `receive(message) -> events` takes one decoded message (an object, or an array: a batch) and
 *   says what happened: `Request`, `Notification`, `Cancelled` (the peer gave up on a request it
 *   sent us), `Response` / `ErrorResponse` (an answer to our call). Invalid input never throws:
 *   the endpoint queues the error response that the specification requires.
 * - `respond(id, result)` / `respondError(id, code, message, data)` answer a `Request`; answers
 *   to a batch are sent together, as one array, once all are known. Answers go by id, so a
 *   request whose id is the id of one of the peer's requests still unanswered (in this batch or
 *   an earlier message) is refused at once with Invalid Request, and never becomes an event.
 * - `messagesToSend() -> array` drains what to write, in order.
 * - `failAll(error)` ends every call in flight when the connection is gone.
 *
 * Rules
 * -----
 * No I/O, no clock, no timers: no `node:*` imports, so this module loads in a browser unchanged.
 * Python's `None` is `null` here; `undefined` (which JSON cannot carry) is read as `null` wherever
 * Python has `None` as a default, so that no key silently drops out of a message.
 * Ids are compared as Python compares dict keys for JSON ids: `1` and `"1"` are different calls
 * (a `Map`, not an object, holds them).
 *
 * @module bothways/rpc
 */

import { RemoteError } from "./errors.js";

/** Invalid JSON was received. */
export const PARSE_ERROR = -32700;
/** The JSON sent is not a valid Request object. */
export const INVALID_REQUEST = -32600;
/** The method does not exist or is not available. */
export const METHOD_NOT_FOUND = -32601;
/** Invalid method parameters. */
export const INVALID_PARAMS = -32602;
/** Internal JSON-RPC error (also: a malformed error object from the peer). */
export const INTERNAL_ERROR = -32603;
/** The callee raised: bothways' range is -32000..-32099. */
export const SERVER_ERROR = -32000;
/** The caller cancelled (as the Language Server Protocol numbers it). */
export const REQUEST_CANCELLED = -32800;
/** Notification `{"id": ...}`: the caller gave up on that call. */
export const CANCEL_METHOD = "$/cancelRequest";
/** The first call to a served module: the handshake (spec/PROTOCOL.md section 8). */
export const HELLO_METHOD = "$/hello";
/** The calls protocol's version: a peer that speaks another one is refused at once. */
export const PROTOCOL = 1;

/**
 * @typedef {object} Hello what one side says of itself in the handshake.
 * @property {number} protocol the calls protocol's version (`PROTOCOL`).
 * @property {string} version the bothways package's version.
 * @property {string} language `"javascript"` or `"python"`.
 * @property {boolean} [binary] this side reads binary frames (spec/PROTOCOL.md section 2).
 */

/**
 * What one side says of itself in the handshake: the params of the parent's `$/hello` call,
 * and (with the module's functions added) the served module's answer. `binary`: this side reads
 * binary frames (spec/PROTOCOL.md section 2); once both said it, bytes and arrays use them.
 * @param {string} version this package's version.
 * @param {string} language `"javascript"` here.
 * @returns {Hello}
 */
export function hello(version, language) {
  return { protocol: PROTOCOL, version, language, binary: true };
}

/**
 * Whether the other side's hello says it reads binary frames.
 * @param {unknown} theirs its `$/hello` params or answer.
 * @returns {boolean}
 */
export function speaksBinary(theirs) {
  return isObject(theirs) && member(theirs, "binary") === true;
}

/**
 * @param {unknown} side
 * @returns {string}
 */
function described(side) {
  if (!isObject(side)) {
    return `a peer without the handshake (it said ${show(side)})`;
  }
  const get = (/** @type {string} */ key) => {
    const value = member(side, key);
    return value === undefined || value === null ? "?" : typeof value === "string" ? value : show(value);
  };
  return `bothways ${get("version")} for ${get("language")} (protocol ${get("protocol")})`;
}

/**
 * Why a peer whose hello is `theirs` cannot be talked to (a message naming both versions).
 * @param {Hello} ours
 * @param {unknown} theirs
 * @returns {string | null} null when it speaks our protocol.
 */
export function helloRefusal(ours, theirs) {
  if (isObject(theirs) && member(theirs, "protocol") === ours.protocol) {
    return null;
  }
  return `protocol mismatch: ${described(ours)} cannot talk to ${described(theirs)}`;
}

/** @typedef {string | number} Id a string or an integer (never a boolean). */

/**
 * Base class of the events `receive` returns.
 * (Python's `RpcEvent` is the Union of the five; here it is their common base class.)
 */
export class RpcEvent {}

/**
 * The peer calls `method`; answer with `respond` or `respondError`.
 */
export class Request extends RpcEvent {
  /**
   * @param {Id} id
   * @param {string} method
   * @param {unknown} [params] an array or an object; `null` when the call had none.
   */
  constructor(id, method, params = null) {
    super();
    /** @type {Id} */
    this.id = id;
    /** @type {string} */
    this.method = method;
    /** @type {unknown} */
    this.params = params;
    Object.freeze(this);
  }
}

/**
 * The peer tells us something; no answer is expected.
 */
export class Notification extends RpcEvent {
  /**
   * @param {string} method
   * @param {unknown} [params] an array or an object; `null` when the notification had none.
   */
  constructor(method, params = null) {
    super();
    /** @type {string} */
    this.method = method;
    /** @type {unknown} */
    this.params = params;
    Object.freeze(this);
  }
}

/**
 * The peer no longer wants the answer to its request `id` (stop the work if you can).
 */
export class Cancelled extends RpcEvent {
  /**
   * @param {Id} id
   */
  constructor(id) {
    super();
    /** @type {Id} */
    this.id = id;
    Object.freeze(this);
  }
}

/**
 * Our call `id` succeeded.
 */
export class Response extends RpcEvent {
  /**
   * @param {Id} id
   * @param {unknown} result
   */
  constructor(id, result) {
    super();
    /** @type {Id} */
    this.id = id;
    /** @type {unknown} */
    this.result = result;
    Object.freeze(this);
  }
}

/**
 * Our call `id` failed (`id` is `null` when the peer could not tell which call).
 *
 * `error` is a RemoteError for an answer from the peer; from `failAll` it is the cause given
 * there (ChildExited with the exit code and stderr tail, TransportClosed...).
 */
export class ErrorResponse extends RpcEvent {
  /**
   * @param {Id | null} id
   * @param {import("./errors.js").BothwaysError} error
   */
  constructor(id, error) {
    super();
    /** @type {Id | null} */
    this.id = id;
    /** @type {import("./errors.js").BothwaysError} */
    this.error = error;
    Object.freeze(this);
  }
}

/** The requests of one batch from the peer, and what is known of its answer so far. */
class Batch {
  /** @type {Id[]} */
  ids = [];
  /** @type {Map<Id, object>} */
  answers = new Map();
  /** @type {object[]} */
  errors = [];
}

/**
 * A RemoteError from a JSON-RPC error object (bothways puts type and traceback in `data`).
 *
 * Never throws: a malformed error object gives a RemoteError with code INTERNAL_ERROR.
 * @param {unknown} error the `error` member of a response.
 * @returns {RemoteError}
 */
export function remoteError(error) {
  if (!isObject(error)) {
    return new RemoteError(`malformed error object: ${show(error)}`, { rpcCode: INTERNAL_ERROR });
  }
  const data = member(error, "data");
  let remoteType = "";
  let remoteTraceback = "";
  if (isObject(data)) {
    remoteType = text(member(data, "type"));
    remoteTraceback = text(member(data, "traceback"));
  }
  const code = member(error, "code");
  return new RemoteError(text(member(error, "message")), {
    rpcCode: Number.isInteger(code) ? /** @type {number} */ (code) : INTERNAL_ERROR,
    remoteType,
    remoteTraceback,
    data,
  });
}

/**
 * One side of a JSON-RPC 2.0 connection: caller and callee at once. See the module docs.
 */
export class RpcEndpoint {
  #nextId = 1;
  /** Our calls in flight: id -> method. @type {Map<Id, string>} */
  #pending = new Map();
  /** Request id -> the batch it came in. @type {Map<Id, Batch>} */
  #batches = new Map();
  /** Ids of the peer's requests not answered yet. @type {Set<Id>} */
  #owed = new Set();
  /** @type {unknown[]} */
  #outbox = [];

  /**
   * The ids of our calls still waiting for an answer, oldest first.
   * @returns {Id[]}
   */
  get pending() {
    return [...this.#pending.keys()];
  }

  // -- calling ----------------------------------------------------------------------------------

  /**
   * Queues a call; returns its id, which the `Response`/`ErrorResponse` will carry.
   * Then call `messagesToSend()` and write what it gives.
   * @param {string} method
   * @param {unknown} [params] an array or an object; `null`/`undefined`: the call has none.
   * @returns {number} the id of the call.
   */
  request(method, params = null) {
    const callId = this.#nextId++;
    this.#pending.set(callId, method);
    this.#outbox.push(call(method, params, callId));
    return callId;
  }

  /**
   * Queues a notification (no answer).
   * @param {string} method
   * @param {unknown} [params] an array or an object; `null`/`undefined`: the call has none.
   * @returns {void}
   */
  notify(method, params = null) {
    this.#outbox.push(call(method, params, null));
  }

  /**
   * Gives up on our call `callId`: forgets it and tells the peer.
   * A late answer to it is dropped by `receive`.
   * @param {Id} callId
   * @returns {boolean} false if the call was not pending.
   */
  cancel(callId) {
    if (!this.#pending.delete(callId)) {
      return false;
    }
    this.notify(CANCEL_METHOD, { id: callId });
    return true;
  }

  /**
   * Drops our call `callId` without telling the peer: for a request that never left (its
   * arguments could not be encoded). Its request leaves the send queue if it is still there.
   * @param {Id} callId
   * @returns {boolean} false if the call was not pending.
   */
  forget(callId) {
    if (!this.#pending.delete(callId)) {
      return false;
    }
    this.#outbox = this.#outbox.filter(
      (message) => !(isObject(message) && Object.hasOwn(message, "method") && message.id === callId),
    );
    return true;
  }

  /**
   * Ends every call in flight (the peer is gone); one ErrorResponse each, with `error`.
   * @param {import("./errors.js").BothwaysError} error the cause, e.g. ChildExited.
   * @returns {ErrorResponse[]}
   */
  failAll(error) {
    const failed = [...this.#pending.keys()].map((callId) => new ErrorResponse(callId, error));
    this.#pending.clear();
    return failed;
  }

  // -- answering --------------------------------------------------------------------------------

  /**
   * Answers the peer's request `requestId` with `result`.
   * @param {Id} requestId
   * @param {unknown} result `undefined` is sent as `null` (a response must carry a result).
   * @returns {void}
   */
  respond(requestId, result) {
    this.#answer(requestId, { jsonrpc: "2.0", result: result === undefined ? null : result, id: requestId });
  }

  /**
   * Answers the peer's request with an error (`requestId` null: unknown request).
   * @param {Id | null} requestId `undefined` is sent as `null`.
   * @param {number} code a JSON-RPC error code, e.g. METHOD_NOT_FOUND.
   * @param {string} message
   * @param {unknown} [data] omitted from the error object when `null`/`undefined`.
   * @returns {void}
   */
  respondError(requestId, code, message, data = null) {
    const id = requestId ?? null; // a response always carries an id, null when unknown
    this.#answer(id, { jsonrpc: "2.0", error: errorObject(code, message, data), id });
  }

  /**
   * Queues the -32700 answer for input that was not JSON (the adapter's decoder saw it).
   * @param {string} [message]
   * @returns {void}
   */
  parseError(message = "Parse error") {
    this.respondError(null, PARSE_ERROR, message);
  }

  /**
   * @param {Id | null} requestId
   * @param {object} answer
   */
  #answer(requestId, answer) {
    // null is never a key: a request with a null id is refused by receive().
    this.#owed.delete(/** @type {Id} */ (requestId));
    const batch = this.#batches.get(/** @type {Id} */ (requestId));
    if (batch === undefined) {
      this.#outbox.push(answer);
      return;
    }
    this.#batches.delete(/** @type {Id} */ (requestId));
    batch.answers.set(/** @type {Id} */ (requestId), answer);
    if (batch.answers.size === batch.ids.length) {
      this.#outbox.push([...batch.errors, ...batch.ids.map((id) => batch.answers.get(id))]);
    }
  }

  // -- receiving --------------------------------------------------------------------------------

  /**
   * Takes one decoded message (or batch) from the peer; returns what it means.
   *
   * After handling the events (and answering each `Request`), call `messagesToSend()`.
   * Never throws on bad input: the required error answer is queued instead.
   * @param {unknown} message a decoded JSON value.
   * @returns {RpcEvent[]}
   */
  receive(message) {
    if (typeof message === "object" && message !== null && message.jsonrpc === "2.0") {
      // The common cases first, told by what they are: a request with an id and params, an
      // answer to one of our calls. Whatever else the message is (an error, a notification,
      // invalid) is for the full checks below. (None of the names read here is a member of
      // Object.prototype, so on a parsed message a read finds only its own members.)
      const messageId = message.id;
      if (typeof messageId === "string" || Number.isInteger(messageId)) {
        const method = message.method;
        if (typeof method === "string") {
          const params = message.params;
          if (typeof params === "object" && params !== null && !this.#owed.has(messageId)) {
            this.#owed.add(messageId);
            return [new Request(messageId, method, params)];
          }
        } else if (method === undefined && "result" in message && !("error" in message)) {
          if (!this.#pending.delete(messageId)) {
            return []; // an answer to nothing we asked (or cancelled): dropped
          }
          return [new Response(messageId, message.result)];
        }
      }
    } else if (Array.isArray(message)) {
      return this.#receiveBatch(message);
    }
    /** @type {RpcEvent[]} */
    const events = [];
    let error = this.#take(message, events);
    if (error === null && events[0] instanceof Request) {
      error = this.#reused(events, []);
    }
    if (error !== null) {
      this.#outbox.push(error);
    }
    return events;
  }

  /**
   * @param {unknown[]} batch
   * @returns {RpcEvent[]}
   */
  #receiveBatch(batch) {
    if (batch.length === 0) {
      this.#outbox.push(invalid("empty batch"));
      return [];
    }
    /** @type {RpcEvent[]} */
    const events = [];
    const state = new Batch();
    for (const item of batch) {
      const before = events.length;
      let error = this.#take(item, events); // (at most one event per item)
      const event = events.at(-1);
      if (error === null && events.length > before && event instanceof Request) {
        error = this.#reused(events, state.ids);
        if (error === null) {
          state.ids.push(event.id);
        }
      }
      if (error !== null) {
        state.errors.push(error);
      }
    }
    if (state.ids.length > 0) {
      for (const requestId of state.ids) {
        this.#batches.set(requestId, state);
      }
    } else if (state.errors.length > 0) {
      this.#outbox.push(state.errors);
    }
    return events;
  }

  /**
   * The request just taken (the last event) is owed an answer from now on, or refused when its
   * id is one still owed (two answers could not be told apart): the event is dropped and the
   * Invalid Request answer returned.
   * @param {RpcEvent[]} events
   * @param {Id[]} batchIds the ids taken so far in the batch under way.
   * @returns {object | null}
   */
  #reused(events, batchIds) {
    const requestId = /** @type {Request} */ (events.at(-1)).id;
    let reason;
    if (batchIds.includes(requestId)) {
      reason = "duplicate id in batch";
    } else if (this.#owed.has(requestId)) {
      reason = `duplicate id ${JSON.stringify(requestId)}: a request with this id is still unanswered`;
    } else {
      this.#owed.add(requestId);
      return null;
    }
    events.pop();
    return invalid(reason, requestId);
  }

  /**
   * Appends the event for one message; returns the error answer it requires, if any.
   * @param {unknown} message
   * @param {RpcEvent[]} events
   * @returns {object | null}
   */
  #take(message, events) {
    if (!isObject(message)) {
      return invalid(`expected an object, got ${jsonType(message)}`);
    }
    const hasId = Object.hasOwn(message, "id");
    const messageId = hasId ? message.id : null;
    if (hasId && messageId !== null && !validId(messageId)) {
      return invalid("id must be a string, an integer or null");
    }
    if (member(message, "jsonrpc") !== "2.0") {
      return invalid('"jsonrpc" must be exactly "2.0"', messageId);
    }
    if (Object.hasOwn(message, "method")) {
      const method = message.method;
      const hasParams = Object.hasOwn(message, "params");
      const params = hasParams ? message.params : null;
      if (typeof method !== "string") {
        return invalid("method must be a string", messageId);
      }
      if (hasParams && !isObject(params) && !Array.isArray(params)) {
        return invalid("params must be an array or an object", messageId);
      }
      if (!hasId) {
        if (method === CANCEL_METHOD && isObject(params) && validId(member(params, "id"))) {
          events.push(new Cancelled(/** @type {Id} */ (params.id)));
        } else {
          events.push(new Notification(method, params));
        }
        return null;
      }
      if (messageId === null) {
        return invalid("a request's id must not be null");
      }
      events.push(new Request(/** @type {Id} */ (messageId), method, params));
      return null;
    }
    const hasError = Object.hasOwn(message, "error");
    if (Object.hasOwn(message, "result") || hasError) {
      if (messageId === null || !this.#pending.delete(/** @type {Id} */ (messageId))) {
        if (hasError && messageId === null) {
          events.push(new ErrorResponse(null, remoteError(message.error)));
        }
        return null; // an answer to nothing we asked (or cancelled): dropped
      }
      if (hasError) {
        events.push(new ErrorResponse(/** @type {Id} */ (messageId), remoteError(message.error)));
      } else {
        events.push(new Response(/** @type {Id} */ (messageId), message.result));
      }
      return null;
    }
    return invalid("neither a request nor a response", messageId);
  }

  /**
   * Drains the messages (objects, or arrays for batch answers) to write, in order.
   * @returns {unknown[]}
   */
  messagesToSend() {
    const out = this.#outbox;
    this.#outbox = [];
    return out;
  }
}

/**
 * @param {string} method
 * @param {unknown} params
 * @param {Id | null} callId
 * @returns {object}
 */
function call(method, params, callId) {
  /** @type {Record<string, unknown>} */
  const message = { jsonrpc: "2.0", method };
  // (never undefined: request's and notify's default turns it into null)
  if (params !== null) {
    message.params = params;
  }
  if (callId !== null) {
    message.id = callId;
  }
  return message;
}

/**
 * @param {number} code
 * @param {string} message
 * @param {unknown} data
 * @returns {object}
 */
function errorObject(code, message, data) {
  /** @type {Record<string, unknown>} */
  const error = { code, message };
  // (never undefined: respondError's default turns it into null)
  if (data !== null) {
    error.data = data;
  }
  return error;
}

/**
 * @param {string} reason
 * @param {Id | null} [requestId]
 * @returns {object}
 */
function invalid(reason, requestId = null) {
  return { jsonrpc: "2.0", error: errorObject(INVALID_REQUEST, "Invalid Request", { reason }), id: requestId };
}

/**
 * Python's `isinstance(value, dict)` for a decoded JSON value.
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Python's `value.get(key)`: own members only (`"constructor"` is not a member of `{}`).
 * @param {Record<string, unknown>} value
 * @param {string} key
 * @returns {unknown}
 */
function member(value, key) {
  return Object.hasOwn(value, key) ? value[key] : undefined;
}

/**
 * A string or an integer; not a boolean (Python has to exclude it, JS never counts it).
 * @param {unknown} value
 * @returns {boolean}
 */
function validId(value) {
  return typeof value === "string" || Number.isInteger(value);
}

/**
 * The JSON name of a decoded value's type (the same words in both languages).
 * @param {unknown} value
 * @returns {string}
 */
function jsonType(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number" || typeof value === "bigint") return "number";
  if (typeof value === "string") return "string";
  return Array.isArray(value) ? "array" : "object";
}

/**
 * A string field of an error object as text: absent or null is empty, others as JSON
 * (as rpc.py's `_text`).
 * @param {unknown} value
 * @returns {string}
 */
function text(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : show(value);
}

/**
 * A value written out for a message (JSON where it can be; Python writes its repr there).
 * @param {unknown} value
 * @returns {string}
 */
function show(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value); // a BigInt or a cycle: only from a caller, never from the decoder
  }
}
