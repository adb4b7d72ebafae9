// The ws:// transport, Node to Node, over real sockets on 127.0.0.1. Mirrors tests/unit/test_ws.py.
//
// Bad frames come from bare `ws` sockets (our channels cannot send them); the peers that get
// killed run in their own process (tests/fixtures/ws_node_peer.mjs); the peers that never answer
// pings are raw sockets that did the handshake by hand.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createConnection, createServer } from "node:net";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import WebSocket, { WebSocketServer } from "ws";

import { Frames, MessageQueue, SKIP, batches, connect as browserConnect } from "../src/browser.js";
import { connect, listen } from "../src/channels.js";
import {
  ConnectError,
  DecodeError,
  EncodeError,
  FrameTooLarge,
  TransportClosed,
  TransportError,
} from "../src/errors.js";
import { BACKLOG, checkRequest, connect as wsConnect, listen as wsListen } from "../src/transports/ws.js";
import { parse } from "../src/urls.js";
import { encodeMany } from "../src/wire.js";
import { acceptQueue, listenCalls, somaxconn } from "./support.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const PEER = join(ROOT, "tests", "fixtures", "ws_node_peer.mjs");

/** Takes `n` messages from `channel`. */
async function take(channel, n) {
  const got = [];
  while (got.length < n) got.push(await channel.receive());
  return got;
}

/** Fails unless `promise` settles within `ms`. */
function within(promise, ms = 10 * S) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `body` with a listener and a client, both closed afterwards. */
async function withPair(options, body, path = "/feed") {
  const listener = await listen(`ws://127.0.0.1:0${path}`, options.listener ?? {});
  try {
    const client = await connect(listener.url, options.client ?? {});
    try {
      return await body(listener, client);
    } finally {
      await client.close();
    }
  } finally {
    await listener.close();
  }
}

const portOf = (url) => Number(/:(\d+)\//.exec(url)[1]);

/** A bare `ws` client, open. */
async function bare(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  await once(ws, "open");
  return ws;
}

/**
 * A raw TCP server that completes the WebSocket handshake by hand, then gives each socket to
 * `opened` (which decides whether it ever reads again). Resolves to [server, url, sockets].
 */
async function handshakeServer(opened) {
  const sockets = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.once("data", (request) => {
      const key = /sec-websocket-key: *(\S+)/i.exec(request.toString())[1];
      const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      opened(socket);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return [server, `ws://127.0.0.1:${server.address().port}/feed`, sockets];
}

/** A node peer process (ws_node_peer.mjs); `lines()` iterates its JSON stdout. */
function peerProcess(mode, url, options = {}) {
  const child = spawn(process.execPath, [PEER, mode, url, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    child,
    async next() {
      const { value, done } = await within(lines.next());
      assert.ok(!done, "the peer process ended");
      return JSON.parse(value);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await once(child, "exit");
      }
    },
  };
}

describe("the handshake gate", () => {
  const cases = [
    ["/feed", null, null, null, null],
    ["/feed?token=s3cret", null, "s3cret", null, null],
    ["/feed?x=1&token=a%2Bb", null, "a+b", null, null],
    ["/feed?token=a+b", null, "a b", null, [403, "wrong token"]],
    ["/feed", null, "s3cret", null, [403, "missing token (add ?token=... to the URL)"]],
    ["/feed?token=nope", null, "s3cret", null, [403, "wrong token"]],
    ["/other?token=s3cret", null, "s3cret", null, [404, "no WebSocket at /other (this listener serves /feed)"]],
    ["/feed", "http://127.0.0.1:5000", null, null, null],
    ["/feed", "https://localhost", null, null, null],
    ["/feed", "http://[::1]:8080", null, null, null],
    ["/feed", "http://LOCALHOST:1", null, null, null],
    ["/feed", "http://evil.example", null, null, [403, "origin http://evil.example is not allowed"]],
    ["/feed", "http://localhost.evil.example", null, null, [403, "origin http://localhost.evil.example is not allowed"]],
    ["/feed", "null", null, null, [403, "origin null is not allowed"]],
    ["/feed", "file://localhost", null, null, [403, "origin file://localhost is not allowed"]],
    ["/feed", "http://app.example", null, ["http://app.example"], null],
    ["/feed", "http://127.0.0.1:5000", null, ["http://app.example"], [403, "origin http://127.0.0.1:5000 is not allowed"]],
    ["/feed", null, null, ["http://app.example"], null],
    ["/feed", "http://evil.example", "s3cret", null, [403, "origin http://evil.example is not allowed"]],
  ];
  for (const [target, origin, token, origins, expected] of cases) {
    test(`${target} origin=${origin} token=${token} origins=${origins}`, () => {
      assert.deepEqual(checkRequest(target, origin, { path: "/feed", token, origins }), expected);
    });
  }
});

describe("the browser-safe core", () => {
  test("Frames numbers messages and reports bad ones without losing the others", () => {
    const errors = [];
    const frames = new Frames(100, (error) => errors.push(error));
    assert.deepEqual(frames.take('{"a": 1}\n', false), { a: 1 });
    assert.equal(frames.take("{oops", false), SKIP);
    assert.equal(frames.take(new Uint8Array(3), true), SKIP);
    assert.equal(frames.take("\ufeff[2]", false)[0], 2);
    frames.tooLarge();
    assert.deepEqual(
      errors.map((e) => [e.constructor.name, e.line]),
      [
        ["DecodeError", 2],
        ["DecodeError", 3],
        ["FrameTooLarge", 5],
      ],
    );
    assert.match(errors[1].message, /binary frame of 3 bytes/);
    assert.match(errors[2].message, /^line 5: message is larger than the limit of 100 bytes/);
  });

  test("MessageQueue keeps order, hands errors out in turn, pauses and resumes", async () => {
    const calls = [];
    const queue = new MessageQueue({ high: 4, onHigh: () => calls.push("high"), onLow: () => calls.push("low") });
    for (let i = 0; i < 3; i++) queue.push(i);
    queue.pushError(new Error("bad"));
    queue.push(4);
    assert.deepEqual(calls, ["high"]); // at 4 waiting
    assert.equal(await queue.receive(), 0);
    assert.equal(await queue.receive(), 1);
    assert.equal(await queue.receive(), 2);
    assert.deepEqual(calls, ["high"]);
    await assert.rejects(queue.receive(), /bad/);
    assert.deepEqual(calls, ["high", "low"]); // back to a quarter
    assert.equal(await queue.receive(), 4);
    const waiting = queue.receive();
    queue.end(new TransportClosed("done"));
    await assert.rejects(waiting, TransportClosed);
  });
});

describe("ws:// Node to Node", () => {
  test("the listener's url has the real port and no token", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed?token=s3cret&max_line=5000");
    try {
      assert.ok(portOf(listener.url) > 0);
      assert.match(listener.url, /^ws:\/\/127\.0\.0\.1:\d+\/feed\?max_line=5000$/);
    } finally {
      await listener.close();
      await listener.close(); // idempotent
    }
  });

  test("10,000 messages in order, both ways", async () => {
    await withPair({}, async (listener, client) => {
      const sending = (async () => {
        for (let i = 0; i < 10_000; i++) await client.send({ seq: i });
      })();
      const got = await within(take(listener, 10_000));
      await sending;
      assert.deepEqual(
        got,
        Array.from({ length: 10_000 }, (_, i) => ({ seq: i })),
      );
      for (let i = 0; i < 10_000; i++) await listener.send({ back: i });
      const back = await within(take(client, 10_000));
      assert.deepEqual(back[9_999], { back: 9_999 });
      assert.ok(back.every((m, i) => m.back === i));
    });
  });

  test("a 10 MB message with maxLine raised", async () => {
    const big = { blob: "x".repeat(10 * 1024 * 1024), tail: "é" };
    const maxLine = 32 * 1024 * 1024;
    await withPair({ listener: { maxLine }, client: { maxLine } }, async (listener, client) => {
      await within(Promise.all([client.send(big), listener.receive().then((m) => assert.deepEqual(m, big))]));
      await within(Promise.all([listener.send(big), client.receive().then((m) => assert.deepEqual(m, big))]));
    });
  });

  test("the client closes: the accepted channel ends cleanly", async () => {
    await withPair({}, async (listener, client) => {
      const serverSide = await listener.accept();
      await client.send({ last: true });
      await client.close();
      await client.close();
      const got = [];
      for await (const message of serverSide) got.push(message);
      assert.deepEqual(got, [{ last: true }]);
      await assert.rejects(serverSide.receive(), TransportClosed);
      await assert.rejects(client.send("after"), TransportClosed);
      await assert.rejects(client.receive(), TransportClosed);
      await serverSide.close();
    });
  });

  test("the listener closes: the client ends cleanly", async () => {
    await withPair({}, async (listener, client) => {
      await listener.send({ bye: 1 });
      await listener.close();
      const got = [];
      for await (const message of client) got.push(message);
      assert.deepEqual(got, [{ bye: 1 }]);
      await assert.rejects(client.receive(), /code 1001/);
      await assert.rejects(listener.receive(), TransportClosed);
      await assert.rejects(listener.accept(), TransportClosed);
    });
  });

  test("accept() gives each connection its own duplex channel, and waits for one", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed");
    try {
      const a = await connect(listener.url);
      const b = await connect(listener.url);
      const first = await listener.accept();
      const second = await listener.accept();
      await a.send("from a");
      await b.send("from b");
      assert.deepEqual(new Set([await first.receive(), await second.receive()]), new Set(["from a", "from b"]));
      await first.send("to first");
      await second.send("to second");
      assert.deepEqual(new Set([await a.receive(), await b.receive()]), new Set(["to first", "to second"]));
      const waiting = listener.accept();
      await sleep(50);
      const c = await connect(listener.url);
      const third = await within(waiting);
      await c.send("hi");
      assert.equal(await third.receive(), "hi");
      for (const channel of [a, b, c, first, second, third]) await channel.close();
    } finally {
      await listener.close();
    }
  });

  test("receive() merges every connection and send() broadcasts to them", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed");
    try {
      const a = await connect(listener.url);
      const b = await connect(listener.url);
      await a.send({ from: "a" });
      await b.send({ from: "b" });
      const got = await within(take(listener, 2));
      assert.deepEqual(got.map((m) => m.from).sort(), ["a", "b"]);
      await listener.send({ to: "all" });
      assert.deepEqual(await a.receive(), { to: "all" });
      assert.deepEqual(await b.receive(), { to: "all" });
      const c = await connect(listener.url); // merged as it arrives, once merging
      await c.send({ from: "c" });
      assert.deepEqual(await within(listener.receive()), { from: "c" });
      for (const channel of [a, b, c]) await channel.close();
    } finally {
      await listener.close();
    }
  });

  test("bad frames are reported and their neighbours delivered", async () => {
    const errors = [];
    const listener = await listen("ws://127.0.0.1:0/feed", { onError: (e) => errors.push(e) });
    try {
      const raw = await bare(listener.url);
      raw.send('{"seq": 1}');
      raw.send('{"seq": oops}');
      raw.send(Buffer.from("\x00\x01binary"), { binary: true });
      raw.send('{"seq": 4}\n');
      raw.send('\ufeff{"seq": 5}');
      assert.deepEqual(await within(take(listener, 3)), [{ seq: 1 }, { seq: 4 }, { seq: 5 }]);
      assert.deepEqual(
        errors.map((e) => [e.constructor.name, e.line]),
        [
          ["DecodeError", 2],
          ["DecodeError", 3],
        ],
      );
      assert.equal(errors[0].column, 9);
      assert.match(errors[1].message, /binary frame of 8 bytes/);
      raw.close();
    } finally {
      await listener.close();
    }
  });

  test("a throwing onError takes its turn between the good messages", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed", {
      onError: (error) => {
        throw error;
      },
    });
    try {
      const raw = await bare(listener.url);
      for (const frame of ["1", "{", "3"]) raw.send(frame);
      assert.equal(await within(listener.receive()), 1);
      await assert.rejects(listener.receive(), (error) => error instanceof DecodeError && error.line === 2);
      assert.equal(await listener.receive(), 3);
      raw.close();
    } finally {
      await listener.close();
    }
  });

  test("an over-size message is reported, then the connection closes with 1009", async () => {
    const errors = [];
    const options = { maxLine: 1000, onError: (e) => errors.push(e) };
    await withPair({ listener: options }, async (listener, client) => {
      const serverSide = await listener.accept();
      await client.send({ seq: 1 });
      await client.send({ blob: "x".repeat(2000) });
      assert.deepEqual(await within(serverSide.receive()), { seq: 1 });
      await assert.rejects(within(serverSide.receive()), TransportClosed);
      assert.deepEqual(
        errors.map((e) => [e.constructor.name, e.line, e.limit]),
        [["FrameTooLarge", 2, 1000]],
      );
      assert.ok(errors[0] instanceof FrameTooLarge);
      assert.match(errors[0].message, /larger than the limit of 1000 bytes/);
      await assert.rejects(within(client.receive()), /1009/);
    });
  });

  test("a wrong or missing token is refused and nothing is delivered", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed", { token: "s3cret" });
    try {
      await assert.rejects(
        connect(listener.url, { token: "nope" }),
        (error) => error instanceof ConnectError && error.url === listener.url && /refused: wrong token \(HTTP 403\)/.test(error.message),
      );
      await assert.rejects(connect(listener.url), /missing token/);
      const client = await connect(`${listener.url}?token=s3cret`);
      await client.send("the first message");
      assert.equal(await within(listener.receive()), "the first message");
      await client.close();
    } finally {
      await listener.close();
    }
  });

  test("a bad origin is refused", async () => {
    let listener = await listen("ws://127.0.0.1:0/feed");
    try {
      await assert.rejects(
        connect(listener.url, { origin: "http://evil.example" }),
        /origin http:\/\/evil.example is not allowed \(HTTP 403\)/,
      );
      const ok = await connect(listener.url, { origin: "http://localhost:8000" });
      await ok.close();
    } finally {
      await listener.close();
    }
    listener = await listen("ws://127.0.0.1:0/feed", { origins: ["http://app.example"] });
    try {
      await assert.rejects(connect(listener.url, { origin: "http://localhost:8000" }), /403/);
      const ok = await connect(listener.url, { origin: "http://app.example" });
      await ok.close();
    } finally {
      await listener.close();
    }
  });

  test("a wrong path, nothing listening, a silent server", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed");
    const url = listener.url;
    try {
      await assert.rejects(
        connect(url.replace("/feed", "/other")),
        /no WebSocket at \/other \(this listener serves \/feed\) \(HTTP 404\)/,
      );
    } finally {
      await listener.close();
    }
    await assert.rejects(connect(url), /connection refused/);
    const accepted = [];
    const silent = createServer((socket) => accepted.push(socket)); // accepts, never answers
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    try {
      const started = Date.now();
      await assert.rejects(
        connect(`ws://127.0.0.1:${silent.address().port}/feed`, { timeout: 300 }),
        /no WebSocket handshake within 0.3 s/,
      );
      assert.ok(Date.now() - started < 3 * S);
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise((done) => silent.close(done));
    }
  });

  test("unknown and bad options", async () => {
    const address = parse("ws://127.0.0.1:1/feed");
    await assert.rejects(wsConnect(address, { colour: "blue" }), TypeError);
    await assert.rejects(wsListen(address, { colour: "blue" }), TypeError);
    await assert.rejects(wsConnect(address, { maxLine: 0 }), RangeError);
    const listener = await listen("ws://127.0.0.1:0/feed");
    try {
      await assert.rejects(listen(listener.url), (error) => error instanceof TransportError && /cannot listen/.test(error.message));
    } finally {
      await listener.close();
    }
  });

  test("a peer that does not answer pings is dropped by the listener", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed", { pingInterval: 200 });
    const socket = createConnection(portOf(listener.url), "127.0.0.1");
    try {
      await once(socket, "connect");
      const key = randomBytes(16).toString("base64");
      socket.write(
        `GET /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      const [answer] = await once(socket, "data");
      assert.match(answer.toString(), /^HTTP\/1.1 101/);
      socket.pause(); // never reads again: no pong
      const serverSide = await listener.accept();
      const started = Date.now();
      await assert.rejects(within(serverSide.receive()), /no answer to a ping/);
      assert.ok(Date.now() - started < 3 * S);
    } finally {
      socket.destroy();
      await listener.close();
    }
  });

  test("a server that does not answer pings is dropped by the client", async () => {
    const sockets = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.once("data", (request) => {
        const key = /sec-websocket-key: *(\S+)/i.exec(request.toString())[1];
        const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
        socket.pause();
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const client = await connect(`ws://127.0.0.1:${server.address().port}/feed`, { pingInterval: 200 });
      await assert.rejects(within(client.receive(), 3 * S), /no answer to a ping/);
      await client.close();
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((done) => server.close(done));
    }
  });

  test("a killed client leaves the listener with TransportClosed", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed");
    const peer = peerProcess("client", listener.url);
    try {
      const serverSide = await within(listener.accept());
      assert.deepEqual(await within(serverSide.receive()), { hello: peer.child.pid });
      await peer.kill();
      await assert.rejects(within(serverSide.receive()), TransportClosed);
      await serverSide.close();
    } finally {
      await peer.kill();
      await listener.close();
    }
  });

  test("a killed server ends the client, or with reconnect the client resumes", async () => {
    const first = peerProcess("server", "ws://127.0.0.1:0/feed");
    let second = null;
    try {
      const { url } = await first.next();
      const plain = await connect(url);
      await plain.send("zero"); // once answered, the server has registered `plain`
      assert.deepEqual(await within(plain.receive()), { echo: "zero" });
      const steady = await connect(url, { reconnect: true });
      await steady.send("one");
      assert.deepEqual(await within(steady.receive()), { echo: "one" });
      assert.deepEqual(await within(plain.receive()), { echo: "one" }); // echoed to everyone
      await first.kill();
      await assert.rejects(within(plain.receive()), TransportClosed);
      const receiving = steady.receive(); // waits through the reconnection
      await sleep(300);
      second = peerProcess("server", url);
      assert.deepEqual(await second.next(), { url });
      await within(steady.send("two")); // waits for the new connection
      assert.deepEqual(await within(receiving), { echo: "two" });
      await plain.close();
      // "one" went on the connection that broke without a close frame: never confirmed
      await assert.rejects(
        within(steady.close()),
        (e) =>
          e instanceof TransportClosed &&
          e.message === `${url}: close: 1 messages were sent on connections that broke before the peer confirmed them (nothing is sent twice); they may be lost`,
      );
    } finally {
      await first.kill();
      await second?.kill();
    }
  });

  test("reconnecting stops at close() and at a refusal", async () => {
    let listener = await listen("ws://127.0.0.1:0/feed");
    const url = listener.url;
    let client = await connect(url, { reconnect: true });
    await listener.close();
    const receiving = client.receive();
    await sleep(300);
    await client.close();
    await assert.rejects(within(receiving), TransportClosed);
    listener = await listen(url);
    client = await connect(url, { reconnect: true });
    await listener.close();
    listener = await listen(url, { token: "s3cret" });
    try {
      await assert.rejects(within(client.receive()), /wrong token|missing token/);
      await assert.rejects(client.send("anyone?"), /missing token/); // for good
      await client.close();
    } finally {
      await listener.close();
    }
  });

  test("send waits while the peer does not read, and an AbortSignal closes", async () => {
    await withPair({}, async (listener, client) => {
      const serverSide = await listener.accept();
      let sent = 0;
      const flood = (async () => {
        for (let i = 0; i < 20_000; i++) {
          await client.send("x".repeat(1000));
          sent++;
        }
      })();
      await sleep(500);
      const stuck = sent;
      assert.ok(stuck < 20_000, `sent ${stuck}`);
      await sleep(200);
      assert.equal(sent, stuck);
      let got = 0;
      while (got < 20_000) {
        await serverSide.receive();
        got++;
      }
      await flood;
      await serverSide.close();
    });
    const listener = await listen("ws://127.0.0.1:0/feed");
    const controller = new AbortController();
    const client = await connect(listener.url, { signal: controller.signal });
    controller.abort();
    await assert.rejects(within(client.receive()), TransportClosed);
    await listener.close();
  });
});

describe("the first dial with reconnect", () => {
  // Mirrors tests/unit/test_ws.py::test_reconnect_waits_for_a_listener_that_starts_a_moment_later.
  /** A ws:// URL on a port nothing listens on. */
  async function nowhere() {
    const probe = createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const { port } = probe.address();
    await new Promise((done) => probe.close(done));
    return `ws://127.0.0.1:${port}/feed`;
  }

  test("without reconnect, nothing listening: ConnectError at once", async () => {
    const url = await nowhere();
    const started = Date.now();
    await assert.rejects(connect(url, { timeout: 5000 }), (e) => e instanceof ConnectError && /connection refused/.test(e.message));
    assert.ok(Date.now() - started < 1 * S, `took ${Date.now() - started} ms`);
  });

  test("with reconnect, nothing listening: the last ConnectError once the timeout has run out", async () => {
    const url = await nowhere();
    const started = Date.now();
    await assert.rejects(connect(`${url}?reconnect=1&timeout=0.5`), (e) => e instanceof ConnectError && e.url.startsWith(url) && /connection refused/.test(e.message));
    const took = Date.now() - started;
    assert.ok(took >= 300 && took < 3 * S, `took ${took} ms`);
  });

  test("with reconnect, a listener started 300 ms later is waited for", async () => {
    const url = await nowhere();
    const later = sleep(300).then(() => listen(url));
    const started = Date.now();
    const client = await within(connect(url, { reconnect: true, timeout: 5000 }));
    const listener = await later;
    try {
      assert.ok(Date.now() - started >= 250, `connected after ${Date.now() - started} ms`);
      await client.send({ hello: "late listener" });
      assert.deepEqual(await within(listener.receive()), { hello: "late listener" });
      await client.close();
    } finally {
      await listener.close();
    }
  });

  test("with reconnect, a refusal (HTTP 403) is thrown at once, not retried", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed", { token: "s3cret" });
    try {
      const started = Date.now();
      await assert.rejects(
        connect(listener.url, { token: "nope", reconnect: true, timeout: 5000 }),
        (e) => e instanceof ConnectError && /refused: wrong token \(HTTP 403\)/.test(e.message),
      );
      assert.ok(Date.now() - started < 1 * S, `took ${Date.now() - started} ms`);
    } finally {
      await listener.close();
    }
  });

  test("with reconnect, an AbortSignal stops the waiting", async () => {
    const url = await nowhere();
    const started = Date.now();
    await assert.rejects(
      connect(url, { reconnect: true, timeout: 10_000, signal: AbortSignal.timeout(200) }),
      (e) => e instanceof TransportClosed && /aborted/.test(e.message),
    );
    assert.ok(Date.now() - started < 2 * S, `took ${Date.now() - started} ms`);
  });

  test("the browser's connect (over ws' WebSocket) waits too, and gives up at its timeout", async () => {
    const saved = globalThis.WebSocket;
    globalThis.WebSocket = WebSocket; // ws' class has the browser's API (onopen, onclose...)
    try {
      const url = await nowhere();
      let started = Date.now();
      await assert.rejects(browserConnect(url), ConnectError); // without reconnect: at once
      assert.ok(Date.now() - started < 1 * S, `took ${Date.now() - started} ms`);
      started = Date.now();
      await assert.rejects(browserConnect(url, { reconnect: true, timeout: 500 }), ConnectError);
      const took = Date.now() - started;
      assert.ok(took >= 300 && took < 3 * S, `took ${took} ms`);
      const later = sleep(300).then(() => listen(url));
      const client = await within(browserConnect(url, { reconnect: true, timeout: 5000 }));
      const listener = await later;
      try {
        await client.send({ hello: "from a page" });
        assert.deepEqual(await within(listener.receive()), { hello: "from a page" });
        await client.close();
      } finally {
        await listener.close();
      }
      const stopped = AbortSignal.timeout(200);
      await assert.rejects(browserConnect(url, { reconnect: true, timeout: 10_000, signal: stopped }), TransportClosed);
    } finally {
      globalThis.WebSocket = saved;
    }
  });
});

describe("backlog and a confirmed close", () => {
  const unconfirmed = (url, seconds, count) =>
    `${url}: close: the peer did not confirm within ${seconds} s that it read what we sent (${count} messages on this connection); it may be lost`;
  const reset = (url, count) =>
    `${url}: close: the connection was reset before the peer confirmed it read what we sent (${count} messages on this connection); it may be lost`;

  /** Closes a handshakeServer. */
  async function stop(server, sockets) {
    for (const socket of sockets) socket.destroy();
    await new Promise((done) => server.close(done));
  }

  test("backlog: the URL's, the option's, or 4096, given to listen()", async () => {
    assert.equal(BACKLOG, 4096);
    const calls = await listenCalls(async () => {
      for (const [url, options] of [
        ["ws://127.0.0.1:0/feed", {}],
        ["ws://127.0.0.1:0/feed?backlog=7", {}],
        ["ws://127.0.0.1:0/feed?backlog=7", { backlog: 3 }],
      ]) {
        await (await listen(url, options)).close();
      }
    });
    assert.deepEqual(
      calls.map((options) => options.backlog),
      [4096, 7, 3],
    );
    await assert.rejects(listen("ws://127.0.0.1:0/feed", { backlog: 0 }), RangeError);
    await assert.rejects(wsConnect(parse("ws://127.0.0.1:1/feed"), { backlog: 5 }), ConnectError); // ignored
  });

  test("the kernel holds backlog + 1 connections that are not accepted yet", async (t) => {
    const small = await listen("ws://127.0.0.1:0/feed?backlog=1");
    const big = await listen("ws://127.0.0.1:0/feed");
    try {
      const held = acceptQueue(portOf(small.url), 10);
      if (held === null) {
        t.skip("no ss here");
        return;
      }
      assert.equal(held.backlog, 1);
      assert.ok(held.queued <= 2 && held.connected <= 2, JSON.stringify(held));
      const all = acceptQueue(portOf(big.url), 10);
      assert.equal(all.backlog, Math.min(BACKLOG, somaxconn() ?? BACKLOG));
      assert.deepEqual([all.queued, all.connected], [10, 10]);
    } finally {
      await small.close();
      await big.close();
    }
  });

  test("close() against a server that never reads: TransportClosed after the timeout", async () => {
    const [server, url, sockets] = await handshakeServer((socket) => socket.pause());
    try {
      const client = await connect(url, { timeout: 500 });
      for (const i of [1, 2, 3]) await client.send({ i });
      const started = Date.now();
      const closing = client.close();
      const again = client.close(); // while it waits: the same outcome
      await assert.rejects(closing, (e) => e instanceof TransportClosed && e.message === unconfirmed(url, 0.5, 3));
      await assert.rejects(again, TransportClosed);
      const waited = Date.now() - started;
      assert.ok(waited >= 450 && waited < 3 * S, `waited ${waited} ms`);
      await client.close(); // after: resolves

      const quiet = await connect(url, { timeout: 500 });
      const before = Date.now();
      await within(quiet.close()); // nothing sent: nothing to confirm
      assert.ok(Date.now() - before < 2 * S);
    } finally {
      await stop(server, sockets);
    }
  });

  test("close() after a reset: TransportClosed that says so", async () => {
    const [server, url, sockets] = await handshakeServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    try {
      const client = await connect(url);
      await client.send("hi");
      await sleep(100); // the reset comes before close()
      await assert.rejects(within(client.close()), (e) => e instanceof TransportClosed && e.message === reset(url, 1));
      const other = await connect(url);
      await other.send("hi");
      await assert.rejects(within(other.receive()), TransportClosed); // reported here...
      await within(other.close()); // ...so not again
    } finally {
      await stop(server, sockets);
    }
  });

  test("with reconnect, close() reports what was sent on a connection dropped without a close frame", async () => {
    const [server, url, sockets] = await handshakeServer(() => {});
    let listener = null;
    try {
      const client = await connect(url, { reconnect: true, timeout: 2000 });
      await client.send("a");
      await client.send("b");
      await sleep(100);
      await stop(server, sockets); // the TCP connection ends, no close frame: nothing confirmed
      await sleep(300); // the client sees it (what is sent before that is lost too)
      listener = await listen(url); // a new server on the same port
      await within(client.send("c")); // waits for the new connection, which confirms it
      assert.equal(await within(listener.receive()), "c");
      const broken = `${url}: close: 2 messages were sent on connections that broke before the peer confirmed them (nothing is sent twice); they may be lost`;
      await assert.rejects(within(client.close()), (e) => e instanceof TransportClosed && e.message === broken);
      await client.close(); // after: resolves
    } finally {
      await listener?.close();
    }
  });

  test("with reconnect, a server that closed cleanly confirmed what it got: close() resolves", async () => {
    let listener = await listen("ws://127.0.0.1:0/feed");
    const url = listener.url;
    try {
      const client = await connect(url, { reconnect: true, timeout: 2000 });
      await client.send("a");
      assert.equal(await within(listener.receive()), "a");
      await listener.close(); // its close frame (1001) confirms what it read
      listener = await listen(url);
      await within(client.send("b")); // on the new connection
      assert.equal(await within(listener.receive()), "b");
      await within(client.close());
    } finally {
      await listener.close();
    }
  });

  test("1,000 clients x 20 messages at once: every message arrives, or close() says so", { timeout: 60 * S }, async () => {
    const CLIENTS = 1000;
    const MESSAGES = 20;
    const listener = await listen("ws://127.0.0.1:0/feed");
    try {
      const got = Array.from({ length: CLIENTS }, () => []);
      let count = 0;
      const reading = (async () => {
        for await (const { c, i } of listener) {
          got[c].push(i);
          count++;
        }
      })();
      const failures = new Map();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          try {
            const client = await connect(listener.url);
            for (let i = 0; i < MESSAGES; i++) await client.send({ c, i });
            await client.close();
          } catch (error) {
            failures.set(c, error);
          }
        }),
      );
      const expected = (CLIENTS - failures.size) * MESSAGES;
      for (let waited = 0; count < expected && waited < 10 * S; waited += 10) await sleep(10);
      await listener.close();
      await reading;
      const every = Array.from({ length: MESSAGES }, (_, i) => i);
      for (let c = 0; c < CLIENTS; c++) {
        if (failures.has(c)) {
          assert.ok(failures.get(c) instanceof TransportError, String(failures.get(c)));
          assert.deepEqual(got[c], every.slice(0, got[c].length)); // in order, some lost
        } else {
          assert.deepEqual(got[c], every, `client ${c}`);
        }
      }
      if ((somaxconn() ?? 0) >= CLIENTS) {
        assert.ok(failures.size < CLIENTS / 10, `${failures.size} clients failed`);
      }
    } finally {
      await listener.close();
    }
  });
});

describe("several messages per frame: sendMany, and frames of NDJSON lines", () => {
  // Mirrors the same section of tests/unit/test_ws.py, with the same frames and line numbers.
  const MANY = Array.from({ length: 1000 }, (_, i) => ({ seq: i, text: "é€😀" }));
  const FRAMES = ["1", '2\n{"oops": }\n\n \t\r\n3\r\n{"four": 4}', "5\n", "[6,\n7]", "\ufeff8\n9\n"];
  const FRAME_VALUES = [1, 2, 3, { four: 4 }, 5, 8, 9];
  const FRAME_ERRORS = [
    [3, 10, '{"oops": }'],
    [9, 4, "[6,"],
    [10, 2, "7]"],
  ];
  const where = (errors) =>
    errors.map((e) => {
      assert.equal(e.constructor, DecodeError);
      return [e.line, e.column, e.excerpt];
    });

  /**
   * A bare `ws` server: sends `send` to each client, then records every frame it receives.
   * Resolves to {url, frames, ended (a promise: the client closed), close()}.
   */
  async function frameRecorder(send = []) {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
    await once(server, "listening");
    const frames = [];
    let ended;
    const endedPromise = new Promise((resolve) => (ended = resolve));
    server.on("connection", (ws) => {
      for (const frame of send) ws.send(frame);
      ws.on("message", (data, isBinary) => frames.push(isBinary ? data : data.toString()));
      ws.on("close", () => ended());
    });
    return {
      url: `ws://127.0.0.1:${server.address().port}/`,
      frames,
      ended: endedPromise,
      close: () => new Promise((resolve) => server.close(resolve)),
    };
  }

  test("batches() cuts lines into frames only beyond the limit, at line ends, in bytes", () => {
    const texts = (values, limit) => batches(values, limit);
    assert.deepEqual(texts([], 10), []);
    assert.deepEqual(texts(new Set(), 10), []);
    assert.deepEqual(texts([1, 22, 333, 4444], 100), [["1\n22\n333\n4444\n", 4]]);
    assert.deepEqual(texts(new Set([1, 22]), 100), [["1\n22\n", 2]]);
    assert.deepEqual(texts([1, 22, 333, 4444], 14), [["1\n22\n333\n4444\n", 4]]);
    assert.deepEqual(texts([1, 22, 333, 4444], 7), [
      ["1\n22", 2],
      ["333", 1],
      ["4444", 1],
    ]);
    assert.deepEqual(texts([1, 22, 333, 4444], 3), [
      ["1", 1],
      ["22", 1],
      ["333", 1],
      ["4444", 1], // alone, over the limit
    ]);
    assert.deepEqual(texts(["é", "éé"], 6), [
      ['"é"', 1],
      ['"éé"', 1],
    ]); // bytes, not characters
    assert.throws(() => batches([1, 2n], 100), EncodeError);
  });

  test("Frames splits a frame of several lines into the queue, numbering lines across frames", async () => {
    const errors = [];
    const frames = new Frames(1000, (error) => errors.push(error));
    const queue = new MessageQueue();
    for (const frame of FRAMES) {
      const value = frames.take(frame, false, queue);
      if (value !== SKIP) queue.push(value);
    }
    assert.equal(queue.length, 7);
    assert.deepEqual(await take(queue, 7), FRAME_VALUES);
    assert.deepEqual(where(errors), FRAME_ERRORS);
    assert.equal(frames.count, 12);
    const strict = new Frames(1000, (error) => {
      throw error;
    });
    assert.equal(strict.take("1\n{\n3", false, queue), SKIP);
    assert.equal(await queue.receive(), 1);
    await assert.rejects(queue.receive(), (error) => error instanceof DecodeError && error.line === 2);
    assert.equal(await queue.receive(), 3);
  });

  test("sendMany is one frame of NDJSON lines on the wire, both from a client and a listener", async () => {
    const recorder = await frameRecorder();
    try {
      const client = await connect(recorder.url);
      await client.sendMany(MANY);
      await client.sendMany([]); // nothing at all
      await client.sendMany(new Set([{ last: true }]));
      await client.close();
      await within(recorder.ended);
      assert.deepEqual(recorder.frames, [encodeMany(MANY), '{"last":true}\n']);
    } finally {
      await recorder.close();
    }
    const listener = await listen("ws://127.0.0.1:0/feed");
    try {
      const raw = await bare(listener.url);
      const got = [];
      raw.on("message", (data) => got.push(data.toString()));
      raw.send('"hello"');
      assert.equal(await within(listener.receive()), "hello"); // merged: it gets the broadcasts
      await listener.sendMany(MANY);
      await listener.sendMany([]);
      await listener.send({ one: 1 });
      for (let i = 0; i < 100 && got.length < 2; i++) await sleep(20);
      assert.deepEqual(got, [encodeMany(MANY), '{"one":1}']);
      raw.close();
    } finally {
      await listener.close();
    }
  });

  test("sendMany arrives as its messages, in order, both ways", async () => {
    await withPair({}, async (listener, client) => {
      for (let i = 0; i < 1000; i += 100) await client.sendMany(MANY.slice(i, i + 100));
      assert.deepEqual(await within(take(listener, 1000)), MANY);
      await listener.sendMany(MANY);
      assert.deepEqual(await within(take(client, 1000)), MANY);
    });
  });

  test("sendMany beyond maxLine goes in several frames, each within it", async () => {
    const values = Array.from({ length: 100 }, (_, i) => ({ seq: i })); // 1,190 bytes of lines
    const recorder = await frameRecorder();
    try {
      const client = await connect(recorder.url, { maxLine: 200 });
      await client.sendMany(values);
      await client.close();
      await within(recorder.ended);
      assert.ok(recorder.frames.length >= 6 && recorder.frames.length <= 8, `${recorder.frames.length} frames`);
      assert.ok(recorder.frames.every((frame) => Buffer.byteLength(frame) <= 200));
      assert.equal(recorder.frames.join("\n") + "\n", encodeMany(values));
    } finally {
      await recorder.close();
    }
    await withPair({ listener: { maxLine: 200 }, client: { maxLine: 200 } }, async (listener, client) => {
      const serverSide = await listener.accept();
      await client.sendMany(values);
      assert.deepEqual(await within(take(serverSide, 100)), values);
      await serverSide.sendMany(values);
      assert.deepEqual(await within(take(client, 100)), values);
      await serverSide.close();
    });
  });

  test("frames of several lines are split by every receiver", async () => {
    const errors = [];
    const onError = (e) => errors.push(e);
    const listener = await listen("ws://127.0.0.1:0/feed", { onError });
    try {
      let raw = await bare(listener.url); // accepted
      for (const frame of FRAMES) raw.send(frame);
      const serverSide = await listener.accept();
      assert.deepEqual(await within(take(serverSide, 7)), FRAME_VALUES);
      assert.deepEqual(where(errors), FRAME_ERRORS);
      raw.close();
      await serverSide.close();
      errors.length = 0;
      raw = await bare(listener.url); // merged
      for (const frame of FRAMES) raw.send(frame);
      assert.deepEqual(await within(take(listener, 7)), FRAME_VALUES);
      assert.deepEqual(where(errors), FRAME_ERRORS);
      raw.close();
    } finally {
      await listener.close();
    }
    errors.length = 0;
    const recorder = await frameRecorder(FRAMES); // a client
    try {
      const client = await connect(recorder.url, { onError });
      assert.deepEqual(await within(take(client, 7)), FRAME_VALUES);
      assert.deepEqual(where(errors), FRAME_ERRORS);
      await client.close();
    } finally {
      await recorder.close();
    }
  });

  test("a throwing onError takes its turn inside a frame", async () => {
    const listener = await listen("ws://127.0.0.1:0/feed", {
      onError: (error) => {
        throw error;
      },
    });
    try {
      const raw = await bare(listener.url);
      raw.send("1\n{\n3");
      raw.send("4");
      assert.equal(await within(listener.receive()), 1);
      await assert.rejects(listener.receive(), (error) => error instanceof DecodeError && error.line === 2);
      assert.deepEqual(await within(take(listener, 2)), [3, 4]);
      raw.send("5\n[\n7");
      const iterator = listener[Symbol.asyncIterator](); // the same, by iteration
      assert.deepEqual(await within(iterator.next()), { value: 5, done: false });
      await assert.rejects(iterator.next(), (error) => error instanceof DecodeError && error.line === 6);
      assert.deepEqual(await iterator.next(), { value: 7, done: false });
      raw.close();
    } finally {
      await listener.close();
    }
  });

  test("the size limit applies to the whole frame", async () => {
    const errors = [];
    await withPair({ listener: { maxLine: 1000, onError: (e) => errors.push(e) } }, async (listener, client) => {
      const serverSide = await listener.accept();
      await client.send("first");
      await client.sendMany(Array.from({ length: 100 }, (_, i) => ({ seq: i }))); // 1,190 bytes
      assert.equal(await within(serverSide.receive()), "first");
      await assert.rejects(within(serverSide.receive()), TransportClosed);
      assert.deepEqual(
        errors.map((e) => [e.constructor.name, e.line]),
        [["FrameTooLarge", 2]],
      );
      await assert.rejects(within(client.receive()), /1009/);
    });
  });
});
