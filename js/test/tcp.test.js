// tcp:// between Node and Node: the sans-I/O handshake, channels and listeners, errors, limits,
// and real peers killed with SIGKILL (tests/fixtures/tcp_node_peer.mjs). Mirrors
// tests/unit/test_tcp.py; tests/cross/test_tcp_node.py pairs Python with Node.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import net from "node:net";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { connect as openChannel, listen as openListener } from "../src/channels.js";
import { ConnectError, DecodeError, FrameTooLarge, TransportClosed, TransportError } from "../src/errors.js";
import { Router, firstRetry, raiseError } from "../src/transports/base.js";
import {
  BACKLOG,
  ClientHandshake,
  HELLO_LIMIT,
  Refused,
  ServerGate,
  WELCOME,
  backoff,
  connect as openTcp,
} from "../src/transports/tcp.js";
import { parse } from "../src/urls.js";
import { decode, encode } from "../src/wire.js";
import { acceptQueue, listenCalls, somaxconn } from "./support.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const PEER = join(ROOT, "tests", "fixtures", "tcp_node_peer.mjs");
const T = { timeout: 20 * S };

// What a test opens is closed after it, whatever happened: a test that fails with a server,
// socket, channel or child still open must not keep the process (and CI) from exiting.
const leftovers = new Set();

/**
 * Marks `resource` to be closed after the current test; returns it.
 * @template R
 * @param {R} resource a net.Server or net.Socket, a channel or listener, or a `peer()`.
 * @returns {R}
 */
function tracked(resource) {
  leftovers.add(resource);
  return resource;
}

afterEach(async () => {
  const resources = [...leftovers].reverse();
  leftovers.clear();
  await Promise.all(
    resources.map((resource) => {
      if (resource instanceof net.Socket) {
        resource.destroy();
        return null;
      }
      if (resource instanceof net.Server) {
        resource.close();
        return null;
      }
      // Closed already by a passing test (a no-op then); a close still waiting for a peer's
      // confirmation is not waited for beyond 2 s (its own timeout ends it).
      const closing = Promise.resolve()
        .then(() => (resource.close ?? resource.kill).call(resource))
        .catch(() => {});
      return Promise.race([closing, sleep(2 * S, undefined, { ref: false })]);
    }),
  );
});

/** channels.js's connect, listen and tcp.js's connect, whose results are closed after the test. */
const connect = async (...args) => tracked(await openChannel(...args));
const listen = async (...args) => tracked(await openListener(...args));
const tcpConnect = async (...args) => tracked(await openTcp(...args));

/**
 * A plain net.Server (not listening yet): it and its connections are closed after the test.
 * @param {(socket: net.Socket) => void} [onSocket]
 * @returns {net.Server}
 */
function netServer(onSocket = () => {}) {
  return tracked(net.createServer((socket) => onSocket(tracked(socket))));
}

/** Collects DecodeErrors. */
function collect() {
  const errors = [];
  return [errors, (error) => errors.push(error)];
}

/** Receives exactly `count` messages. */
async function take(channel, count) {
  const got = [];
  while (got.length < count) {
    got.push(await channel.receive());
  }
  return got;
}

/** Collects every message until the channel ends. */
async function all(channel) {
  const got = [];
  for await (const value of channel) {
    got.push(value);
  }
  return got;
}

const portOf = (url) => Number(url.slice(url.lastIndexOf(":") + 1));

/** A raw TCP client (a plain NDJSON peer, like nc). */
async function raw(url) {
  const socket = tracked(net.connect({ host: "127.0.0.1", port: portOf(url) }));
  await once(socket, "connect");
  return socket;
}

/** Everything a raw socket receives until the other side closes. */
async function readAll(socket) {
  const chunks = [];
  for await (const chunk of socket) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A raw TCP server on a free port: resolves to [server, port, nextSocket()]. */
async function rawServer() {
  const sockets = [];
  const waiters = [];
  const server = netServer((socket) => {
    const waiter = waiters.shift();
    if (waiter) waiter(socket);
    else sockets.push(socket);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const next = () => (sockets.length ? Promise.resolve(sockets.shift()) : new Promise((r) => waiters.push(r)));
  return [server, server.address().port, next];
}

/** What a raw socket receives from now on, as text: call the returned function to see it. */
function collected(socket) {
  const chunks = [];
  socket.on("data", (chunk) => chunks.push(chunk));
  return () => Buffer.concat(chunks).toString();
}

/** The next connection of a raw server, welcomed after its hello; what it sends next is collected. */
async function welcomed(next) {
  const socket = await next();
  await once(socket, "data"); // the hello (the client waits for the answer before sending)
  const got = collected(socket);
  socket.write(WELCOME);
  return [socket, got];
}

/** Waits (5 s at most) until `got()` is `text`. */
async function arrived(got, text) {
  for (let waited = 0; got() !== text && waited < 5 * S; waited += 10) await sleep(10);
  assert.equal(got(), text);
}

/** A port nothing listens on. */
async function freePort() {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** A tcp_node_peer.mjs child: `status()` reads its next status line; `kill()` SIGKILLs it. */
function peer(spec) {
  const child = spawn(process.execPath, [PEER, JSON.stringify(spec)], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = once(child, "exit");
  return tracked({
    async status() {
      const { value, done } = await lines.next();
      assert.ok(!done, "the peer ended without a status line");
      return JSON.parse(value);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
      }
      await exited;
    },
  });
}

/** Runs `body` with resources closed afterwards, whatever happens. */
async function using(resources, body) {
  try {
    return await body(...resources);
  } finally {
    for (const resource of [...resources].reverse()) {
      await (resource.close ?? resource.kill).call(resource);
    }
  }
}

describe("sans-I/O", () => {
  test("a gate without token delivers a plain first line", () => {
    const gate = new ServerGate(undefined);
    assert.deepEqual(gate.feed(Buffer.from('{"a"')), ["", Buffer.alloc(0)]);
    assert.equal(gate.state, "waiting");
    const [reply, rest] = gate.feed(Buffer.from(':1}\n2\n'));
    assert.equal(reply, "");
    assert.equal(rest.toString(), '{"a":1}\n2\n');
    assert.equal(gate.state, "open");
  });

  test("a hello is welcomed and counts as line 1", () => {
    for (const token of [undefined, "s3cret"]) {
      const gate = new ServerGate(token);
      const [reply, rest] = gate.feed(Buffer.from('{"bothways":"hello","token":"s3cret"}\r\n{"x":1}\n'));
      assert.equal(reply, WELCOME);
      assert.equal(rest.toString(), '\n{"x":1}\n');
      assert.equal(gate.state, "open");
    }
  });

  test("a hello split into single bytes", () => {
    const gate = new ServerGate("t");
    const line = Buffer.from(encode({ bothways: "hello", token: "t" }));
    const results = [...line].map((byte) => gate.feed(Buffer.from([byte])));
    assert.ok(results.slice(0, -1).every(([reply, rest]) => reply === "" && rest.length === 0));
    assert.equal(results.at(-1)[0], WELCOME);
    assert.equal(results.at(-1)[1].toString(), "\n");
  });

  for (const [first, reason] of [
    ['{"bothways":"hello","token":"wrong"}\n', "wrong token"],
    ['{"bothways":"hello"}\n', "token required"],
    ['{"bothways":"hello","token":7}\n', "token required"],
    ['{"sensor":"s1"}\n', "token required"],
    ["{oops\n", "token required"],
    ["x".repeat(HELLO_LIMIT + 1), "token required"],
  ]) {
    test(`a gate with a token refuses ${JSON.stringify(first.slice(0, 30))}`, () => {
      const gate = new ServerGate("right");
      const [reply, rest] = gate.feed(Buffer.from(first));
      assert.equal(gate.state, "refused");
      assert.equal(rest.length, 0);
      assert.deepEqual(decode(reply), { bothways: "refused", reason });
    });
  }

  test("the first line is read up to 4096 bytes", () => {
    const gate = new ServerGate("t");
    gate.feed(Buffer.alloc(HELLO_LIMIT, " "));
    assert.equal(gate.state, "waiting");
    const [reply] = gate.feed(Buffer.from(" "));
    assert.equal(decode(reply).reason, "token required");
    const plain = new ServerGate(null);
    const [, rest] = plain.feed(Buffer.alloc(5000, "y"));
    assert.equal(rest.length, 5000);
    assert.equal(plain.state, "open");
  });

  test("the gate at the end of the stream", () => {
    const plain = new ServerGate(undefined);
    plain.feed(Buffer.from("42"));
    assert.equal(plain.feedEof().toString(), "42");
    const guarded = new ServerGate("t");
    guarded.feed(Buffer.from('{"bothways":"hel'));
    assert.equal(guarded.feedEof().length, 0);
    assert.equal(guarded.state, "refused");
    assert.equal(decode(guarded.timedOut()).reason, "token required");
  });

  test("the client's handshake keeps the messages around the welcome", () => {
    const handshake = new ClientHandshake("t");
    assert.equal(handshake.hello, '{"bothways":"hello","token":"t"}\n');
    assert.equal(handshake.check([1, { bothways: "x" }]), false);
    assert.equal(handshake.check([2, { bothways: "welcome" }, 3]), true);
    assert.deepEqual(handshake.early, [1, { bothways: "x" }, 2, 3]);
    assert.throws(() => new ClientHandshake("t").check([{ bothways: "refused", reason: "wrong token" }]), Refused);
  });

  test("back-off doubles from 50 ms to 5 s", () => {
    assert.deepEqual(
      Array.from({ length: 9 }, (_, n) => backoff(n)),
      [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000],
    );
    assert.equal(backoff(10_000), 5000);
  });
});

describe("messages, sizes, closing", () => {
  test("ten thousand messages in order, both ways", T, async () => {
    const values = Array.from({ length: 10_000 }, (_, i) => ({ i, text: "é€𝄞\u2028".repeat(i % 5) }));
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const receiving = take(server, values.length);
      for (const value of values) {
        await client.send(value);
      }
      assert.deepEqual(await receiving, values);
      await server.sendMany(values);
      assert.deepEqual(await take(client, values.length), values);
    });
  });

  test("an accepted connection is duplex", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const conn = await server.accept();
      assert.match(conn.peer, /^127\.0\.0\.1:\d+$/);
      await client.sendMany([1, 2, 3]);
      assert.deepEqual(await take(conn, 3), [1, 2, 3]);
      await conn.send({ back: true });
      assert.deepEqual(await client.receive(), { back: true });
      await conn.close();
    });
  });

  test("a ten-megabyte message, both ways", T, async () => {
    const big = { blob: "x".repeat(10 * 1024 * 1024), tail: [1, 2, 3] };
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const conn = await server.accept();
      const [got] = await Promise.all([conn.receive(), client.send(big)]);
      assert.deepEqual(got, big);
      const [back] = await Promise.all([client.receive(), conn.send(big)]);
      assert.deepEqual(back, big);
      await conn.close();
    });
  });

  test("ten-megabyte messages into the merged stream", T, async () => {
    const big = (n) => ({ n, blob: "☃".repeat(3_500_000) }); // 10.5 MB of UTF-8
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const [first, second] = await Promise.all([take(server, 2), client.sendMany([big(1), big(2)])]);
      assert.deepEqual(first, [big(1), big(2)]);
      assert.equal(second, undefined);
    });
  });

  test("a client's close ends the server's iteration cleanly", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const client = await connect(server.url);
      const conn = await server.accept();
      await client.sendMany(Array.from({ length: 100 }, (_, i) => i));
      await client.close();
      await client.close(); // idempotent
      assert.deepEqual(await all(conn), Array.from({ length: 100 }, (_, i) => i));
      await assert.rejects(conn.receive(), (e) => e instanceof TransportClosed && /closed the connection/.test(e.message));
      await assert.rejects(client.send(1), TransportClosed);
      await conn.close();
    });
  });

  test("a server's close ends the client's iteration cleanly", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const conn = await server.accept();
      await conn.sendMany(Array.from({ length: 50 }, (_, i) => i));
      await conn.close();
      assert.deepEqual(await all(client), Array.from({ length: 50 }, (_, i) => i));
      await assert.rejects(client.receive(), (e) => e instanceof TransportClosed && /peer closed/.test(e.message));
      await assert.rejects(async () => {
        for (let i = 0; i < 1000; i++) {
          await client.send("x".repeat(1000));
          await sleep(1);
        }
      }, TransportClosed);
      await assert.rejects(conn.send(1), TransportClosed);
    });
  });

  test("a client's close loses nothing, even with input unread", T, async () => {
    const values = Array.from({ length: 20_000 }, (_, i) => ({ i, pad: "y".repeat(200) }));
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const client = await connect(server.url);
      const conn = await server.accept();
      // more than the client reads ahead: it pauses, and the rest waits unread in the kernel
      await Promise.race([conn.sendMany(Array.from({ length: 40 }, () => ({ unread: "x".repeat(100_000) }))), sleep(500)]);
      const reading = take(conn, values.length);
      await client.sendMany(values);
      await client.close(); // a plain destroy() would reset the connection and drop our tail
      assert.deepEqual(await reading, values);
      await conn.close();
    });
  });

  test("a server's close loses nothing, even with input unread", T, async () => {
    const values = Array.from({ length: 20_000 }, (_, i) => ({ i, pad: "z".repeat(200) }));
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      const conn = await server.accept();
      let flooding = true;
      const flood = (async () => {
        try {
          while (flooding) await client.sendMany(Array.from({ length: 100 }, () => ({ unread: "x".repeat(1000) })));
        } catch (error) {
          if (!(error instanceof TransportClosed)) throw error;
        }
      })();
      await sleep(200); // the server's connection is not read: it pauses, input waits unread
      const reading = take(client, values.length);
      await conn.sendMany(values);
      await conn.close();
      assert.deepEqual(await reading, values);
      flooding = false;
      await flood;
    });
  });

  test("the values still queued when a connection ends are delivered, its last line too", T, async (t) => {
    // Everything is read, and the end seen, before anything is taken: merged, accepted, a client's.
    const values = Array.from({ length: 1000 }, (_, i) => ({ i }));
    const bytes = values.map((value) => encode(value)).join("") + '{"last":true}'; // no "\n": held until the end
    const expected = [...values, { last: true }];
    const warn = t.mock.method(console, "warn", () => {}); // a truncated line that parsed: delivered, logged
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const socket = await raw(server.url);
      const conn = await server.accept();
      socket.end(bytes);
      await readAll(socket);
      assert.deepEqual(await all(conn), expected);
      await assert.rejects(conn.receive(), (e) => e instanceof TransportClosed && /closed the connection/.test(e.message));
      await conn.close();
      const merged = await raw(server.url); // held, then merged by the first receive()
      merged.end(bytes);
      await readAll(merged); // until the listener's FIN: it has read to our end
      assert.deepEqual(await take(server, expected.length), expected);
    });
    const [rawSrv, port, next] = await rawServer();
    const client = await connect(`tcp://127.0.0.1:${port}`);
    await using([client], async () => {
      const socket = await next();
      await new Promise((resolve) => socket.end(bytes, resolve));
      await sleep(100); // read, and its end seen, by the client
      assert.deepEqual(await all(client), expected);
      await assert.rejects(client.receive(), (e) => e instanceof TransportClosed && /peer closed/.test(e.message));
    });
    rawSrv.close();
    assert.deepEqual(
      warn.mock.calls.map((call) => call.arguments[0].split(":")[0]),
      ["TRUNCATED_LINE", "TRUNCATED_LINE", "TRUNCATED_LINE"],
    );
  });

  test("closing the listener closes its connections", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const accepted = await connect(server.url);
    const conn = await server.accept(); // held, so taken
    const merged = await connect(server.url);
    await merged.send("hi");
    assert.equal(await server.receive(), "hi");
    const waiting = assert.rejects(server.receive(), TransportClosed);
    await server.close();
    await server.close();
    await waiting;
    assert.deepEqual(await all(merged), []);
    assert.deepEqual(await all(accepted), []);
    await assert.rejects(server.send(1), /listener is closed/);
    await assert.rejects(server.accept(), TransportClosed);
    await assert.rejects(conn.receive(), TransportClosed);
    for (const channel of [merged, accepted, conn]) await channel.close();
  });
});

describe("bad input", () => {
  test("malformed and over-long lines are reported, neighbours kept", T, async () => {
    const [errors, onError] = collect();
    const server = await listen("tcp://127.0.0.1:0", { maxLine: 100, onError });
    await using([server], async () => {
      const socket = await raw(server.url);
      socket.end(`{"a":1}\n{oops\n"${"x".repeat(5000)}"\n{"b":2}\n[3]`);
      assert.deepEqual(await take(server, 3), [{ a: 1 }, { b: 2 }, [3]]);
    });
    assert.deepEqual(
      errors.map((e) => [e.code, e.line]),
      [
        ["DECODE_ERROR", 2],
        ["FRAME_TOO_LARGE", 3],
      ],
    ); // the truncated [3] is delivered and logged (the Inbox's rule in JS)
    assert.ok(errors[1] instanceof FrameTooLarge);
  });

  test("line numbers count the hello", T, async () => {
    const [errors, onError] = collect();
    const server = await listen("tcp://127.0.0.1:0", { token: "t", onError });
    await using([server], async () => {
      const socket = await raw(server.url);
      socket.write('{"bothways":"hello","token":"t"}\n{oops\n{"c":3}\n');
      assert.deepEqual(await server.receive(), { c: 3 });
      socket.destroy();
    });
    assert.deepEqual(
      errors.map((e) => e.line),
      [2],
    );
  });

  test("the client reports bad lines and keeps the good ones", T, async () => {
    const [errors, onError] = collect();
    const [rawSrv, port, next] = await rawServer();
    const client = await connect(`tcp://127.0.0.1:${port}`, { onError });
    await using([client], async () => {
      const socket = await next();
      socket.write('1\n{"bad":}\n2\n');
      assert.deepEqual(await take(client, 2), [1, 2]);
      socket.destroy();
    });
    rawSrv.close();
    assert.deepEqual(
      errors.map((e) => [e.code, e.line]),
      [["DECODE_ERROR", 2]],
    );
  });

  test("the raiseError policy stops at the bad line, in order", T, async () => {
    const server = await listen("tcp://127.0.0.1:0", { onError: raiseError });
    await using([server], async () => {
      const socket = await raw(server.url);
      socket.write("1\n2\n{x\n3\n");
      assert.deepEqual(await take(server, 2), [1, 2]);
      await assert.rejects(server.receive(), (e) => e instanceof DecodeError && e.line === 3);
      assert.equal(await server.receive(), 3);
      socket.destroy();
    });
  });
});

describe("tokens", () => {
  test("a wrong or missing token is refused and nothing is delivered", T, async () => {
    const server = await listen("tcp://127.0.0.1:0", { token: "right" });
    await using([server], async () => {
      assert.ok(!server.url.includes("right"));
      await assert.rejects(
        connect(server.url, { token: "wrong" }),
        (e) => e instanceof ConnectError && e.url === server.url && /refused by the server: wrong token/.test(e.message),
      );
      const socket = await raw(server.url); // a plain NDJSON client
      socket.write('{"sneaky":1}\n{"sneaky":2}\n');
      assert.deepEqual(decode(await readAll(socket)), { bothways: "refused", reason: "token required" });
      const tokenless = await connect(server.url); // a bothways client that forgot the token
      await tokenless.send({ sneaky: 3 });
      await assert.rejects(tokenless.receive(), (e) => e instanceof ConnectError && /token required/.test(e.message));
      await tokenless.close();
      const good = await connect(server.url, { token: "right" });
      await good.send({ ok: 1 });
      assert.deepEqual(await server.receive(), { ok: 1 }); // the first and only message
      await good.close();
    });
  });

  for (const how of ["send", "sendMany", "close"]) {
    test(`a tokenless client that only sends learns the refusal from ${how}()`, T, async () => {
      // Mirrors test_a_tokenless_client_that_only_sends_learns_the_refusal: it never receives.
      const server = await listen("tcp://127.0.0.1:0", { token: "right" });
      const refused = (e) =>
        e instanceof ConnectError &&
        e.url === server.url &&
        /refused by the server: token required \(nothing sent on this connection was delivered\)/.test(e.message);
      const client = await connect(server.url);
      await client.send({ sneaky: 1 });
      if (how === "close") {
        await assert.rejects(client.close(), refused);
      } else {
        await assert.rejects(async () => {
          for (let i = 0; i < 2000; i++) {
            // until the refusal has come back (a round trip)
            await (how === "send" ? client.send(2) : client.sendMany([3, 4]));
            await sleep(5);
          }
        }, refused);
        await assert.rejects(client.send(5), refused); // the connection is refused for good
      }
      await client.close(); // said once
      const good = await connect(server.url, { token: "right" });
      await good.send("ok");
      assert.equal(await server.receive(), "ok"); // the first and only message
      await good.close();
    });
  }

  test("a client with a token talks to a server without one", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url, { token: "any" });
    await using([server, client], async () => {
      await client.send("hello there");
      assert.equal(await server.receive(), "hello there");
      await server.send("welcome back");
      assert.equal(await client.receive(), "welcome back");
    });
  });

  test("messages before the welcome are delivered after it", T, async () => {
    const [rawSrv, port, next] = await rawServer();
    const connecting = connect(`tcp://127.0.0.1:${port}`, { token: "t" });
    const socket = await next();
    socket.write('{"pre":1}\n');
    const [hello] = await once(socket, "data");
    assert.equal(hello.toString(), '{"bothways":"hello","token":"t"}\n');
    socket.write(WELCOME + '{"post":2}\n');
    const client = await connecting;
    assert.deepEqual(await take(client, 2), [{ pre: 1 }, { post: 2 }]);
    await client.close();
    socket.destroy();
    rawSrv.close();
  });

  test("a silent connection is refused after the timeout", T, async () => {
    const server = await listen("tcp://127.0.0.1:0", { token: "t", timeout: 200 });
    await using([server], async () => {
      const started = Date.now();
      const socket = await raw(server.url);
      assert.deepEqual(decode(await readAll(socket)), { bothways: "refused", reason: "token required" });
      assert.ok(Date.now() - started < 3 * S);
    });
  });
});

describe("cannot connect", () => {
  test("connection refused names the URL, without the token", T, async () => {
    const port = await freePort();
    await assert.rejects(connect(`tcp://127.0.0.1:${port}?token=secret`), (e) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.url, `tcp://127.0.0.1:${port}`);
      assert.equal(e.message, `tcp://127.0.0.1:${port}: connection refused (nothing listens there)`);
      assert.equal(e.code, "CONNECT_ERROR");
      return true;
    });
  });

  test("an unknown host is a ConnectError", T, async () => {
    await assert.rejects(connect("tcp://nohost.invalid:9"), (e) => e instanceof ConnectError && /cannot resolve host 'nohost.invalid'/.test(e.message));
  });

  test("a server that never answers the hello", T, async () => {
    const [rawSrv, port] = await rawServer();
    const started = Date.now();
    await assert.rejects(connect(`tcp://127.0.0.1:${port}`, { token: "t", timeout: 300 }), (e) => e instanceof ConnectError && /no answer to the hello within 0.3 s/.test(e.message));
    assert.ok(Date.now() - started < 3 * S);
    rawSrv.close();
    rawSrv.closeAllConnections?.();
  });

  test("options are checked", T, async () => {
    await assert.rejects(connect("tcp://127.0.0.1:9", { retries: 3 }), TypeError);
    await assert.rejects(listen("tcp://127.0.0.1:0", { colour: "blue" }), TypeError);
    await assert.rejects(listen("tcp://127.0.0.1:0", { token: "" }), TypeError);
    await assert.rejects(listen("tcp://127.0.0.1:0", { token: "t".repeat(HELLO_LIMIT) }), /too long/);
    await assert.rejects(connect("tcp://127.0.0.1:9", { timeout: 0 }), RangeError);
    await assert.rejects(tcpConnect("tcp://127.0.0.1:9"), TypeError); // an Address, not a string
  });

  test("a port in use is a TransportError", T, async () => {
    const first = await listen("tcp://127.0.0.1:0");
    await using([first], async () => {
      await assert.rejects(listen(first.url), (e) => e instanceof TransportError && e.message.startsWith(`${first.url}: cannot listen`));
    });
  });

  test("one URL serves both sides; the URL's timeout is in seconds", T, async () => {
    const server = await listen("tcp://127.0.0.1:0?reconnect=1&timeout=5");
    const client = await tcpConnect(parse(`${server.url}?reconnect=1&timeout=5`), { timeout: 5000 });
    await using([server, client], async () => {
      await client.send(1);
      assert.equal(await server.receive(), 1);
    });
  });
});

describe("the first connect with reconnect", () => {
  // Mirrors tests/unit/test_tcp.py::test_reconnect_waits_for_a_server_that_starts_a_moment_later.
  test("firstRetry: the back-off while time is left, only with reconnect", () => {
    assert.equal(firstRetry(true, 0, 1000), 50);
    assert.equal(firstRetry(true, 3, 1000), 400);
    assert.equal(firstRetry(true, 20, 10_000), 5000);
    assert.equal(firstRetry(true, 3, 400), null); // the wait would use up what is left
    assert.equal(firstRetry(true, 0, 0), null);
    assert.equal(firstRetry(false, 0, 10_000), null);
  });

  test("without reconnect, nothing listening: ConnectError at once", T, async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    await assert.rejects(connect(url, { timeout: 5000 }), (e) => e instanceof ConnectError && /connection refused/.test(e.message));
    assert.ok(Date.now() - started < 1 * S, `took ${Date.now() - started} ms`);
  });

  test("with reconnect, nothing listening: the last ConnectError once the timeout has run out", T, async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    await assert.rejects(connect(`${url}?reconnect=1&timeout=0.5`), (e) => e instanceof ConnectError && e.url === url && /connection refused/.test(e.message));
    const took = Date.now() - started;
    assert.ok(took >= 300 && took < 3 * S, `took ${took} ms`);
  });

  test("with reconnect, a server started 300 ms later is waited for", T, async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const later = sleep(300).then(() => listen(url));
    const started = Date.now();
    const client = await connect(url, { reconnect: true, timeout: 5000 });
    const server = await later;
    await using([server, client], async () => {
      assert.ok(Date.now() - started >= 250, `connected after ${Date.now() - started} ms`);
      await client.send({ hello: "late server" });
      assert.deepEqual(await server.receive(), { hello: "late server" });
      assert.equal(client.reconnects, 0); // the first connection, not a reconnection
    });
  });

  test("with reconnect, a refused token is thrown at once, not retried", T, async () => {
    const server = await listen("tcp://127.0.0.1:0", { token: "right" });
    await using([server], async () => {
      const started = Date.now();
      await assert.rejects(
        connect(server.url, { token: "wrong", reconnect: true, timeout: 5000 }),
        (e) => e instanceof ConnectError && e.url === server.url && /refused by the server: wrong token/.test(e.message),
      );
      assert.ok(Date.now() - started < 1 * S, `took ${Date.now() - started} ms`);
    });
  });

  test("with reconnect, an AbortSignal stops the waiting", T, async () => {
    const url = `tcp://127.0.0.1:${await freePort()}`;
    const started = Date.now();
    await assert.rejects(connect(url, { reconnect: true, timeout: 10_000, signal: AbortSignal.timeout(200) }), (e) => e instanceof TransportClosed && /aborted/.test(e.message));
    assert.ok(Date.now() - started < 2 * S, `took ${Date.now() - started} ms`);
    const stopped = new AbortController();
    stopped.abort();
    await assert.rejects(connect(url, { reconnect: true, signal: stopped.signal }), TransportClosed);
  });
});

describe("many clients, accept, broadcast, plain peers", () => {
  test("many clients are merged, each in order", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const clients = await Promise.all(Array.from({ length: 8 }, () => connect(server.url)));
    await using([server, ...clients], async () => {
      const receiving = take(server, 8 * 2000);
      await Promise.all(
        clients.map(async (client, c) => {
          for (let i = 0; i < 2000; i += 100) {
            await client.sendMany(Array.from({ length: 100 }, (_, j) => ({ c, i: i + j })));
          }
        }),
      );
      const got = await receiving;
      for (let c = 0; c < 8; c++) {
        assert.deepEqual(
          got.filter((m) => m.c === c).map((m) => m.i),
          Array.from({ length: 2000 }, (_, i) => i),
        );
      }
    });
  });

  test("a broadcast reaches every merged client", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const clients = await Promise.all(Array.from({ length: 3 }, () => connect(server.url)));
    await using([server, ...clients.slice(1)], async () => {
      while (server.peers < 3) await sleep(10);
      await server.send({ all: 1 });
      await server.sendMany([2, 3]);
      for (const client of clients) {
        assert.deepEqual(await take(client, 3), [{ all: 1 }, 2, 3]);
      }
      await clients[0].close();
      while (server.peers > 2) await sleep(10);
      await server.send("still"); // the one that left is dropped, the others still get it
      for (const client of clients.slice(1)) {
        assert.equal(await client.receive(), "still");
      }
    });
  });

  test("a merged connection is never accepted", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const first = await connect(server.url);
    await using([server, first], async () => {
      await first.send("one");
      assert.equal(await server.receive(), "one"); // merging: first is merged, for good
      let accepted = null;
      const accepting = server.accept().then((conn) => (accepted = conn));
      await first.send("two");
      assert.equal(await server.receive(), "two"); // still merged: accept() waits for the next one
      assert.equal(accepted, null);
      const second = await connect(server.url);
      const conn = await accepting;
      await second.send("three");
      assert.equal(await conn.receive(), "three"); // it went to the waiting accept()
      await conn.send("yours");
      assert.equal(await second.receive(), "yours");
      await second.close();
      await conn.close();
    });
  });

  test("plain NDJSON peers interoperate", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const socket = await raw(server.url);
      socket.end("21.5\n-3.25\n"); // the tutorial's sensor
      assert.deepEqual(await take(server, 2), [21.5, -3.25]);
    });
    const [rawSrv, port, next] = await rawServer();
    const client = await connect(`tcp://127.0.0.1:${port}`);
    const socket = await next();
    const reading = readAll(socket); // it reads to the end, then its FIN confirms our close()
    await client.send({ a: 1 });
    await client.close();
    assert.equal((await reading).toString(), '{"a":1}\n');
    rawSrv.close();
  });

  test("send waits while the listener does not read", T, async () => {
    const chunk = Array.from({ length: 1000 }, () => ({ pad: "x".repeat(1000) })); // ~1 MB
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url);
    await using([server, client], async () => {
      let sent = 0;
      const sending = (async () => {
        for (let i = 0; i < 64; i++) {
          await client.sendMany(chunk);
          sent++;
        }
      })();
      await sleep(1 * S);
      assert.ok(sent < 16, `sent ${sent} MB without a reader`);
      assert.equal((await take(server, 64 * 1000)).length, 64_000);
      await sending;
    });
  });

  test("an AbortSignal closes the channel and the listener", T, async () => {
    const controller = new AbortController();
    const server = await listen("tcp://127.0.0.1:0", { signal: controller.signal });
    const client = await connect(server.url, { signal: controller.signal });
    const receiving = assert.rejects(client.receive(), (e) => e instanceof TransportClosed && /aborted/.test(e.message));
    controller.abort();
    await receiving;
    await assert.rejects(server.receive(), TransportClosed);
    await assert.rejects(connect(server.url, { signal: controller.signal }), /aborted/);
  });
});

describe("killed peers and reconnection (real processes)", () => {
  test("a killed server gives TransportClosed", T, async () => {
    const child = peer({ mode: "echo-server", url: "tcp://127.0.0.1:0" });
    await using([child], async () => {
      const { url } = await child.status();
      const client = await connect(url);
      await client.send({ n: 1 });
      assert.deepEqual(await client.receive(), { n: 1 });
      await child.kill();
      await assert.rejects(client.receive(), TransportClosed);
      await assert.rejects(async () => {
        for (let i = 0; i < 1000; i++) {
          await client.send({ n: 2 });
          await sleep(1);
        }
      }, TransportClosed);
      await client.close();
    });
  });

  test("a killed client gives TransportClosed to its connection; merged ones just leave", T, async () => {
    const server = await listen("tcp://127.0.0.1:0", { token: "t" });
    await using([server], async () => {
      const sender = peer({ mode: "sender", url: server.url, token: "t", count: 100 });
      await using([sender], async () => {
        const conn = await server.accept();
        assert.deepEqual(await sender.status(), { sent: 100 });
        assert.deepEqual(
          await take(conn, 100),
          Array.from({ length: 100 }, (_, i) => ({ i })),
        );
        await sender.kill();
        await assert.rejects(conn.receive(), TransportClosed);
        await conn.close();
      });
      const merged = peer({ mode: "sender", url: server.url, token: "t", count: 10 });
      await using([merged], async () => {
        assert.deepEqual(
          await take(server, 10),
          Array.from({ length: 10 }, (_, i) => ({ i })),
        );
      });
      const client = await connect(server.url, { token: "t" });
      await client.send("after");
      assert.equal(await server.receive(), "after");
      await client.close();
    });
  });

  test("reconnect resumes with a new server on the same port", T, async () => {
    // Mirrors tests/unit/test_tcp.py::test_reconnect_resumes_with_a_new_server_on_the_same_port.
    const first = peer({ mode: "echo-server", url: "tcp://127.0.0.1:0", token: "t" });
    const { url } = await first.status();
    const client = await connect(url, { token: "t", reconnect: true });
    let second;
    try {
      const got = [];
      const reading = (async () => {
        for await (const { n } of client) got.push(n); // until close()
      })();
      await client.send({ n: 0 });
      for (let waited = 0; got.length === 0 && waited < 5 * S; waited += 10) await sleep(10);
      assert.deepEqual(got.splice(0), [0]);
      await first.kill();
      await sleep(200);
      second = peer({ mode: "echo-server", url, token: "t" });
      assert.equal((await second.status()).url, url);
      // Sent while the connection is down or half-dead: sent again on the next one, with what
      // the first connection kept (RESEND bytes): at least once, in order.
      for (let n = 1; !got.some((k) => k >= 1) && n < 30; n++) {
        await client.send({ n });
        await sleep(500);
      }
      assert.ok(client.reconnects >= 1);
      assert.equal(got[0], 0, JSON.stringify(got)); // the first connection's message, sent again first
      assert.deepEqual([...new Set(got)].sort((a, b) => a - b), Array.from({ length: Math.max(...got) + 1 }, (_, i) => i), JSON.stringify(got));
      await client.close(); // the new server confirmed everything: nothing may be lost
      await reading; // close() ends the iteration
    } finally {
      await client.close().catch(() => {}); // (settled already, unless an assertion failed)
      await first.kill();
      await second?.kill();
    }
  });

  test("reconnecting stops on close()", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url, { reconnect: true });
    await server.close();
    const receiving = assert.rejects(client.receive(), TransportClosed); // tries until close()
    await sleep(500);
    await client.close();
    await receiving;
  });
});

describe("backlog and a confirmed close", () => {
  const unconfirmed = (url, seconds, bytes) =>
    `${url}: close: the peer did not confirm within ${seconds} s that it read what we sent (${bytes} bytes on this connection); it may be lost`;
  const reset = (url, bytes) =>
    `${url}: close: the connection was reset before the peer confirmed it read what we sent (${bytes} bytes on this connection); it may be lost`;

  test("backlog: the URL's, the option's, or 4096, given to listen()", T, async () => {
    assert.equal(BACKLOG, 4096);
    const calls = await listenCalls(async () => {
      for (const [url, options] of [
        ["tcp://127.0.0.1:0", {}],
        ["tcp://127.0.0.1:0?backlog=7", {}],
        ["tcp://127.0.0.1:0?backlog=7", { backlog: 3 }],
      ]) {
        await (await listen(url, options)).close();
      }
    });
    assert.deepEqual(
      calls.map((options) => options.backlog),
      [4096, 7, 3],
    );
    await assert.rejects(listen("tcp://127.0.0.1:0", { backlog: 0 }), RangeError);
    await assert.rejects(listen("tcp://127.0.0.1:0", { backlog: 2.5 }), /backlog must be a whole number >= 1/);
    const client = await tcpConnect(parse("tcp://127.0.0.1:1"), { backlog: 5 }).catch((e) => e); // ignored
    assert.ok(client instanceof ConnectError);
  });

  test("the kernel holds backlog + 1 connections that are not accepted yet", T, async (t) => {
    const small = await listen("tcp://127.0.0.1:0?backlog=1");
    const big = await listen("tcp://127.0.0.1:0");
    await using([small, big], async () => {
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
    });
  });

  test("close() against a server that never reads: TransportClosed after the timeout", T, async () => {
    const [rawSrv, port, next] = await rawServer();
    const url = `tcp://127.0.0.1:${port}`;
    try {
      const client = await connect(url, { timeout: 500 });
      const socket = await next();
      socket.pause(); // never reads, never ends
      await client.sendMany([1, 2, 3]);
      const started = Date.now();
      const closing = client.close();
      const again = client.close(); // while it waits: the same outcome
      await assert.rejects(closing, (e) => e instanceof TransportClosed && e.message === unconfirmed(url, 0.5, 6));
      await assert.rejects(again, TransportClosed);
      const waited = Date.now() - started;
      assert.ok(waited >= 450 && waited < 3 * S, `waited ${waited} ms`);
      await client.close(); // after: resolves
      socket.destroy();

      // with a token: the hello is not counted
      const connecting = connect(url, { token: "t", timeout: 500 });
      const guarded = await next();
      await once(guarded, "data"); // the hello
      guarded.pause();
      guarded.write(WELCOME);
      const withToken = await connecting;
      await withToken.send("x".repeat(100_000)); // more than the kernel takes unread, some of it
      await assert.rejects(withToken.close(), (e) => e.message === unconfirmed(url, 0.5, 100_003));
      guarded.destroy();
    } finally {
      rawSrv.close();
    }
  });

  test("close() against a server that reads to the end and closes: resolves", T, async () => {
    const received = [];
    const server = netServer((socket) => socket.on("data", (chunk) => received.push(chunk)));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const client = await connect(`tcp://127.0.0.1:${server.address().port}`, { timeout: 500 });
      await client.sendMany(Array.from({ length: 1000 }, (_, i) => ({ i, pad: "p".repeat(100) })));
      await client.close();
      assert.equal(Buffer.concat(received).toString().split("\n").length - 1, 1000);
    } finally {
      server.close();
    }
  });

  test("close() after a reset: TransportClosed that says so", T, async () => {
    const server = netServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `tcp://127.0.0.1:${server.address().port}`;
    try {
      const client = await connect(url);
      await client.send("hi");
      const started = Date.now();
      await assert.rejects(client.close(), (e) => e instanceof TransportClosed && e.message === reset(url, 5) && e.cause?.code === "ECONNRESET");
      assert.ok(Date.now() - started < 3 * S);
    } finally {
      server.close();
    }
  });

  test("nothing sent, or the loss already reported: nothing to confirm", T, async () => {
    const [rawSrv, port, next] = await rawServer();
    const url = `tcp://127.0.0.1:${port}`;
    try {
      const quiet = await connect(url, { timeout: 5000 });
      (await next()).pause();
      const started = Date.now();
      await quiet.close(); // sent nothing: resolves at once, though the server never reads
      assert.ok(Date.now() - started < 1 * S);

      const client = await connect(url);
      const socket = await next();
      await client.send(1);
      socket.resetAndDestroy();
      await assert.rejects(client.receive(), TransportClosed); // reported here...
      await client.close(); // ...so not again
    } finally {
      rawSrv.close();
    }
  });

  test("a listener answers the FIN at once, held, accepted or merged", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const held = await connect(server.url, { timeout: 2000 });
      await held.sendMany([1, 2]);
      const started = Date.now();
      await held.close(); // nobody has taken it yet: read to its end all the same

      const client = await connect(server.url, { timeout: 2000 });
      const conn = await server.accept(); // `held`, the oldest: its owner neither reads nor closes it yet
      const other = await server.accept(); // `client`
      await client.sendMany([3, 4]);
      await client.close();
      assert.ok(Date.now() - started < 1 * S, "close() waited");
      assert.deepEqual(await all(conn), [1, 2]); // still there for its owner
      assert.deepEqual(await all(other), [3, 4]);
      await assert.rejects(other.send(5), TransportClosed); // but no longer writable
      await conn.close();
      await other.close();

      const merged = await connect(server.url, { timeout: 2000 });
      await merged.sendMany([5, 6]);
      assert.deepEqual(await take(server, 2), [5, 6]);
      await merged.close();
    });
  });

  test("with reconnect, close() confirms the current connection", T, async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const client = await connect(server.url, { reconnect: true, timeout: 2000 });
    await using([server], async () => {
      await client.send("a");
      assert.equal(await server.receive(), "a");
      await client.close();
    });
    const [rawSrv, port, next] = await rawServer();
    try {
      const url = `tcp://127.0.0.1:${port}`;
      const stuck = await connect(url, { reconnect: true, timeout: 300 });
      (await next()).pause();
      await stuck.send("b");
      await assert.rejects(stuck.close(), (e) => e.message === unconfirmed(url, 0.3, 4));
    } finally {
      rawSrv.close();
      rawSrv.closeAllConnections?.();
    }
  });

  test("with reconnect, what a broken connection carried goes again first; the new one confirms it", T, async () => {
    // As tests/unit/test_tcp.py::test_async_reconnect_to_a_new_listener_on_the_same_port, the
    // first server reset instead of closed.
    const [rawSrv, port, next] = await rawServer();
    const url = `tcp://127.0.0.1:${port}`;
    try {
      const connecting = connect(url, { token: "t", reconnect: true, timeout: 2000 });
      const [first, firstGot] = await welcomed(next);
      const client = await connecting;
      await client.sendMany([1, 2]); // 4 bytes, the hello not counted
      await arrived(firstGot, "1\n2\n");
      first.resetAndDestroy(); // the server dies: no FIN will confirm them
      const receiving = assert.rejects(client.receive(), TransportClosed); // sees it, reconnects
      const [second, secondGot] = await welcomed(next);
      await client.send(3); // on the new connection, after what the first one carried
      await arrived(secondGot, "1\n2\n3\n");
      assert.equal(client.reconnects, 1);
      second.on("end", () => second.end()); // read to the end: confirms
      const closing = client.close();
      await client.close(); // while it waits: the same outcome
      await closing;
      await client.close(); // after: resolves
      await receiving;
    } finally {
      rawSrv.close();
      rawSrv.closeAllConnections?.();
    }
  });

  test("with reconnect, a FIN from before ours confirms nothing: close() opens again and resends", T, async () => {
    // The server read "1\n" and went away (its FIN, after 1.3 MB that nobody reads: the client's
    // socket pauses after 1 MiB, the FIN waits behind the rest); a close() that took that FIN
    // for a confirmation would lose what the server may not have read. Instead the next server
    // gets it again and confirms.
    const [rawSrv, port, next] = await rawServer();
    const url = `tcp://127.0.0.1:${port}`;
    try {
      const client = await connect(url, { reconnect: true, timeout: 5000 });
      const first = await next();
      const firstGot = collected(first);
      await client.send(1);
      await arrived(firstGot, "1\n");
      first.end(`${JSON.stringify("x".repeat(1000))}\n`.repeat(1300)); // unread, then its FIN
      await once(first, "finish");
      await sleep(100);
      const closing = client.close();
      const second = await next();
      const secondGot = collected(second);
      second.on("end", () => second.end());
      await closing;
      assert.equal(secondGot(), "1\n");
      assert.equal(client.reconnects, 1);
    } finally {
      rawSrv.close();
      rawSrv.closeAllConnections?.();
    }
  });

  test("with reconnect, close() during a reconnection still gets what was kept confirmed", T, async () => {
    // The connection that broke was given up by the reconnection under way (which close()
    // stops): what it kept was never confirmed, so close() opens the connection again itself.
    const first = await listen("tcp://127.0.0.1:0");
    const url = first.url;
    const client = await connect(url, { reconnect: true, timeout: 5000 });
    await client.send("a");
    assert.equal(await first.receive(), "a");
    await first.close();
    const receiving = assert.rejects(client.receive(), TransportClosed); // reconnects until close()
    await sleep(300);
    const closing = client.close();
    await sleep(200);
    const second = await listen(url);
    await using([second], async () => {
      await closing;
      assert.equal(await Promise.race([second.receive(), sleep(2 * S, "nothing")]), "a");
      await receiving;
    });
  });

  test("with reconnect, refused by the new server: ConnectError, and close() has nothing to confirm", T, async () => {
    // As tcp.py: the refusal closes the channel; close() reports only what fell out of the window.
    const first = await listen("tcp://127.0.0.1:0", { token: "a" });
    const url = first.url;
    const client = await connect(url, { token: "a", reconnect: true, timeout: 5000 });
    await client.send("x");
    assert.equal(await first.receive(), "x");
    await first.close();
    const second = await listen(url, { token: "b" });
    await using([second], async () => {
      await assert.rejects(client.receive(), (e) => e instanceof ConnectError && e.message === `${url}: refused by the server: wrong token`);
      await assert.rejects(client.send("y"), TransportClosed);
      await client.close();
    });
  });

  test("with reconnect, more than RESEND unconfirmed when it broke: close() says how many", T, async () => {
    // RESEND is 1 MiB of whole writes: of 8 lines of 200,000 bytes the last 5 are kept. The
    // server never reads them, then resets; close() finds the connection broken, opens it again,
    // writes what it kept, gets it confirmed, and says how much fell out of the window.
    const [rawSrv, port, next] = await rawServer();
    const url = `tcp://127.0.0.1:${port}`;
    try {
      const client = await connect(url, { reconnect: true, timeout: 5000 });
      const first = await next();
      first.pause(); // never reads
      const line = (i) => String(i).padStart(2, "0") + "x".repeat(199_995);
      assert.equal(encode(line(0)).length, 200_000);
      const sending = Array.from({ length: 8 }, (_, i) => client.send(line(i))); // (the kernel takes them)
      await sleep(100);
      first.resetAndDestroy(); // what it had not read is gone with it
      await sleep(50);
      const closing = client.close();
      const second = await next();
      const secondGot = collected(second);
      second.on("end", () => second.end());
      await assert.rejects(
        closing,
        (e) =>
          e instanceof TransportClosed &&
          e.message ===
            `${url}: close: 600000 bytes were sent on connections that broke before the peer confirmed them, more than the last 1048576 bytes that were sent again (opened again 1 times); they may be lost`,
      );
      assert.equal(secondGot(), Array.from({ length: 5 }, (_, i) => encode(line(i + 3))).join(""));
      await Promise.allSettled(sending);
    } finally {
      rawSrv.close();
      rawSrv.closeAllConnections?.();
    }
  });

  test("with reconnect, a listener closed and opened again mid-stream: everything at least once", T, async () => {
    // The in-process mirror of tests/cross/test_many_clients.py's restarted listener.
    const MESSAGES = 100;
    const first = await listen("tcp://127.0.0.1:0");
    const url = first.url;
    const seen = new Set();
    let received = 0;
    const read = async (listener, lag) => {
      try {
        for (;;) {
          seen.add((await listener.receive()).seq);
          received++;
          await sleep(lag); // the first one falls behind: what it has not read when it closes is lost
        }
      } catch (error) {
        if (!(error instanceof TransportClosed)) throw error;
      }
    };
    const readingFirst = read(first, 20);
    const client = await connect(url, { reconnect: true, timeout: 5000 });
    const sending = (async () => {
      for (let seq = 0; seq < MESSAGES; seq++) {
        await client.send({ seq, pad: "p".repeat(100) });
        await sleep(10);
      }
      await client.close(); // resolves: the second listener confirmed it
    })();
    for (let waited = 0; received < MESSAGES / 4 && waited < 10 * S; waited += 5) await sleep(5);
    await first.close();
    await readingFirst;
    const before = seen.size;
    await sleep(300);
    const second = await listen(url);
    await using([second], async () => {
      const readingSecond = read(second, 0);
      await sending;
      for (let waited = 0; seen.size < MESSAGES && waited < 5 * S; waited += 10) await sleep(10);
      await second.close();
      await readingSecond;
    });
    assert.ok(before < MESSAGES / 2, `the restart came in the middle (${before} read before)`);
    assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: MESSAGES }, (_, i) => i));
    assert.ok(client.reconnects >= 1);
  });

  test("3,000 clients x 20 messages at once: every message arrives, or close() says so", { timeout: 60 * S }, async () => {
    const CLIENTS = 3000;
    const MESSAGES = 20;
    const server = await listen("tcp://127.0.0.1:0");
    await using([server], async () => {
      const got = Array.from({ length: CLIENTS }, () => []);
      let count = 0;
      const reading = (async () => {
        for (;;) {
          const batch = await server.receiveMany();
          for (const { c, i } of batch) got[c].push(i);
          count += batch.length;
        }
      })().catch((error) => {
        if (!(error instanceof TransportClosed)) throw error;
      });
      const failures = new Map();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, c) => {
          try {
            const client = await connect(server.url);
            await client.sendMany(Array.from({ length: MESSAGES }, (_, i) => ({ c, i })));
            await client.close();
          } catch (error) {
            failures.set(c, error);
          }
        }),
      );
      const expected = (CLIENTS - failures.size) * MESSAGES;
      for (let waited = 0; count < expected && waited < 10 * S; waited += 10) await sleep(10);
      await server.close();
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
        assert.ok(failures.size < CLIENTS / 10, `${failures.size} clients failed`); // the backlog holds them
      }
    });
  });
});

// Where a listener's connections go, between accept() and the merged stream: one rule (Router,
// spec/PROTOCOL.md section 7), the same tests for tcp:// and ws://. Mirrors
// tests/unit/test_tcp_routing.py.
describe("routing between accept() and the merged stream", () => {
  test("the Router's rule", () => {
    const router = new Router();
    assert.equal(router.arrive("a"), false); // held: nobody uses the listener yet
    assert.equal(router.arrive("b"), false);
    router.beginAccept();
    assert.equal(router.take(), "a"); // the oldest
    assert.deepEqual(router.endAccept(), []); // not merging: b stays held
    assert.deepEqual(router.startMerging(), ["b"]);
    assert.equal(router.arrive("c"), true); // merging, no accept() waits: merged at once
    router.beginAccept();
    assert.equal(router.take(), undefined); // merged ones are never taken
    assert.equal(router.arrive("d"), false); // an accept() waits: held for it
    assert.deepEqual(router.startMerging(), []);
    assert.equal(router.take(), "d");
    router.beginAccept(); // two accept() calls, one connection
    assert.equal(router.arrive("e"), false);
    assert.deepEqual(router.endAccept(), []); // the other still waits
    assert.equal(router.take(), "e");
    assert.deepEqual(router.endAccept(), []);
    router.beginAccept();
    assert.equal(router.arrive("f"), false);
    assert.deepEqual(router.endAccept(), ["f"]); // the accept() gave up: merged
    assert.equal(router.arrive("g"), true);
    router.merging = false;
    assert.equal(router.arrive("h"), false);
    router.forget("h");
    router.forget("h");
    assert.equal(router.arrive("i"), false);
    assert.deepEqual(router.close(), ["i"]);
    assert.deepEqual(router.held, []);
  });

  for (const [scheme, address] of [
    ["tcp", "tcp://127.0.0.1:0"],
    ["ws", "ws://127.0.0.1:0/feed"],
  ]) {
    test(`${scheme}: held until accept() or merging; accept() takes the oldest, whole`, T, async () => {
      const server = await listen(address);
      const a = await connect(server.url);
      await a.send("from a");
      const b = await connect(server.url);
      await b.send("from b");
      const conn = tracked(await server.accept()); // both held: the oldest
      assert.equal(await server.receive(), "from b"); // the first receive() merges the other
      assert.equal(await conn.receive(), "from a"); // everything a sent, from its first message
      await conn.send("to a");
      await server.send("to all"); // a broadcast: b only
      assert.equal(await a.receive(), "to a");
      assert.equal(await b.receive(), "to all");
    });

    test(`${scheme}: a merged connection is never accepted; a waiting accept() gets the next`, T, async () => {
      const server = await listen(address);
      const first = await connect(server.url);
      await first.send("one");
      assert.equal(await server.receive(), "one"); // merging: first is merged, for good
      let accepted = null;
      const accepting = server.accept().then((conn) => (accepted = tracked(conn)));
      await first.send("two");
      assert.equal(await server.receive(), "two"); // accept() did not take it
      assert.equal(accepted, null);
      const second = await connect(server.url);
      const conn = await accepting; // second went to the waiting accept()
      await second.send("three");
      assert.equal(await conn.receive(), "three");
      const third = await connect(server.url); // no accept() waits any more: merged at once
      await third.send("four");
      assert.equal(await server.receive(), "four");
    });

    test(`${scheme}: a send() merges the held connections`, T, async () => {
      const server = await listen(address);
      const client = await connect(server.url);
      await sleep(50); // (its arrival at the listener)
      await server.send("hello"); // a send uses the merged stream too: client joins it
      assert.equal(await client.receive(), "hello");
      await client.send("back");
      assert.equal(await server.receive(), "back");
      const waiting = assert.rejects(server.accept(), TransportClosed); // it cannot take client: it waits
      await client.send("still merged");
      assert.equal(await server.receive(), "still merged");
      await server.close();
      await waiting;
    });
  }
});
