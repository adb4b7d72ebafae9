/**
 * bothways: JSON between Python and JavaScript, both ways.
 *
 * The browser-safe core: the wire codec (`encode`, `decode`, `Decoder` and its events) and the
 * error tree. Nothing here imports a `node:*` module; node-only transports live in their own
 * subpaths.
 *
 * @module bothways
 */

export * from "./errors.js";
export * from "./wire.js";
