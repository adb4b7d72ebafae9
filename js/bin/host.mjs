#!/usr/bin/env node
/**
 * Serve a JavaScript module's functions to the process that spawned us:
 * `node js/bin/host.mjs PATH_TO_MODULE.js`. The mirror of `python -m bothways.host MODULE`.
 *
 * The parent (Python's `bothways.node.require("./stats.js")`, or any Peer) calls the module's
 * exported functions by name; `$/functions` lists them. Rules:
 * - The module is a path, resolved against the working directory (ESM or CommonJS). Its exported
 *   functions and classes are served (not names starting with "_"), plus those of its default
 *   export when that is an object (bound to it); a default export that is a function is served
 *   as "default". Named exports win over the default object's members.
 * - Calling a class's name makes an instance (`new`): Python's `m.Parser(opts)` gets a handle on
 *   it. Arguments and results are anything spec/PROTOCOL.md section 10 carries: functions
 *   (callbacks), class instances, Maps and generators cross as handles, bytes and typed arrays
 *   as such.
 * - The calls travel on the channel socket the parent made (`BOTHWAYS_CHANNEL_FD`, what
 *   `spawn(argv, {channelFd: true})` and Python's `node.require` do) when there is one: stdout
 *   stays the module's own, so `console.log`, `process.stdout.write` and even
 *   `fs.writeSync(1, ...)` go to the parent, which shows them, and cannot corrupt the protocol.
 * - Without one, the protocol keeps the real stdout. `console.log`/`info`/`debug` (every console
 *   method) and `process.stdout` are pointed at stderr before the module is loaded, so user
 *   logging goes to the terminal (the parent forwards stderr) instead of corrupting the messages.
 * - The parent's first call is `$/hello` (the handshake): the answer gives our protocol and package
 *   versions and the list of functions; a parent that speaks another protocol is refused with a
 *   ProtocolMismatch naming both versions. The answer says that we read binary frames; when the
 *   parent's hello says so too, bytes and arrays go to it in frames from the next message on.
 * - Errors travel back with their name and stack (a RemoteError on the other side).
 * - The host ends when the channel closes (the parent closed the handle or died), even if the
 *   module left timers running.
 * - Exit codes: 0 at the end of stdin, 1 when the module cannot be loaded (the error is on
 *   stderr), 2 for bad usage.
 */

import { Console } from "node:console";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { CALL_MAX_LINE } from "../src/objects.js";
import { Peer } from "../src/peer.js";
import { HELLO_METHOD, hello, helloRefusal, speaksBinary } from "../src/rpc.js";
import { StdioChannel, parentChannelFd } from "../src/transports/stdio.js";
import { VERSION } from "../src/version.js";

/** The parent's `$/hello` names another protocol (its RemoteError carries the message). */
class ProtocolMismatch extends Error {
  name = "ProtocolMismatch";
}

/**
 * Keeps the real stdout for the protocol; from now on everything else writing "to stdout" goes
 * to stderr.
 * @returns {import("node:stream").Writable} the real stdout.
 */
function takeStdout() {
  const protocol = process.stdout;
  const toStderr = new Console({ stdout: process.stderr, stderr: process.stderr });
  for (const key of Object.keys(Console.prototype)) {
    const method = /** @type {any} */ (toStderr)[key];
    if (typeof method === "function") {
      /** @type {any} */ (console)[key] = method.bind(toStderr);
    }
  }
  Object.defineProperty(process, "stdout", {
    configurable: true,
    enumerable: true,
    get: () => process.stderr,
  });
  return protocol;
}

/**
 * @param {unknown} value
 * @returns {value is Function} a class (`class X {}`), called with `new`.
 */
function isClass(value) {
  return typeof value === "function" && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

/**
 * What serves an exported function or class: the function itself (bound to `owner` when it is
 * a member of the default export), or for a class a function that makes an instance.
 * @param {Function} value
 * @param {object} [owner]
 * @returns {Function}
 */
function served(value, owner = undefined) {
  if (isClass(value)) {
    const cls = /** @type {new (...args: unknown[]) => unknown} */ (value);
    return (/** @type {unknown[]} */ ...args) => new cls(...args);
  }
  return owner === undefined ? value : value.bind(owner);
}

/**
 * The module's functions and classes by name (see the rules above).
 * @param {Record<string, unknown>} namespace
 * @returns {Map<string, Function>}
 */
function exportedFunctions(namespace) {
  /** @type {Map<string, Function>} */
  const functions = new Map();
  const fallback = namespace.default;
  if (typeof fallback === "object" && fallback !== null) {
    for (const [key, value] of Object.entries(fallback)) {
      if (!key.startsWith("_") && typeof value === "function") {
        functions.set(key, served(value, fallback));
      }
    }
  } else if (typeof fallback === "function") {
    functions.set("default", served(fallback));
  }
  for (const [key, value] of Object.entries(namespace)) {
    if (key !== "default" && !key.startsWith("_") && typeof value === "function") {
      functions.set(key, served(value));
    }
  }
  return functions;
}

/**
 * Exposes the functions of the module at `path` on `channel` until the other side closes it.
 * @param {string} path
 * @param {import("../src/transports/base.js").Channel} channel
 * @returns {Promise<void>}
 */
async function serve(path, channel) {
  const namespace = await import(pathToFileURL(resolve(process.cwd(), path)).href);
  const functions = exportedFunctions(namespace);
  const peer = new Peer(channel);
  for (const [name, fn] of functions) {
    peer.expose(fn, { name });
  }
  const names = [...functions.keys()].sort();
  peer.expose(() => names, { name: "$/functions" });
  const ours = hello(VERSION, "javascript");
  peer.expose(
    (/** @type {unknown} */ theirs) => {
      const refusal = helloRefusal(ours, theirs);
      if (refusal !== null) throw new ProtocolMismatch(refusal);
      // Frames from the message after this answer on: the answer is made (and written, with the
      // other answers of its chunk) when this returns, before the microtask sets the flag.
      const binary = speaksBinary(theirs);
      queueMicrotask(() => {
        peer.binary = binary;
      });
      return { ...ours, functions: names };
    },
    { name: HELLO_METHOD },
  );
  await peer.run(); // ends when the channel closes
  await peer.close();
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1) {
    process.stderr.write("usage: node host.mjs PATH_TO_MODULE.js\n");
    return 2;
  }
  // With a channel socket, stdout stays the module's; else the protocol takes it.
  const options = { maxLine: CALL_MAX_LINE, binary: true }; // (our hello says we read frames)
  const channel =
    parentChannelFd() !== null ? new StdioChannel(options) : new StdioChannel({ ...options, stdout: takeStdout() });
  try {
    await serve(args[0], channel);
  } catch (error) {
    process.stderr.write(`host.mjs: cannot serve ${args[0]}: ${error instanceof Error ? error.stack : error}\n`);
    return 1;
  }
  return 0;
}

process.exit(await main());
