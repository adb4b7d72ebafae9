/**
 * `connect(url)` and `listen(url)`: one table from URL scheme to transport. Mirrors
 * `src/bothways/channels.py`.
 *
 *     const inbox = await listen("tcp://127.0.0.1:9000");   // or ws://, fifo:, file:
 *     for await (const reading of inbox) { ... }
 *
 *     const out = await connect("tcp://127.0.0.1:9000");
 *     await out.send({ sensor: "kitchen", celsius: 21.5 });
 *
 * `connect` is the sending (client) side and `listen` the receiving (server) side; on tcp and ws
 * both are duplex. One URL serves both ends: each takes the query options that apply to it.
 * Options given in code override the URL's (`token`, `maxLine`, `onError`,
 * `reconnect`, `timeout` in milliseconds, `signal`, and each transport's own).
 *
 * @module bothways/channels
 */

import { Address, parse } from "./urls.js";

/**
 * The one table from scheme to the module that implements it (imported on first use). Each
 * module exports `connect(address, options)` and `listen(address, options)`.
 * @type {Readonly<Record<string, string>>}
 */
export const TRANSPORTS = Object.freeze({
  stdio: "./transports/stdio.js",
  tcp: "./transports/tcp.js",
  ws: "./transports/ws.js",
  fifo: "./transports/fifo.js",
  file: "./transports/file.js",
  mqtt: "./transports/mqtt.js",
  mqtts: "./transports/mqtt.js",
  "mqtt+ws": "./transports/mqtt.js",
  "mqtt+wss": "./transports/mqtt.js",
});

/**
 * What `connect` takes in code: the options of every transport's sending side, by their
 * JavaScript names (each transport refuses, with a TypeError, those it does not know).
 * @typedef {import("./transports/tcp.js").TcpOptions
 *   & import("./transports/ws.js").ConnectOptions
 *   & import("./transports/fifo.js").FifoConnectOptions
 *   & import("./transports/file.js").FileConnectOptions} ConnectOptions
 */

/**
 * What `listen` takes in code: the options of every transport's receiving side, by their
 * JavaScript names (each transport refuses, with a TypeError, those it does not know).
 * @typedef {import("./transports/tcp.js").TcpOptions
 *   & import("./transports/ws.js").ListenOptions
 *   & import("./transports/fifo.js").FifoListenOptions
 *   & import("./transports/file.js").FileListenOptions} ListenOptions
 */

/**
 * @param {string | Address} url
 * @param {"connect" | "listen"} side
 * @param {Record<string, any>} options
 * @returns {Promise<[any, Address, Record<string, any>]>}
 */
async function resolve(url, side, options) {
  const address = url instanceof Address ? url : parse(url);
  const module = await import(TRANSPORTS[address.scheme]);
  return [module, address, { ...address.options(side), ...options }];
}

/**
 * Opens the sending side of `url` (a client, a FIFO's or a file's writer).
 * @param {string | Address} url
 * @param {ConnectOptions} [options]
 * @returns {Promise<import("./transports/base.js").Channel>}
 * @throws {import("./errors.js").UrlError} the URL cannot be used.
 * @throws {import("./errors.js").ConnectError} the other side cannot be reached.
 */
export async function connect(url, options = {}) {
  const [module, address, merged] = await resolve(url, "connect", options);
  return module.connect(address, merged);
}

/**
 * Opens the receiving side of `url` (a server, a FIFO's or a file's reader).
 * @param {string | Address} url
 * @param {ListenOptions} [options]
 * @returns {Promise<import("./transports/base.js").Listener>}
 * @throws {import("./errors.js").UrlError} the URL cannot be used.
 */
export async function listen(url, options = {}) {
  const [module, address, merged] = await resolve(url, "listen", options);
  return module.listen(address, merged);
}
