/**
 * The channel URL scheme, parsed by the same rules as `src/bothways/urls.py` (spec/PROTOCOL.md
 * §7) and pinned by `spec/vectors/urls.json`. `parse(url)` returns an `Address`; no I/O, no
 * `node:*` import (it loads in browsers).
 *
 *     tcp://host:port?token=...            ws://host:port/path?token=...
 *     fifo:/path   fifo:relative/path      file:/path?state=/path.offset&poll=0.05
 *     stdio:       mqtt://host:port/topic/levels?qos=1   (also mqtts:, mqtt+ws:, mqtt+wss:)
 *
 * Option names in the query are Python's (`max_line`), as on the wire; `Address.options()` gives
 * them in JavaScript's spelling (`maxLine`), with times in milliseconds.
 *
 * @module bothways/urls
 */

import { UrlError } from "./errors.js";

const MQTT = ["mqtt", "mqtts", "mqtt+ws", "mqtt+wss"];
const NETWORK = ["tcp", "ws", ...MQTT];
const PATHS = ["fifo", "file"];

/** Every scheme with a transport, in both languages. */
export const SCHEMES = Object.freeze(["stdio", ...NETWORK, ...PATHS]);

/** @type {Record<string, string[]>} */
const PARAMS = {
  stdio: ["max_line"],
  tcp: ["max_line", "token", "reconnect", "timeout", "backlog"],
  ws: ["max_line", "token", "reconnect", "timeout", "backlog"],
  fifo: ["max_line", "timeout", "reopen"],
  file: ["max_line", "state", "poll", "follow", "max_bytes", "keep"],
};
const MQTT_PARAMS = ["max_line", "qos", "client_id", "clean", "session", "share", "protocol", "timeout", "keepalive"];
for (const scheme of MQTT) {
  PARAMS[scheme] = scheme.endsWith("ws") || scheme.endsWith("wss") ? [...MQTT_PARAMS, "ws_path"] : MQTT_PARAMS;
}
/** Options for one end only; the rest apply to both. @type {Record<string, string>} */
const SIDE = {
  reconnect: "connect",
  timeout: "connect",
  max_bytes: "connect",
  keep: "connect",
  reopen: "listen",
  backlog: "listen",
  state: "listen",
  poll: "listen",
  follow: "listen",
};
/** On mqtt, both ends are clients of the broker. @type {Record<string, string>} */
const SIDE_MQTT = { share: "listen" };
/** @type {Record<string, number>} */
const DEFAULT_PORT = { ws: 80, mqtt: 1883, mqtts: 8883, "mqtt+ws": 80, "mqtt+wss": 443 };
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const HOSTNAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const NUMBER = /^[0-9]+(\.[0-9]+)?$/;
const DIGITS = /^[0-9]+$/;
/** The largest whole number both languages hold exactly. */
const MAX_WHOLE = Number.MAX_SAFE_INTEGER;
/** What Python's str.isprintable() calls not printable (the space aside). */
const NOT_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
/** A lone surrogate, which no UTF-8 text holds. */
const LONE_SURROGATE = /\p{Cs}/u;
const WHOLE = ["max_line", "max_bytes", "keep", "backlog", "keepalive"];
const FLAGS = ["reconnect", "reopen", "follow", "clean"];
/** @type {Record<string, boolean>} */
const BOOLEANS = { 1: true, true: true, yes: true, 0: false, false: false, no: false };

/**
 * A parsed channel URL: what `connect` and `listen` dispatch on.
 *
 * `host` and `port` are set for network schemes (`null` otherwise), `path` for ws (the raw
 * request path), mqtt (the topic), fifo and file (the decoded file path); `params` holds the typed query options
 * under their wire (snake_case) names.
 */
export class Address {
  /**
   * @param {string} scheme
   * @param {{host?: string | null, port?: number | null, path?: string,
   *   params?: Record<string, any>}} [parts]
   */
  constructor(scheme, { host = null, port = null, path = "", params = {} } = {}) {
    /** @type {string} */
    this.scheme = scheme;
    /** @type {string | null} */
    this.host = host;
    /** @type {number | null} */
    this.port = port;
    /** @type {string} */
    this.path = path;
    /** @type {Record<string, any>} */
    this.params = params;
    Object.freeze(this);
  }

  /**
   * The canonical form: lower-case scheme and host, options sorted by name.
   * @returns {string}
   */
  get url() {
    let text;
    if (NETWORK.includes(this.scheme)) {
      const host = this.host?.includes(":") ? `[${this.host}]` : this.host;
      const path = MQTT.includes(this.scheme) ? "/" + quoteTopic(this.path) : this.path;
      text = `${this.scheme}://${host}:${this.port}${path}`;
    } else if (PATHS.includes(this.scheme)) {
      const path = quote(this.path);
      // a path starting with // gets an empty authority first, or it would read as a host
      text = `${this.scheme}:${path.startsWith("//") ? "//" : ""}${path}`;
    } else {
      text = `${this.scheme}:`;
    }
    const keys = Object.keys(this.params).sort();
    if (keys.length > 0) {
      text += "?" + keys.map((k) => `${k}=${format(this.params[k])}`).join("&");
    }
    return text;
  }

  /**
   * The options of the query in JavaScript's spelling: `maxLine`, and `timeout` / `poll` in
   * milliseconds (the URL gives seconds, as in Python). Given a side, `"connect"` or
   * `"listen"`, only the options that apply to that end: one URL serves both (a writer's
   * `max_bytes` means nothing to the reader, a reader's `state` nothing to the writer). Mirror
   * of Python's `params_for`.
   * @param {"connect" | "listen"} [side]
   * @returns {Record<string, any>}
   */
  options(side) {
    /** @type {Record<string, any>} */
    const options = {};
    const sides = MQTT.includes(this.scheme) ? SIDE_MQTT : SIDE;
    for (const [key, value] of Object.entries(this.params)) {
      if (side !== undefined && (sides[key] ?? side) !== side) {
        continue;
      }
      const name = key.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
      options[name] = key === "timeout" || key === "poll" ? value * 1000 : value;
    }
    return options;
  }

  /**
   * The same address on another port (a listener reports the port it got for 0).
   * @param {number} port
   * @returns {Address}
   */
  withPort(port) {
    return new Address(this.scheme, { ...this, port, params: { ...this.params } });
  }

  /** @returns {string} */
  toString() {
    return this.url;
  }
}

/**
 * Python's `urllib.parse.quote(text, safe="/")`.
 * @param {string} text
 * @returns {string}
 */
function quote(text) {
  return encodeURIComponent(text)
    .replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())
    .replace(/%2F/g, "/");
}

/**
 * Python's `quote(topic, safe="/+#$")`: a topic as a canonical mqtt URL writes it.
 * @param {string} topic
 * @returns {string}
 */
function quoteTopic(topic) {
  return quote(topic).replace(/%2B|%23|%24/g, (c) => decodeURIComponent(c));
}

/**
 * @param {any} value
 * @returns {string}
 */
function format(value) {
  if (value === true || value === false) {
    return value ? "1" : "0";
  }
  if (typeof value === "number") {
    return plain(value);
  }
  return quote(String(value));
}

/**
 * A number as a plain decimal, never with an exponent (which parse refuses), digit for digit
 * as Python writes it (`format(Decimal(repr(value)), "f")`, integral values as ints).
 * @param {number} value finite, > 0.
 * @returns {string}
 */
function plain(value) {
  if (Number.isInteger(value)) {
    return BigInt(value).toString();
  }
  const text = String(value); // (a non-integral double is below 1e21: no "e+")
  const small = /^(\d)(?:\.(\d+))?e-(\d+)$/.exec(text);
  return small === null ? text : "0." + "0".repeat(Number(small[3]) - 1) + small[1] + (small[2] ?? "");
}

/**
 * @param {string} text
 * @param {string} url
 * @param {string} what
 * @returns {string}
 * @throws {UrlError}
 */
function decodePart(text, url, what) {
  try {
    if (LONE_SURROGATE.test(text)) {
      throw new URIError("a lone surrogate"); // (decodeURIComponent lets it through)
    }
    return decodeURIComponent(text);
  } catch {
    throw new UrlError(`${what} ${pyRepr(text)} has a bad percent-escape`, { url });
  }
}

/**
 * Python's repr() of a str: the texts the messages show, escaped alike in both languages.
 * @param {string} text
 * @returns {string}
 */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let body = "";
  for (const char of text) {
    const code = /** @type {number} */ (char.codePointAt(0));
    if (char === "\\" || char === quote) {
      body += "\\" + char;
    } else if (char === "\t" || char === "\n" || char === "\r") {
      body += char === "\t" ? "\\t" : char === "\n" ? "\\n" : "\\r";
    } else if (char !== " " && NOT_PRINTABLE.test(char)) {
      const [mark, width] = code < 0x100 ? ["x", 2] : code < 0x10000 ? ["u", 4] : ["U", 8];
      body += `\\${mark}${code.toString(16).padStart(width, "0")}`;
    } else {
      body += char;
    }
  }
  return quote + body + quote;
}

/**
 * ASCII digits as a number, at most 2**53 - 1 (what both languages hold exactly).
 * @param {string} key
 * @param {string} value
 * @param {string} url
 * @returns {number}
 * @throws {UrlError}
 */
function whole(key, value, url) {
  const number = Number(value);
  if (number > MAX_WHOLE) {
    throw new UrlError(`${key} must be at most ${MAX_WHOLE}, got ${pyRepr(value)}`, { url });
  }
  return number;
}

/**
 * Parses a channel URL.
 * @param {string} url
 * @returns {Address}
 * @throws {UrlError} saying what is wrong and where.
 */
export function parse(url) {
  if (typeof url !== "string") {
    throw new UrlError(`expected a string, got ${url === null ? "null" : typeof url}`, {
      url: String(url),
    });
  }
  const known = SCHEMES.map((s) => `${s}:`).join(", ");
  const match = SCHEME.exec(url);
  if (!match) {
    throw new UrlError(`no scheme (expected one of ${known})`, { url });
  }
  const scheme = match[1].toLowerCase();
  if (!SCHEMES.includes(scheme)) {
    throw new UrlError(`unknown scheme ${pyRepr(scheme + ":")} (known: ${known})`, { url });
  }
  let rest = url.slice(match[0].length);
  if (rest.includes("#") && !MQTT.includes(scheme)) {
    throw new UrlError("a fragment (#...) means nothing here", { url });
  }
  const q = rest.indexOf("?");
  const query = q < 0 ? "" : rest.slice(q + 1);
  rest = q < 0 ? rest : rest.slice(0, q);
  const params = query ? parseParams(scheme, query, url) : {};
  if (NETWORK.includes(scheme)) {
    return parseNetwork(scheme, rest, params, url);
  }
  if (PATHS.includes(scheme)) {
    return new Address(scheme, { path: parsePath(scheme, rest, url), params });
  }
  if (rest) {
    throw new UrlError(`stdio: takes no path, got ${pyRepr(rest)}`, { url });
  }
  return new Address(scheme, { params });
}

/**
 * @param {string} scheme
 * @param {string} rest
 * @param {Record<string, any>} params
 * @param {string} url
 * @returns {Address}
 */
function parseNetwork(scheme, rest, params, url) {
  if (!rest.startsWith("//")) {
    throw new UrlError(`${scheme}: needs //host:port`, { url });
  }
  const slash = rest.indexOf("/", 2);
  const authority = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
  let path = slash < 0 ? "" : rest.slice(slash);
  if (authority.includes("@")) {
    const use = MQTT.includes(scheme) ? "pass username= and password= as options" : "use ?token=";
    throw new UrlError(`user names and passwords do not go in the URL (${use})`, { url });
  }
  let host;
  let after;
  if (authority.startsWith("[")) {
    const end = authority.indexOf("]");
    host = authority.slice(1, end);
    after = authority.slice(end + 1);
    if (end < 0 || !IPV6.test(host) || !host.includes(":")) {
      throw new UrlError(`bad IPv6 address in ${pyRepr(authority)}`, { url });
    }
  } else {
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    after = colon < 0 ? "" : authority.slice(colon);
    if (host && !HOSTNAME.test(host)) {
      throw new UrlError(`bad host name ${pyRepr(host)}`, { url });
    }
  }
  if (after && !after.startsWith(":")) {
    throw new UrlError(`unexpected ${pyRepr(after)} after the host`, { url });
  }
  const portText = after.slice(1);
  let port;
  if (!after || !portText) {
    if (!(scheme in DEFAULT_PORT)) {
      throw new UrlError(`${scheme}: needs a port (0 lets listen() pick a free one)`, { url });
    }
    port = DEFAULT_PORT[scheme];
  } else if (!DIGITS.test(portText)) {
    throw new UrlError(`port ${pyRepr(portText)} is not a number`, { url });
  } else {
    const digits = portText.replace(/^0+/, "") || "0";
    if (digits.length > 5 || Number(digits) > 65535) {
      throw new UrlError(`port ${digits} is out of range (0-65535)`, { url });
    }
    port = Number(digits);
  }
  if (scheme === "tcp" && path !== "" && path !== "/") {
    throw new UrlError(`tcp: takes no path, got ${pyRepr(path)}`, { url });
  }
  if (scheme === "ws") {
    path = path || "/";
  } else if (MQTT.includes(scheme)) {
    path = parseTopic(scheme, path, url);
  } else {
    path = "";
  }
  return new Address(scheme, { host: host.toLowerCase() || "127.0.0.1", port, path, params });
}

/**
 * The MQTT topic (or filter) of an mqtt URL's path: decoded, its first / dropped.
 * @param {string} scheme
 * @param {string} path
 * @param {string} url
 * @returns {string}
 * @throws {UrlError}
 */
function parseTopic(scheme, path, url) {
  const topic = decodePart(path.slice(1), url, "topic");
  if (!topic) {
    throw new UrlError(`${scheme}: needs a topic, as in ${scheme}://127.0.0.1:1883/sensors/kitchen`, { url });
  }
  if (topic.includes("\0")) {
    throw new UrlError("a topic cannot hold a NUL character", { url });
  }
  const levels = topic.split("/");
  levels.forEach((level, index) => {
    if ((level.includes("+") || level.includes("#")) && (level.length > 1 || (level === "#" && index < levels.length - 1))) {
      throw new UrlError(
        `bad topic ${pyRepr(topic)}: '+' and '#' stand alone in a level, and '#' only in the last`,
        { url },
      );
    }
  });
  return topic;
}

/**
 * @param {string} scheme
 * @param {string} rest
 * @param {string} url
 * @returns {string}
 */
function parsePath(scheme, rest, url) {
  if (rest.startsWith("//")) {
    const slash = rest.indexOf("/", 2);
    const authority = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    if (authority) {
      throw new UrlError(`${scheme}: names a local path; got a host ${pyRepr(authority)}`, {
        url,
      });
    }
    rest = slash < 0 ? "" : rest.slice(slash);
  }
  if (!rest) {
    throw new UrlError(`${scheme}: needs a path, as in ${scheme}:/tmp/readings`, { url });
  }
  return decodePart(rest, url, "path");
}

/**
 * @param {string} scheme
 * @param {string} query
 * @param {string} url
 * @returns {Record<string, any>}
 */
function parseParams(scheme, query, url) {
  /** @type {Record<string, any>} */
  const params = {};
  for (const item of query.split("&")) {
    if (!item) {
      continue;
    }
    const eq = item.indexOf("=");
    const key = decodePart(eq < 0 ? item : item.slice(0, eq), url, "option");
    if (!PARAMS[scheme].includes(key)) {
      const names = PARAMS[scheme].join(", ");
      throw new UrlError(`${scheme}: has no option ${pyRepr(key)} (known: ${names})`, { url });
    }
    if (Object.hasOwn(params, key)) {
      throw new UrlError(`option ${pyRepr(key)} is given twice`, { url });
    }
    if (eq < 0) {
      throw new UrlError(`option ${pyRepr(key)} needs a value (${key}=...)`, { url });
    }
    params[key] = typed(key, decodePart(item.slice(eq + 1), url, `option ${pyRepr(key)}`), url);
  }
  return params;
}

/**
 * @param {string} key
 * @param {string} value
 * @param {string} url
 * @returns {any}
 */
function typed(key, value, url) {
  if (WHOLE.includes(key)) {
    const number = DIGITS.test(value) ? whole(key, value, url) : 0;
    if (number < 1) {
      throw new UrlError(`${key} must be a whole number >= 1, got ${pyRepr(value)}`, { url });
    }
    return number;
  }
  if (FLAGS.includes(key)) {
    const lower = value.toLowerCase();
    if (!Object.hasOwn(BOOLEANS, lower)) {
      throw new UrlError(`${key} must be 1/0, true/false or yes/no, got ${pyRepr(value)}`, {
        url,
      });
    }
    return BOOLEANS[lower];
  }
  if (key === "qos") {
    if (!["0", "1", "2"].includes(value)) {
      throw new UrlError(`qos must be 0, 1 or 2, got ${pyRepr(value)}`, { url });
    }
    return Number(value);
  }
  if (key === "session") {
    if (!DIGITS.test(value)) {
      throw new UrlError(`session must be a whole number of seconds >= 0, got ${pyRepr(value)}`, { url });
    }
    return whole(key, value, url);
  }
  if (key === "protocol" && value !== "5" && value !== "3.1.1") {
    throw new UrlError(`protocol must be 5 or 3.1.1, got ${pyRepr(value)}`, { url });
  }
  if (key === "share" && (!value || /[/+#]/.test(value))) {
    throw new UrlError(`share must be a group name without '/', '+' or '#', got ${pyRepr(value)}`, { url });
  }
  if (key === "ws_path" && !value.startsWith("/")) {
    throw new UrlError(`ws_path must start with '/', got ${pyRepr(value)}`, { url });
  }
  if (key === "timeout" || key === "poll") {
    if (!NUMBER.test(value) || Number(value) <= 0) {
      throw new UrlError(`${key} must be a number of seconds > 0, got ${pyRepr(value)}`, { url });
    }
    if (!Number.isFinite(Number(value))) {
      throw new UrlError(`${key} is too large, got ${pyRepr(value)}`, { url });
    }
    return Number(value);
  }
  if (!value) {
    throw new UrlError(`option ${pyRepr(key)} is empty`, { url });
  }
  return value;
}
