/**
 * bothways: JSON between Python and JavaScript, both ways.
 *
 * The browser-safe core: the wire codec (`encode`, `decode`, `Decoder` and its events) and the
 * error tree. Nothing here imports a `node:*` module; node-only transports live in their own
 * subpaths. The JSON-RPC endpoint is a subpath too, `bothways/rpc` (browser-safe as well), as
 * Python keeps it in `bothways.rpc` without re-exporting it from the package. So is
 * `bothways/objects` (Python's `bothways.objects`: `ref`, `release`, `value`, `kwargs`, `NDArray`,
 * `RemoteObject`, spec/PROTOCOL.md section 10); its `HandleError` is in the error tree here.
 * `connect` and `listen` (from `bothways/channels`) load their transport only when called.
 *
 * @module bothways
 */

export * from "./errors.js";
export * from "./wire.js";
export { connect, listen } from "./channels.js";
