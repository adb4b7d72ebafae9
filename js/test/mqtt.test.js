// mqtt:// channels: the sans-I/O plan and payloadValue (the cases of tests/unit/test_mqtt.py), and
// the channels against a real Mosquitto of the test's own (test/broker.js): round trips, shared
// subscriptions, persistent sessions, broker restarts, refusals and bad payloads. Then calls
// through the broker: RpcRoutes (the Python test's cases), and Peers on rpcConnect/rpcListen.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { after, before, describe, test } from "node:test";

import mqttjs from "mqtt";

import { connect, listen } from "../src/channels.js";
import {
  CallTimeout,
  ConnectError,
  DecodeError,
  RemoteError,
  TransportClosed,
  TransportError,
  UrlError,
} from "../src/errors.js";
import { Peer } from "../src/peer.js";
import { memoryPair, raiseError } from "../src/transports/base.js";
import {
  CALL_TIMEOUT,
  MqttChannel,
  REPLIES,
  RpcCaller,
  RpcRoutes,
  RpcServer,
  SESSION,
  TIMEOUT,
  payloadValue,
  plan,
  rpcConnect,
  rpcListen,
} from "../src/transports/mqtt.js";
import { parse } from "../src/urls.js";
import { Broker, MISSING, UNIT, freePort } from "./broker.js";

const WAIT = 10_000 * UNIT;
const BOUNDED = { timeout: 60_000 * UNIT };

/** A receiveMany() that `take` stopped waiting for, per channel: the next `take` awaits it. */
const unfinished = new WeakMap();
const LATE = Symbol("late");

/**
 * `count` messages from a channel, or fewer when `ms` runs out first (so that a shortfall fails
 * the assertion rather than hanging). A receive it gives up on is kept for the next call, so
 * that no message goes to a receiver nobody awaits.
 * @param {any} channel
 * @param {number} count
 * @param {number} [ms]
 * @returns {Promise<any[]>}
 */
async function take(channel, count, ms = WAIT) {
  const got = [];
  const deadline = performance.now() + ms;
  while (got.length < count) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const next = unfinished.get(channel) ?? channel.receiveMany();
    unfinished.delete(channel);
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    const late = new Promise((resolve) => (timer = setTimeout(() => resolve(LATE), left)));
    const batch = await Promise.race([next, late]);
    clearTimeout(timer);
    if (batch === LATE) {
      next.catch(() => {}); // (it may end with the channel's close)
      unfinished.set(channel, next);
      break;
    }
    got.push(...batch);
  }
  return got;
}

/**
 * @param {number} n
 * @returns {number[]}
 */
function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

// --------------------------------------------------------------------------------------------
// The plan (no I/O)

test("the plan of each end", () => {
  const address = parse("mqtt://127.0.0.1:1883/sensors/kitchen?qos=2");
  const out = plan(address, "connect", { nonce: "n1", ...address.options("connect") });
  assert.deepEqual(
    [out.publish, out.subscribe, out.qos, out.clientId, out.clean, out.session],
    ["sensors/kitchen", null, 2, "bothways-connect-n1", true, 0],
  );
  assert.deepEqual([out.host, out.port, out.transport, out.tls, out.protocol, out.keepalive, out.timeout], [
    "127.0.0.1",
    1883,
    "tcp",
    false,
    "5",
    60,
    TIMEOUT,
  ]);
  assert.ok(Object.isFrozen(out));
  const shared = parse("mqtt://h:1/sensors/#?client_id=ingest&share=g");
  const inbox = plan(shared, "listen", { nonce: "x", ...shared.options("listen") });
  assert.deepEqual(
    [inbox.subscribe, inbox.publish, inbox.clientId, inbox.clean, inbox.session],
    ["$share/g/sensors/#", null, "ingest", false, SESSION],
  );
  assert.equal(SESSION, 86400);
  // share is the listening end's: the publishing end of the same URL has none
  const group = parse("mqtt://h:1/sensors?share=g");
  assert.equal("share" in group.options("connect"), false);
  assert.equal(plan(group, "connect", { nonce: "x", ...group.options("connect") }).publish, "sensors");
  const ws = plan(parse("mqtt+wss://h/t?ws_path=/x"), "listen", { nonce: "x", wsPath: "/x" });
  assert.deepEqual([ws.transport, ws.tls, ws.wsPath, ws.port], ["websockets", true, "/x", 443]);
  assert.equal(plan(parse("mqtt+ws://h:9/t"), "listen", { nonce: "x" }).wsPath, "/mqtt");
  const forced = plan(parse("mqtt://h:1/t"), "listen", { nonce: "x", clientId: "c", clean: true });
  assert.deepEqual([forced.clean, forced.session], [true, 0]);
  const old = parse("mqtt://h:1/t?protocol=3.1.1&keepalive=30&timeout=2.5&session=60");
  const legacy = plan(old, "listen", { nonce: "x", ...old.options("listen") });
  assert.deepEqual([legacy.protocol, legacy.keepalive, legacy.timeout, legacy.session], ["3.1.1", 30, 2500, 60]);
});

for (const topic of ["sensors/#", "a/+/b", "$share/g/a"]) {
  test(`publishing to the filter ${topic} is refused`, () => {
    assert.throws(
      () => plan(parse(`mqtt://h:1/${topic}`), "connect", { nonce: "x" }),
      (error) =>
        error instanceof UrlError && error.reason === `a topic to publish to has no wildcards, got '${topic}'`,
    );
  });
}

test("share twice is refused", () => {
  assert.throws(
    () => plan(parse("mqtt://h:1/$share/g/a"), "listen", { nonce: "x", share: "g" }),
    (error) => error instanceof UrlError && error.reason === "share= and a $share/ topic: give one of them",
  );
});

test("another scheme is not an mqtt URL", () => {
  assert.throws(
    () => plan(parse("tcp://h:1"), "listen", { nonce: "x" }),
    (error) => error instanceof UrlError && error.reason === "not an mqtt URL: tcp://h:1",
  );
});

test("payloadValue", () => {
  const bytes = (/** @type {string} */ text) => new TextEncoder().encode(text);
  assert.deepEqual(payloadValue(bytes('{"a": 1}'), 1, 100), { a: 1 });
  assert.deepEqual(payloadValue('["é"]', 1, 100), ["é"]);
  assert.throws(
    () => payloadValue(bytes("[1,]"), 7, 100),
    (error) =>
      error instanceof DecodeError &&
      error.line === 7 &&
      error.column === 3 &&
      error.reason === "trailing comma before ']'",
  );
  assert.throws(
    () => payloadValue(bytes("1234"), 2, 3),
    (error) =>
      error instanceof DecodeError &&
      error.line === 2 &&
      error.reason === "message is longer than the limit of 3 bytes (dropped)" && error.code === "FRAME_TOO_LARGE",
  );
  assert.throws(() => payloadValue('"éé"', 1, 5), /longer than the limit of 5 bytes/); // 6 bytes of UTF-8
});

test("options are checked before anything is dialled", async () => {
  const url = "mqtt://127.0.0.1:1/t";
  await assert.rejects(connect(url, /** @type {any} */ ({ nope: 1 })), /connect\(\) got unknown option: nope/);
  await assert.rejects(listen(url, { qos: /** @type {any} */ (3) }), /qos must be 0, 1 or 2, got 3/);
  await assert.rejects(listen(url, { maxLine: 0 }), RangeError);
  await assert.rejects(connect("mqtt://127.0.0.1:1/a/#"), UrlError);
  await assert.rejects(
    connect(url, { library: "bothways-no-such-module" }),
    (error) =>
      error instanceof TransportError &&
      error.message.startsWith("mqtt:// needs mqtt.js (npm install mqtt): cannot import bothways-no-such-module: "),
  );
  await assert.rejects(connect(url, { library: {} }), /library must be mqtt.js/);
});

// --------------------------------------------------------------------------------------------
// Against a broker

describe("against a Mosquitto of our own", { skip: MISSING }, () => {
  /** @type {Broker} */
  let broker;
  before(async () => {
    broker = await Broker.start();
  });
  after(async () => {
    await broker?.close();
  });

  for (const scheme of ["mqtt", "mqtt+ws"]) {
    test(`a round trip in order over ${scheme}`, BOUNDED, async () => {
      const inbox = await listen(broker.url("sensors/#", scheme));
      try {
        assert.ok(inbox instanceof MqttChannel);
        assert.match(/** @type {MqttChannel} */ (inbox).clientId, /^bothways-listen-[0-9a-f]{12}$/);
        const out = await connect(broker.url("sensors/kitchen", scheme));
        assert.equal(out.url, broker.url("sensors/kitchen", scheme));
        await out.send({ celsius: 21.5 });
        await out.sendMany(range(2000));
        await out.sendMany([]);
        await out.close();
        await out.close(); // twice is fine
        assert.deepEqual(await take(inbox, 2001), [{ celsius: 21.5 }, ...range(2000)]);
      } finally {
        await inbox.close();
      }
    });
  }

  test("qos 0 and 2, and MQTT 3.1.1, keep the order too", BOUNDED, async () => {
    for (const query of ["?qos=2", "?qos=0", "?qos=2&protocol=3.1.1"]) {
      const inbox = await listen(broker.url("q/+") + query);
      const out = await connect(broker.url("q/x") + query);
      await out.sendMany(range(500));
      await out.close();
      assert.deepEqual(await take(inbox, 500), range(500), query);
      await inbox.close();
    }
  });

  test("each end does its own job", BOUNDED, async () => {
    const inbox = await listen(broker.url("t"));
    const out = await connect(broker.url("t"));
    try {
      await assert.rejects(
        out.receive(),
        (error) =>
          error instanceof TransportError &&
          error.message === `${out.url}: the publishing end only sends (listen() to subscribe)`,
      );
      await assert.rejects(out.receiveMany(), /the publishing end only sends/);
      await assert.rejects(
        inbox.send(1),
        (error) =>
          error instanceof TransportError &&
          error.message === `${inbox.url}: the subscribing end only receives (connect() to publish)`,
      );
      await assert.rejects(inbox.sendMany([1]), /the subscribing end only receives/);
    } finally {
      await out.close();
      await inbox.close();
    }
    await assert.rejects(out.send(1), TransportClosed);
    await assert.rejects(inbox.receive(), TransportClosed);
  });

  test("close() ends iteration after what was received", BOUNDED, async () => {
    const inbox = await listen(broker.url("it"));
    const out = await connect(broker.url("it"));
    await out.sendMany(["a", "b"]);
    await out.close();
    const seen = [];
    for await (const message of inbox) {
      seen.push(message);
      if (seen.length === 2) setTimeout(() => inbox.close(), 50);
    }
    assert.deepEqual(seen, ["a", "b"]);
  });

  test("a shared subscription splits the messages", BOUNDED, async () => {
    const url = broker.url("jobs") + "?share=workers";
    const listeners = [await listen(url), await listen(url)];
    try {
      const out = await connect(broker.url("jobs"));
      await out.sendMany(range(400));
      await out.close();
      /** @type {any[][]} */
      const seen = [[], []];
      const deadline = performance.now() + WAIT;
      while (seen[0].length + seen[1].length < 400 && performance.now() < deadline) {
        for (const [index, listener] of listeners.entries()) {
          seen[index].push(...(await take(listener, 1, 20)));
        }
      }
      assert.deepEqual([...seen[0], ...seen[1]].sort((a, b) => a - b), range(400)); // each once
      assert.ok(seen[0].length > 0 && seen[1].length > 0, `both had a share: ${seen[0].length}, ${seen[1].length}`);
    } finally {
      await Promise.all(listeners.map((listener) => listener.close()));
    }
  });

  test("a persistent listener gets what it missed", BOUNDED, async () => {
    const url = broker.url("readings") + "?client_id=ingest-1";
    const first = await listen(url);
    assert.equal(/** @type {MqttChannel} */ (first).clientId, "ingest-1");
    await first.close(); // the session, and its subscription, stay with the broker
    const out = await connect(broker.url("readings"));
    await out.sendMany(range(50).map((n) => ({ seq: n })));
    await out.close();
    const again = await listen(url);
    try {
      assert.deepEqual(await take(again, 50), range(50).map((n) => ({ seq: n })));
    } finally {
      await again.close();
    }
  });

  test("both ends come back after a broker restart", BOUNDED, async () => {
    const inbox = await listen(broker.url("r") + "?client_id=keeper");
    const out = await connect(broker.url("r") + "?timeout=20");
    try {
      await out.send(1);
      assert.deepEqual(await take(inbox, 1), [1]);
      await broker.stop();
      await broker.start();
      await out.send(2); // waits for the broker, then for its acknowledgement
      assert.deepEqual(await take(inbox, 1, 20_000 * UNIT), [2]);
    } finally {
      await out.close();
      await inbox.close();
    }
  });

  test("a clean listener subscribes again when the broker comes back", BOUNDED, async () => {
    // Its session died with the broker: only subscribing again brings messages back.
    const inbox = await listen(broker.url("clean/#"));
    const out = await connect(broker.url("clean/x") + "?timeout=20");
    try {
      await broker.stop();
      await broker.start();
      let got = [];
      const deadline = performance.now() + 20_000 * UNIT;
      for (let n = 0; got.length === 0 && performance.now() < deadline; n++) {
        await out.send(n); // (lost while the listener is away: a clean session keeps nothing)
        got = await take(inbox, 1, 200);
      }
      assert.equal(got.length, 1);
    } finally {
      await out.close();
      await inbox.close();
    }
  });

  test("a send while the broker is away waits timeout ms at most", BOUNDED, async () => {
    const out = await connect(broker.url("away") + "?timeout=0.5");
    try {
      await broker.stop();
      const started = performance.now();
      await assert.rejects(
        out.sendMany([1, 2]),
        (error) =>
          error instanceof TransportClosed &&
          error.message ===
            `${out.url}: the broker did not acknowledge 2 of 2 messages within 0.5 s; they may be lost`,
      );
      assert.ok(performance.now() - started >= 450);
    } finally {
      await broker.start();
      await out.close();
    }
  });

  test("bad payloads go to onError with their number", BOUNDED, async () => {
    /** @type {DecodeError[]} */
    const errors = [];
    const inbox = await listen(broker.url("raw"), { onError: (error) => errors.push(error) });
    const strict = await listen(broker.url("raw"), { onError: raiseError });
    const raw = await mqttjs.connectAsync(`mqtt://127.0.0.1:${broker.port}`);
    try {
      for (const payload of ["1", "{oops", "3"]) await raw.publishAsync("raw", payload, { qos: 1 });
      assert.deepEqual(await take(inbox, 2), [1, 3]);
      assert.deepEqual(
        errors.map((e) => [e.line, e.column, e.reason]),
        [[2, 2, "expected a string key"]],
      );
      // What onError throws comes out of receive() in its turn, and the channel goes on.
      assert.equal(await strict.receive(), 1);
      await assert.rejects(strict.receive(), (error) => error instanceof DecodeError && error.line === 2);
      assert.equal(await strict.receive(), 3);
    } finally {
      await raw.endAsync();
      await inbox.close();
      await strict.close();
    }
  });

  test("a payload over maxLine goes to onError", BOUNDED, async () => {
    /** @type {DecodeError[]} */
    const errors = [];
    const inbox = await listen(broker.url("big"), { maxLine: 10, onError: (error) => errors.push(error) });
    const out = await connect(broker.url("big"));
    try {
      await out.sendMany(["x".repeat(20), "ok"]);
      assert.deepEqual(await take(inbox, 1), ["ok"]);
      assert.deepEqual(errors.map((e) => [e.line, e.reason]), [[1, "message is longer than the limit of 10 bytes (dropped)"]]);
    } finally {
      await out.close();
      await inbox.close();
    }
  });

  test("aborting the signal closes the channel", BOUNDED, async () => {
    const controller = new AbortController();
    const inbox = await listen(broker.url("ab"), { signal: controller.signal });
    const pending = inbox.receive();
    controller.abort();
    await assert.rejects(pending, TransportClosed);
    const aborted = AbortSignal.abort();
    await assert.rejects(connect(broker.url("ab"), { signal: aborted }), /aborted/);
  });
});

test("an unreachable broker is a ConnectError", BOUNDED, async () => {
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}/t`;
  const started = performance.now();
  await assert.rejects(
    connect(url),
    (error) =>
      error instanceof ConnectError &&
      error.url === url &&
      error.message.startsWith(`${url}: cannot reach the broker at 127.0.0.1:${port}: `),
  );
  await assert.rejects(listen(`mqtt+ws://127.0.0.1:${port}/t`), /cannot reach the broker at/);
  assert.ok(performance.now() - started < 5000);
});

test("a broker that never answers is a ConnectError after timeout", BOUNDED, async () => {
  /** @type {net.Socket[]} */
  const sockets = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {net.AddressInfo} */ (silent.address());
  try {
    const started = performance.now();
    await assert.rejects(
      listen(`mqtt://127.0.0.1:${port}/t?timeout=0.3`),
      (error) =>
        error instanceof ConnectError &&
        error.message ===
          `mqtt://127.0.0.1:${port}/t?timeout=0.3: no answer from the broker at 127.0.0.1:${port} within 0.3 s`,
    );
    const took = performance.now() - started;
    assert.ok(took >= 250 && took < 3000, `${took} ms`);
  } finally {
    sockets.forEach((socket) => socket.destroy());
    silent.close();
  }
});

test("a refused login is a ConnectError", { ...BOUNDED, skip: MISSING }, async () => {
  const broker = await Broker.start({ users: { ann: "right" } });
  try {
    await assert.rejects(
      listen(broker.url("t"), { username: "ann", password: "wrong" }),
      (error) =>
        error instanceof ConnectError &&
        /^refused by the broker: (Not authorized|Bad user name or password)$/.test(
          error.message.slice(`${broker.url("t")}: `.length),
        ),
    );
    await assert.rejects(connect(broker.url("t") + "?protocol=3.1.1"), /refused by the broker: Not authorized/);
    const inbox = await listen(broker.url("t"), { username: "ann", password: "right" });
    const out = await connect(broker.url("t", "mqtt+ws"), { username: "ann", password: "right" });
    await out.send("in");
    await out.close();
    assert.deepEqual(await take(inbox, 1), ["in"]);
    await inbox.close();
  } finally {
    await broker.close();
  }
});

// --------------------------------------------------------------------------------------------
// Calls through the broker

const bytes = (/** @type {string} */ text) => new TextEncoder().encode(text);

test("RpcRoutes renumber the requests and route the answers back", () => {
  const routes = new RpcRoutes();
  const a = routes.incoming({ jsonrpc: "2.0", id: 1, method: "f", params: [] }, "r/a", bytes("1"));
  const b = routes.incoming({ jsonrpc: "2.0", id: 1, method: "f", params: [] }, "r/b", bytes("1"));
  assert.deepEqual([a.id, b.id], [1, 2]); // two callers' id 1 no longer meet
  const cancel = routes.incoming({ jsonrpc: "2.0", method: "$/cancelRequest", params: { id: 1 } }, "r/b", null);
  assert.deepEqual(cancel.params, { id: 2 });
  assert.deepEqual(routes.incoming({ jsonrpc: "2.0", method: "note" }, "r/a", null), {
    jsonrpc: "2.0",
    method: "note",
  });
  assert.deepEqual(routes.outgoing({ jsonrpc: "2.0", id: 2, result: "B" }), [
    ["r/b", bytes("1"), { jsonrpc: "2.0", id: 1, result: "B" }],
  ]);
  assert.deepEqual(
    routes.outgoing([
      { jsonrpc: "2.0", id: 1, result: "A" },
      { jsonrpc: "2.0", id: 9, result: 0 },
    ]),
    [["r/a", bytes("1"), { jsonrpc: "2.0", id: 1, result: "A" }]],
  );
  assert.equal(routes.pending, 0);
  assert.deepEqual(routes.outgoing({ jsonrpc: "2.0", id: 1, result: "again" }), []); // answered once
});

test("RpcRoutes leave alone what they cannot route", () => {
  const routes = new RpcRoutes();
  const request = { jsonrpc: "2.0", id: "x", method: "f" };
  assert.equal(routes.incoming(request, null, null), request); // no reply topic: nowhere to answer
  assert.equal(routes.incoming("junk", "r/a", null), "junk");
  const batch = routes.incoming([request, { jsonrpc: "2.0", id: "x", method: "g" }], "r/a", null);
  assert.deepEqual(
    batch.map((/** @type {any} */ m) => m.id),
    [1, 2],
  );
  assert.equal(routes.pending, 2);
  // a cancel of a call this server does not hold (another server of the group may): dropped
  const stray = { jsonrpc: "2.0", method: "$/cancelRequest", params: { id: "y" } };
  assert.equal(routes.incoming(stray, "r/a", null), null);
  // the Peer's own requests and notifications, and answers without a route, go nowhere
  assert.deepEqual(routes.outgoing({ jsonrpc: "2.0", id: 1, method: "back" }), []);
  assert.deepEqual(routes.outgoing({ jsonrpc: "2.0", error: { code: -32700, message: "" }, id: null }), []);
  assert.deepEqual(routes.outgoing("junk"), []);
});

test("a Peer takes its channel's callTimeout", async () => {
  const [left, right] = memoryPair();
  /** @type {any} */ (left).callTimeout = 50 * UNIT;
  const caller = await new Peer(left).start();
  const silent = await new Peer(right).start(); // exposes nothing, answers nothing in time
  silent.expose(() => new Promise(() => {}), { name: "never" });
  try {
    assert.equal(caller.callTimeout, 50 * UNIT);
    assert.equal(silent.callTimeout, null);
    const started = performance.now();
    await assert.rejects(caller.call("never"), (error) => error instanceof CallTimeout);
    assert.ok(performance.now() - started >= 45 * UNIT);
    caller.callTimeout = null; // a call's own timeout wins over it
    await assert.rejects(caller.callWith("never", null, { timeout: 20 * UNIT }), CallTimeout);
  } finally {
    await caller.close();
    await silent.close();
  }
});

test("rpcConnect and rpcListen check their options before dialling", async () => {
  const url = "mqtt://127.0.0.1:1/services/s";
  assert.equal(CALL_TIMEOUT, 30_000);
  assert.equal(REPLIES, "bothways/replies/");
  await assert.rejects(
    rpcConnect(url + "?protocol=3.1.1"),
    (error) =>
      error instanceof UrlError &&
      error.url === url + "?protocol=3.1.1" &&
      error.reason === "calls through the broker need MQTT 5 (protocol=5)",
  );
  await assert.rejects(rpcListen(url, { protocol: "3.1.1" }), /need MQTT 5/);
  await assert.rejects(rpcConnect(url, /** @type {any} */ ({ nope: 1 })), /rpcConnect\(\) got unknown option: nope/);
  await assert.rejects(rpcListen(url, /** @type {any} */ ({ nope: 1 })), /rpcListen\(\) got unknown option: nope/);
  await assert.rejects(rpcConnect(url, { callTimeout: 0 }), RangeError);
  await assert.rejects(rpcConnect("mqtt://127.0.0.1:1/services/#"), UrlError);
});

describe("calls through a Mosquitto of our own", { skip: MISSING }, () => {
  /** @type {Broker} */
  let broker;
  before(async () => {
    broker = await Broker.start();
  });
  after(async () => {
    await broker?.close();
  });

  test("two servers on a share group split the calls, each once", BOUNDED, async () => {
    /** @type {string[]} */
    const served = [];
    const servers = [];
    for (const name of ["s1", "s2"]) {
      const channel = await rpcListen(broker.url("services/double") + "?share=double");
      assert.ok(channel instanceof RpcServer);
      const peer = new Peer(channel);
      peer.expose(
        async (/** @type {number} */ x) => {
          served.push(name);
          await new Promise((resolve) => setTimeout(resolve, 1));
          return `${name}:${x * 2}`;
        },
        { name: "double" },
      );
      servers.push(await peer.start());
    }
    const channel = await rpcConnect(broker.url("services/double"));
    assert.ok(channel instanceof RpcCaller);
    assert.match(channel.clientId, /^bothways-caller-[0-9a-f]{12}$/);
    const caller = await new Peer(channel).start();
    try {
      assert.equal(caller.callTimeout, CALL_TIMEOUT);
      const calls = range(200).map((i) => caller.callWith("double", [i], { timeout: WAIT }));
      const results = await Promise.all(calls);
      assert.deepEqual(
        results.map((r) => Number(r.split(":")[1])),
        range(200).map((i) => 2 * i),
      );
      assert.equal(served.length, 200); // each call once
      assert.deepEqual(new Set(served), new Set(["s1", "s2"]), "both served");
      await assert.rejects(
        caller.callWith("nope", null, { timeout: WAIT }),
        (error) => error instanceof RemoteError && /nope/.test(error.message),
      );
    } finally {
      await caller.close();
      await Promise.all(servers.map((peer) => peer.close()));
    }
  });

  test("a request carries the reply topic and its id as correlation data", BOUNDED, async () => {
    // A bare mqtt.js client plays the server: what it sees is the wire format.
    const raw = await mqttjs.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 5 });
    await raw.subscribeAsync("services/raw", { qos: 1 });
    /** @type {any[]} */
    const seen = [];
    raw.on("message", (_topic, payload, packet) => {
      const request = JSON.parse(payload.toString());
      const properties = packet.properties ?? {};
      seen.push([request, properties.responseTopic, properties.correlationData?.toString()]);
      const answer = JSON.stringify({ jsonrpc: "2.0", id: request.id, result: request.params[0] + 1 });
      raw.publish(properties.responseTopic, answer, {
        qos: 1,
        properties: { correlationData: properties.correlationData },
      });
    });
    const caller = await new Peer(await rpcConnect(broker.url("services/raw"), { callTimeout: WAIT })).start();
    try {
      assert.equal(await caller.call("inc", 41), 42);
      const clientId = /** @type {RpcCaller} */ (caller.channel).clientId;
      assert.deepEqual(seen, [
        [{ jsonrpc: "2.0", id: 1, method: "inc", params: [41] }, `bothways/replies/${clientId}`, "1"],
      ]);
    } finally {
      await caller.close();
      await raw.endAsync();
    }
  });

  test("a server killed mid-call: the call times out after callTimeout, never hangs", BOUNDED, async () => {
    const url = broker.url("services/slow");
    const code = `
      import { Peer } from ${JSON.stringify(new URL("../src/peer.js", import.meta.url).href)};
      import { rpcListen } from ${JSON.stringify(new URL("../src/transports/mqtt.js", import.meta.url).href)};
      const peer = new Peer(await rpcListen(process.argv[1]));
      peer.expose(async (x) => { console.log("got", x); await new Promise(() => {}); }, { name: "slow" });
      peer.expose((x) => x + 1, { name: "quick" });
      console.log("ready");
      await peer.run();
    `;
    /** @type {import("node:child_process").ChildProcess[]} */
    const started = [];
    /** @returns {Promise<{child: import("node:child_process").ChildProcess, line: () => Promise<string>}>} */
    const server = async () => {
      const child = spawn(process.execPath, ["--input-type=module", "-e", code, url], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      started.push(child);
      /** @type {string[]} */
      const lines = [];
      /** @type {((line: string) => void)[]} */
      const waiting = [];
      let rest = "";
      child.stdout?.setEncoding("utf8").on("data", (/** @type {string} */ chunk) => {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop() ?? "";
        for (const part of parts) {
          const waiter = waiting.shift();
          if (waiter) waiter(part);
          else lines.push(part);
        }
      });
      const line = () => {
        const next = lines.shift();
        return next !== undefined ? Promise.resolve(next) : new Promise((resolve) => waiting.push(resolve));
      };
      assert.equal(await line(), "ready");
      return { child, line };
    };
    const callTimeout = 2000 * UNIT;
    const caller = await new Peer(await rpcConnect(url, { callTimeout })).start();
    try {
      const first = await server();
      const slow = caller.call("slow", 1);
      assert.equal(await first.line(), "got 1");
      const gone = new Promise((resolve) => first.child.once("exit", resolve));
      first.child.kill("SIGKILL"); // (the process this test started)
      await gone;
      const since = performance.now();
      await assert.rejects(
        slow,
        (error) => error instanceof CallTimeout && error.message === `slow: no answer within ${callTimeout} ms`,
      );
      const waited = performance.now() - since;
      assert.ok(waited < callTimeout + 1000 * UNIT, `${waited} ms`);
      await server(); // another server answers the next call
      assert.equal(await caller.callWith("quick", [41], { timeout: WAIT }), 42);
    } finally {
      await caller.close();
      for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill();
    }
  });

  test("a server with a clientId gets the calls queued while it was away", BOUNDED, async () => {
    const url = broker.url("services/kept") + "?client_id=kept-1";
    await (await rpcListen(url)).close(); // the session, and its subscription, stay with the broker
    const caller = await new Peer(await rpcConnect(broker.url("services/kept"), { callTimeout: WAIT })).start();
    const answer = caller.call("inc", 41);
    await new Promise((resolve) => setTimeout(resolve, 200)); // (the broker holds the request)
    const server = new Peer(await rpcListen(url));
    server.expose((/** @type {number} */ x) => x + 1, { name: "inc" });
    await server.start();
    try {
      assert.equal(await answer, 42); // its reply topic came with it, before the first receive
    } finally {
      await caller.close();
      await server.close();
    }
  });

  test("a closed server: the call times out, and a closed caller fails at once", BOUNDED, async () => {
    const serverPeer = new Peer(await rpcListen(broker.url("services/held")));
    /** @type {() => void} */
    let arrived = () => {};
    const holding = new Promise((resolve) => (arrived = () => resolve(undefined)));
    serverPeer.expose(
      () => {
        arrived();
        return new Promise(() => {});
      },
      { name: "hold" },
    );
    await serverPeer.start();
    const caller = await new Peer(await rpcConnect(broker.url("services/held"), { callTimeout: 300 * UNIT })).start();
    try {
      const held = caller.call("hold");
      await holding;
      await serverPeer.close();
      await assert.rejects(held, CallTimeout);
      await caller.close();
      await assert.rejects(caller.call("hold"), TransportClosed);
      await assert.rejects(/** @type {RpcCaller} */ (caller.channel).send({}), TransportClosed);
    } finally {
      await caller.close();
      await serverPeer.close();
    }
  });
});
