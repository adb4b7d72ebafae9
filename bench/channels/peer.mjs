// The Node side of bench/channels.py, with the same modes as peer.py:
//   recv URL N | send URL N | rawrecv URL N | rawsend URL N | encode N | decode N
// rawrecv/rawsend move the same bytes below the library (ws: a bare `ws` server or client with
// JSON.parse / JSON.stringify per frame). Timings start at the first message received.
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readSync, writeFileSync, writeSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";


import { connect, listen } from "../../js/src/channels.js";
import { parse } from "../../js/src/urls.js";
import { encode } from "../../js/src/wire.js";
import { make } from "../stdio/messages.mjs";

// ws is a dependency of js/: resolve it from there.
const { WebSocket, WebSocketServer } = createRequire(new URL("../../js/package.json", import.meta.url))("ws");

const BATCH = 1000;

/** @param {unknown} value */
function say(value) {
  process.stdout.write(JSON.stringify(value) + "\n");
}

/**
 * @param {number | null} start
 * @param {number} count
 */
function done(start, count) {
  say({ seconds: (performance.now() - (start ?? 0)) / 1000, messages: count });
}

/** @param {string} url @param {number} count */
async function recv(url, count) {
  const listener = await listen(url);
  say({ listening: listener.url });
  let n = 0;
  let start = null;
  for await (const _ of listener) {
    start ??= performance.now();
    if (++n === count) {
      break;
    }
  }
  done(start, n);
  await listener.close();
}

/** @param {string} url @param {number} count */
async function send(url, count) {
  const values = make("small", count);
  const channel = await connect(url);
  for (let i = 0; i < count; i += BATCH) {
    await channel.sendMany(values.slice(i, i + BATCH));
  }
  await channel.close();
}

/** @param {number} count */
function countNewlines(count) {
  let n = 0;
  /** @type {number | null} */
  let start = null;
  return {
    /** @param {Uint8Array} chunk */
    take(chunk) {
      start ??= performance.now();
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
        n++;
      }
      return n >= count;
    },
    finish() {
      done(start, n);
    },
  };
}

/** @param {string} url @param {number} count */
async function rawrecv(url, count) {
  const address = parse(url);
  if (address.scheme === "ws") {
    const server = new WebSocketServer({ host: address.host ?? "127.0.0.1", port: 0, perMessageDeflate: false });
    await new Promise((resolve) => server.once("listening", resolve));
    say({ listening: address.withPort(/** @type {any} */ (server.address()).port).url });
    let n = 0;
    /** @type {number | null} */
    let start = null;
    await new Promise((resolve) => {
      server.on("connection", (ws) => {
        ws.on("message", (data) => {
          start ??= performance.now();
          JSON.parse(data.toString());
          if (++n === count) {
            resolve(undefined);
          }
        });
      });
    });
    done(start, n);
    server.close();
    return;
  }
  const counter = countNewlines(count);
  if (address.scheme === "tcp") {
    await new Promise((resolve) => {
      const server = net.createServer((socket) => {
        socket.on("data", (chunk) => {
          if (counter.take(chunk)) {
            server.close();
            socket.destroy();
            resolve(undefined);
          }
        });
      });
      server.listen(0, address.host ?? "127.0.0.1", () => {
        say({ listening: address.withPort(/** @type {any} */ (server.address()).port).url });
      });
    });
    counter.finish();
    return;
  }
  if (address.scheme === "fifo") {
    execFileSync("mkfifo", ["-m", "600", "--", address.path]);
  } else {
    writeFileSync(address.path, "", { flag: "a" });
  }
  say({ listening: url });
  // A blocking read is fine here: this process does nothing else.
  const fd = openSync(address.path, "r");
  const buffer = Buffer.alloc(65536);
  for (;;) {
    const got = readSync(fd, buffer, 0, buffer.length, null);
    if (got === 0) {
      await sleep(1);
      continue;
    }
    if (counter.take(buffer.subarray(0, got))) {
      break;
    }
  }
  closeSync(fd);
  counter.finish();
}

/** @param {string} url @param {number} count */
async function rawsend(url, count) {
  const address = parse(url);
  if (address.scheme === "ws") {
    const ws = new WebSocket(`ws://${address.host}:${address.port}${address.path}`, { perMessageDeflate: false });
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const values = make("small", count);
    for (let i = 0; i < values.length; i++) {
      if (i % 1000 === 999) {
        // wait for the socket now and then, as a real producer must (else it only queues)
        await new Promise((resolve, reject) =>
          ws.send(JSON.stringify(values[i]), (error) => (error ? reject(error) : resolve(undefined))),
        );
      } else {
        ws.send(JSON.stringify(values[i]));
      }
    }
    await new Promise((resolve) => ws.send("0", () => resolve(undefined))); // the last one is out
    ws.close();
    await new Promise((resolve) => ws.once("close", resolve));
    return;
  }
  const data = Buffer.from(make("small", count).map((v) => encode(v)).join(""));
  if (address.scheme === "tcp") {
    const socket = net.connect(/** @type {number} */ (address.port), address.host ?? undefined);
    await new Promise((resolve) => socket.once("connect", resolve));
    await new Promise((resolve) => socket.end(data, () => resolve(undefined)));
    return;
  }
  const fd = openSync(address.path, "a");
  for (let i = 0; i < data.length; i += 65536) {
    writeSync(fd, data, i, Math.min(65536, data.length - i));
  }
  closeSync(fd);
}

/** @param {string} mode @param {number} count */
function codec(mode, count) {
  const values = make("small", count);
  if (mode === "encode") {
    const start = performance.now();
    for (const v of values) {
      JSON.stringify(v);
    }
    done(start, count);
  } else {
    const lines = values.map((v) => JSON.stringify(v));
    const start = performance.now();
    for (const line of lines) {
      JSON.parse(line);
    }
    done(start, count);
  }
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === "encode" || mode === "decode") {
  codec(mode, Number(rest[0]));
} else {
  const modes = { recv, send, rawrecv, rawsend };
  await /** @type {any} */ (modes)[mode](rest[0], Number(rest[1]));
}
process.exit(0);
