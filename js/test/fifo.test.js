// fifo: channels in one Node process: the sans-I/O sessions, then real FIFOs. Mirrors
// tests/unit/test_fifo.py; tests/cross/test_fifo_file_node.py puts Python on the other end.
import assert from "node:assert/strict";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { connect as openChannel, listen as openListener } from "../src/channels.js";
import { ConnectError, DecodeError, TransportClosed, TransportError } from "../src/errors.js";
import { raiseError } from "../src/transports/base.js";
import { FifoReader, FifoSessions, FifoWriter, PIPE_BUF, pieces } from "../src/transports/fifo.js";
import { encode } from "../src/wire.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT;
const bytes = (text) => Buffer.from(text);

let dir;
let path;
let url;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bothways-fifo-"));
  path = join(dir, "pipe");
  url = `fifo:${path}`;
});

// What a test opens is closed after it, whatever happened: a test that fails with a reader or
// writer still open (a FIFO fd, a poll timer) must not keep the process (and CI) from exiting.
const leftovers = new Set();

/** channels.js's connect and listen, whose channels are closed after the test. */
const connect = async (...args) => track(await openChannel(...args));
const listen = async (...args) => track(await openListener(...args));

/** Marks `channel` to be closed after the current test; returns it. */
function track(channel) {
  leftovers.add(channel);
  return channel;
}

afterEach(async () => {
  const channels = [...leftovers].reverse();
  leftovers.clear();
  // Closed already by a passing test (a no-op then); a close that hangs is not waited for.
  await Promise.all(
    channels.map((channel) => {
      const closing = Promise.resolve()
        .then(() => channel.close())
        .catch(() => {});
      return Promise.race([closing, sleep(2 * S, undefined, { ref: false })]);
    }),
  );
  rmSync(dir, { recursive: true, force: true });
});

/** An onError policy that keeps what it is given. */
function collector() {
  const errors = [];
  const onError = (error) => errors.push(error);
  return { errors, onError };
}

async function all(channel) {
  const got = [];
  for await (const value of channel) {
    got.push(value);
  }
  return got;
}

async function sendAll(values, { batch = false } = {}) {
  const writer = await connect(url, { timeout: 10 * S });
  try {
    if (batch) {
      await writer.sendMany(values);
    } else {
      for (const value of values) {
        await writer.send(value);
      }
    }
  } finally {
    await writer.close();
  }
}

/** A writer without bothways: a blocking open (the reader exists), one write, close. */
function rawWrite(data) {
  const fd = openSync(path, "w");
  try {
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

async function waitFor(condition, ms = 10 * S) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    assert.ok(Date.now() < deadline, "timed out");
    await sleep(5);
  }
}

// ----------------------------------------------------------------------------------------------
// The core, without I/O

test("pieces cut between lines and keep every byte", () => {
  const lines = Array.from({ length: 200 }, (_, i) => encode({ i, pad: "x".repeat((i * 37) % 900) }));
  const data = bytes(lines.join(""));
  const cut = pieces(data);
  assert.deepEqual(Buffer.concat(cut), data);
  assert.ok(cut.every((p) => p.length <= PIPE_BUF && p[p.length - 1] === 0x0a));
  const long = "[" + "1,".repeat(5000) + "1]\n";
  assert.deepEqual(
    pieces(bytes(`{"a":1}\n${long}{"b":2}\n`)).map((p) => Buffer.from(p).toString()),
    ['{"a":1}\n', long, '{"b":2}\n'],
  );
  assert.equal(pieces(bytes("x".repeat(5000))).length, 1);
  assert.deepEqual(pieces(bytes("")), []);
});

test("sessions end each writer's stream on its own", () => {
  const { errors, onError } = collector();
  const sessions = new FifoSessions({ onError });
  sessions.feed(bytes('{"a": 1}\n{"a": 2}\n{"a":'));
  assert.equal(sessions.writerLeft(), true);
  sessions.reopened();
  sessions.feed(bytes('{"b": 1}\n'));
  assert.ok(sessions.ready());
  assert.deepEqual(sessions.popAll(), [{ a: 1 }, { a: 2 }]);
  assert.ok(sessions.ready());
  assert.deepEqual(sessions.pop(), { b: 1 });
  assert.ok(!sessions.ready());
  assert.deepEqual(
    errors.map((e) => [e.code, e.line, e.delivered]),
    [["TRUNCATED_LINE", 3, false]],
  );
  sessions.feed(bytes('{"oops"}\n'));
  assert.equal(errors.at(-1).line, 2);
});

test("sessions without reopen end with the first writer", () => {
  const sessions = new FifoSessions({ reopen: false });
  sessions.feed(bytes("1\n2\n"));
  assert.equal(sessions.writerLeft(), false);
  assert.ok(sessions.ended);
  assert.deepEqual(sessions.popAll(), [1, 2]);
  assert.ok(!sessions.ready());
});

test("sessions raise policy errors in their turn", () => {
  const sessions = new FifoSessions({ onError: raiseError });
  sessions.feed(bytes("1\n{bad\n2\n3\n[\n"));
  assert.equal(sessions.pop(), 1);
  assert.throws(() => sessions.pop(), (e) => e instanceof DecodeError && e.line === 2);
  assert.deepEqual(sessions.popAll(), [2, 3]);
  assert.throws(() => sessions.popAll(), (e) => e instanceof DecodeError && e.line === 5);
  assert.ok(!sessions.ready());
});

// ----------------------------------------------------------------------------------------------
// Real FIFOs

test("listen creates the FIFO 0600 and close removes it", async () => {
  const reader = await listen(url);
  assert.ok(reader instanceof FifoReader);
  const info = statSync(path);
  assert.ok(info.isFIFO());
  assert.equal(info.mode & 0o777, 0o600);
  assert.equal(reader.url, url);
  await reader.close();
  assert.throws(() => statSync(path), { code: "ENOENT" });
});

test("a path that is not a FIFO is a clear error", async () => {
  writeFileSync(path, "data\n");
  await assert.rejects(listen(url), (error) => {
    assert.ok(error instanceof TransportError);
    assert.equal(error.message, `${url}: ${path} exists and is not a FIFO (it is a regular file)`);
    return true;
  });
  await assert.rejects(connect(url, { timeout: 1000 }), (error) => {
    assert.ok(error instanceof ConnectError);
    assert.match(error.message, /exists and is not a FIFO \(it is a regular file\)/);
    return true;
  });
  rmSync(path);
  mkdirSync(path);
  await assert.rejects(listen(url), /is not a FIFO \(it is a directory\)/);
});

test("connect without a reader gives up naming the path", async () => {
  const started = Date.now();
  await assert.rejects(connect(url, { timeout: 300 }), (error) => {
    assert.ok(error instanceof ConnectError);
    assert.equal(error.message, `${url}: no FIFO at ${path} within 0.3 s (is the reader running?)`);
    assert.equal(error.url, url);
    return true;
  });
  assert.ok(Date.now() - started < 3 * S);
  const reader = await listen(url);
  await reader.close(); // removes it: make one that stays, without a reader
  const { execFileSync } = await import("node:child_process");
  execFileSync("mkfifo", [path]);
  await assert.rejects(connect(url, { timeout: 200 }), /no reader opened the FIFO .*pipe within 0.2 s/);
});

test("connect can be aborted", async () => {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(connect(url, { signal: controller.signal }), /aborted while waiting for a reader/);
});

test("connect waits for the reader", async () => {
  const reading = (async () => {
    await sleep(300);
    const reader = await listen(url, { reopen: false });
    try {
      return await all(reader);
    } finally {
      await reader.close();
    }
  })();
  const writer = await connect(url, { timeout: 10 * S });
  await writer.send({ hello: "fifo" });
  await writer.close();
  assert.deepEqual(await reading, [{ hello: "fifo" }]);
});

test("ten thousand messages in order", async () => {
  const values = Array.from({ length: 10000 }, (_, i) => ({ seq: i, text: "é".repeat(i % 7) }));
  const reader = await listen(url, { reopen: false });
  const sending = sendAll(values);
  assert.deepEqual(await all(reader), values);
  await sending;
  await reader.close();
});

test("ten thousand messages in batches, received in batches", async () => {
  const values = Array.from({ length: 10000 }, (_, i) => ({ seq: i }));
  const reader = await listen(url, { reopen: false });
  const sending = sendAll(values, { batch: true });
  const got = [];
  for (;;) {
    try {
      got.push(...(await reader.receiveMany()));
    } catch (error) {
      assert.ok(error instanceof TransportClosed);
      break;
    }
  }
  assert.deepEqual(got, values);
  await sending;
  await reader.close();
});

test("a ten-megabyte message", async () => {
  const big = { blob: "z".repeat(10 * 1024 * 1024), after: true };
  const reader = await listen(url, { reopen: false });
  const sending = sendAll([1, big, 2]);
  assert.deepEqual(await all(reader), [1, big, 2]);
  await sending;
  await reader.close();
});

test("the writer closing ends a reader without reopen", async () => {
  const reader = await listen(url, { reopen: false });
  await sendAll(["only"]);
  assert.equal(await reader.receive(), "only");
  await assert.rejects(reader.receive(), (e) => e instanceof TransportClosed && /writer closed/.test(e.message));
  await reader.close();
});

test("the reader closing gives the writer TransportClosed", async () => {
  const reader = await listen(url);
  const writer = await connect(url, { timeout: 10 * S });
  await writer.send(1);
  assert.equal(await reader.receive(), 1);
  await reader.close();
  await assert.rejects(
    (async () => {
      for (let i = 0; i < 100000; i++) {
        await writer.send("x".repeat(100));
      }
    })(),
    (e) => e instanceof TransportClosed && /the reader closed the FIFO/.test(e.message),
  );
  await writer.close();
});

test("messages keep flowing across writers that die mid-line", async () => {
  const { errors, onError } = collector();
  const reader = await listen(url, { onError });
  const got = [];
  const reading = (async () => {
    for await (const message of reader) {
      got.push(message);
      if (got.length === 300) break;
    }
  })();
  for (let n = 0; n < 3; n++) {
    const lines = Array.from({ length: 100 }, (_, i) => encode({ writer: n, i })).join("");
    if (n < 2) {
      rawWrite(lines + `{"writer": ${n}, "cut`);
      await waitFor(() => errors.length === n + 1);
    } else {
      rawWrite(lines);
    }
  }
  await reading;
  await reader.close();
  const expected = [];
  for (let n = 0; n < 3; n++) for (let i = 0; i < 100; i++) expected.push({ writer: n, i });
  assert.deepEqual(got, expected);
  assert.deepEqual(
    errors.map((e) => [e.code, e.line, e.delivered]),
    [
      ["TRUNCATED_LINE", 101, false],
      ["TRUNCATED_LINE", 101, false],
    ],
  );
});

test("bad lines are reported and the neighbours kept", async () => {
  const { errors, onError } = collector();
  const reader = await listen(url, { reopen: false, onError, maxLine: 100 });
  rawWrite('{"a": 1}\n{oops\n"' + "y".repeat(500) + '"\n{"a": 2}\n');
  assert.deepEqual(await all(reader), [{ a: 1 }, { a: 2 }]);
  await reader.close();
  assert.deepEqual(
    errors.map((e) => [e.code, e.line]),
    [
      ["DECODE_ERROR", 2],
      ["FRAME_TOO_LARGE", 3],
    ],
  );
});

test("raiseError throws in its turn and loses nothing", async () => {
  const reader = await listen(url, { onError: raiseError, reopen: false });
  rawWrite("1\n2\n{oops\n3\n");
  assert.equal(await reader.receive(), 1);
  assert.deepEqual(await reader.receiveMany(), [2]);
  await assert.rejects(reader.receiveMany(), (e) => e instanceof DecodeError && e.line === 3);
  assert.deepEqual(await all(reader), [3]);
  await reader.close();
});

test("concurrent writers never mix lines up to PIPE_BUF", async () => {
  const pad = "w".repeat(3000);
  const { errors, onError } = collector();
  const reader = await listen(url, { onError });
  const writers = await Promise.all([0, 1, 2, 3].map(() => connect(url, { timeout: 10 * S })));
  const sending = writers.map(async (writer, n) => {
    for (let i = 0; i < 300; i += 10) {
      await writer.sendMany(Array.from({ length: 10 }, (_, j) => ({ w: n, i: i + j, pad })));
    }
    await writer.close();
  });
  const got = [];
  for await (const message of reader) {
    got.push(message);
    if (got.length === 1200) break;
  }
  await Promise.all(sending);
  await reader.close();
  assert.deepEqual(errors, []);
  for (let n = 0; n < 4; n++) {
    assert.deepEqual(
      got.filter((m) => m.w === n).map((m) => m.i),
      Array.from({ length: 300 }, (_, i) => i),
    );
  }
});

test("a writer waits while the reader does not read", async () => {
  const reader = await listen(url, { reopen: false });
  let done = false;
  const values = Array.from({ length: 100 }, (_, i) => ({ i, pad: "p".repeat(10000) }));
  const flooding = sendAll(values).then(() => {
    done = true;
  });
  await sleep(500);
  assert.equal(done, false); // 1 MB: held back by the pipe and the reader's read-ahead limit
  assert.equal((await all(reader)).length, 100);
  await flooding;
  assert.equal(done, true);
  await reader.close();
});

test("one direction only", async () => {
  const reader = await listen(url);
  const writer = await connect(url, { timeout: 10 * S });
  assert.ok(writer instanceof FifoWriter);
  await assert.rejects(reader.send(1), { message: `${url}: the reader end only receives` });
  await assert.rejects(reader.sendMany([1]), { message: `${url}: the reader end only receives` });
  await assert.rejects(writer.receive(), { message: `${url}: the writer end only sends` });
  await assert.rejects(reader.accept(), /no connections to accept/);
  await writer.close();
  await reader.close();
});

test("close twice, use after close, close wakes a waiting receive", async () => {
  const reader = await listen(url);
  const writer = await connect(url, { timeout: 10 * S });
  await writer.close();
  await writer.close();
  await assert.rejects(writer.send(1), (e) => e instanceof TransportClosed && /writer is closed/.test(e.message));
  const waiting = reader.receive();
  await sleep(50);
  await reader.close();
  await reader.close();
  await assert.rejects(waiting, TransportClosed);
  await assert.rejects(reader.receive(), TransportClosed);
});

test("an abort signal closes the reader", async () => {
  const controller = new AbortController();
  const reader = await listen(url, { signal: controller.signal });
  const waiting = reader.receive();
  controller.abort();
  await assert.rejects(waiting, TransportClosed);
});

test("unknown options are type errors", async () => {
  await assert.rejects(listen(url, { poll: 1 }), TypeError);
  await assert.rejects(connect(url, { reopen: false }), TypeError);
  await assert.rejects(connect(url, { timeout: 0 }), RangeError);
});
