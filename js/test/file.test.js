// file: channels in one Node process: the sans-I/O Tail, then real files, rotation and resuming.
// Mirrors tests/unit/test_file.py; tests/cross/test_fifo_file_node.py holds the restart tests.
import assert from "node:assert/strict";
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { connect, listen } from "../src/channels.js";
import { DecodeError, TransportClosed, TransportError } from "../src/errors.js";
import { raiseError } from "../src/transports/base.js";
import {
  FileReader,
  FileWriter,
  HEAD,
  LOCATE,
  READ,
  TRUNCATED,
  Tail,
  WAIT,
  fingerprint,
} from "../src/transports/file.js";
import { encode } from "../src/wire.js";

const bytes = (text) => Buffer.from(text);
const lines = (...values) => values.map((v) => encode(v)).join("");

let dir;
let path;
let url;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bothways-file-"));
  path = join(dir, "log");
  url = `file:${path}`;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function collector() {
  const errors = [];
  return { errors, onError: (error) => errors.push(error) };
}

async function all(channel) {
  const got = [];
  for await (const value of channel) {
    got.push(value);
  }
  return got;
}

async function drain(options = {}) {
  const reader = await listen(url, { follow: false, ...options });
  try {
    return [await all(reader), reader.position];
  } finally {
    await reader.close();
  }
}

// ----------------------------------------------------------------------------------------------
// The core, without I/O

test("fingerprint is FNV-1a 32, as in Python", () => {
  assert.equal(fingerprint(bytes("")), "811c9dc5");
  assert.equal(fingerprint(bytes("a")), "e40c292c");
  assert.equal(fingerprint(bytes("foobar")), "bf9cf968");
});

test("the tail delivers complete lines with their positions", () => {
  const tail = new Tail("/log");
  assert.deepEqual(tail.start([["7", bytes("")]]), [0, 0]);
  tail.open("7", 0, bytes(""));
  assert.deepEqual(tail.position, { inode: "7", head: fingerprint(bytes("")), offset: 0 });
  assert.equal(tail.step("7", 30), READ);
  tail.feed(bytes('{"a":1}\n\n{"a":2}\n{"a":'));
  assert.equal(tail.offset, 22);
  assert.deepEqual(tail.pop(), { a: 1 });
  assert.deepEqual(tail.position, { inode: "7", head: fingerprint(bytes('{"a":1}\n')), offset: 8 });
  assert.deepEqual(tail.pop(), { a: 2 });
  assert.equal(tail.position.offset, 17);
  assert.ok(!tail.ready());
  tail.feed(bytes("3}\n"));
  assert.deepEqual(tail.popAll(), [{ a: 3 }]);
  const head = fingerprint(bytes('{"a":1}\n\n{"a":2}\n{"a":3}\n'));
  assert.deepEqual(tail.position, { inode: "7", head, offset: 25 });
});

test("the head covers the first 64 bytes only", () => {
  const tail = new Tail("/log");
  tail.open("9", 0, bytes(""));
  const data = bytes(lines(...Array.from({ length: 10 }, (_, n) => ({ n, pad: "p".repeat(20) }))));
  tail.feed(data);
  tail.popAll();
  const head = fingerprint(data.subarray(0, HEAD));
  assert.deepEqual(tail.position, { inode: "9", head, offset: data.length });
});

test("tail steps", () => {
  const tail = new Tail("/log");
  tail.open("7", 10, bytes("0123456789"));
  assert.equal(tail.step("7", 10), WAIT);
  assert.equal(tail.step("7", 11), READ);
  assert.equal(tail.step("8", 11), READ);
  assert.equal(tail.step("8", 10), LOCATE);
  assert.equal(tail.step(null, 10), LOCATE);
  assert.equal(tail.step("7", 4), TRUNCATED);
});

test("truncation starts the file again", () => {
  const { errors, onError } = collector();
  const tail = new Tail("/log", { onError });
  tail.open("7", 0, bytes(""));
  tail.feed(bytes("1\n2\n{"));
  assert.deepEqual(tail.popAll(), [1, 2]);
  tail.truncated();
  assert.equal(tail.offset, 0);
  tail.feed(bytes("3\n"));
  assert.equal(tail.pop(), 3);
  assert.deepEqual(tail.position, { inode: "7", head: fingerprint(bytes("3\n")), offset: 2 });
  assert.deepEqual(
    errors.map((e) => [e.code, e.delivered]),
    [["TRUNCATED_LINE", false]],
  );
});

test("the tail locates the next file", () => {
  const tail = new Tail("/log");
  tail.open("5", 0, bytes(""));
  assert.equal(tail.locate(["6", "5"], false), 0);
  assert.equal(tail.locate(["9", "8", "7", "5"], false), 2);
  assert.equal(tail.locate([null, "5"], false), null);
  assert.equal(tail.locate(["9", "8", "7"], true), 2);
  assert.equal(tail.locate([null], true), null);
  assert.equal(tail.locate(["9", "8"], false), null);
  assert.equal(tail.locate(["9", "8"], false), null);
  assert.equal(tail.locate(["9", "8"], false), 0);
});

test("start finds a position among the rotated files", () => {
  const head = bytes('{"seq":0}\n{"seq":1}\n');
  const position = { inode: "5", head: fingerprint(head.subarray(0, 10)), offset: 10 };
  const tail = new Tail("/log", { position });
  assert.deepEqual(tail.position, position);
  assert.deepEqual(
    tail.start([
      ["8", bytes("x")],
      ["7", bytes("y")],
      ["5", head],
    ]),
    [2, 10],
  );
  tail.open("5", 10, head.subarray(0, 10));
  tail.feed(head.subarray(10));
  assert.deepEqual(tail.pop(), { seq: 1 });
});

test("start refuses a reused inode and falls back to the oldest file", () => {
  const position = { inode: "5", head: fingerprint(bytes('{"old":1}\n')), offset: 10 };
  const tail = new Tail("/log", { position });
  const candidates = [
    ["5", bytes('{"new":1}\n')],
    ["4", bytes("...")],
    ["3", bytes("...")],
  ];
  assert.equal(tail.start(candidates), null);
  assert.equal(tail.start(candidates), null);
  assert.deepEqual(tail.start(candidates), [2, 0]);
  assert.equal(tail.startMisses, 3);
});

test("a partial line left by a rotation is reported, not delivered", () => {
  const { errors, onError } = collector();
  const tail = new Tail("/log", { onError });
  tail.open("5", 0, bytes(""));
  tail.feed(bytes("1\n{cut"));
  tail.open("6", 0, bytes(""));
  tail.feed(bytes("2\n"));
  assert.equal(tail.pop(), 1);
  assert.deepEqual(tail.position, { inode: "5", head: fingerprint(bytes("1\n")), offset: 2 });
  assert.deepEqual(tail.popAll(), [2]);
  assert.deepEqual(tail.position, { inode: "6", head: fingerprint(bytes("2\n")), offset: 2 });
  assert.deepEqual(
    errors.map((e) => [e.code, e.line]),
    [["TRUNCATED_LINE", 2]],
  );
  tail.feed(bytes("{partial"));
  tail.finish();
  assert.match(errors.at(-1).message, /ends in the middle of a line/);
});

test("policy errors are thrown in their turn", () => {
  const tail = new Tail("/log", { onError: raiseError });
  tail.open("5", 0, bytes(""));
  tail.feed(bytes("1\n{bad\n2\n"));
  assert.equal(tail.pop(), 1);
  assert.throws(() => tail.popAll(), (e) => e instanceof DecodeError && e.line === 2);
  assert.deepEqual(tail.popAll(), [2]);
});

test("over-long lines are reported without being kept", () => {
  const { errors, onError } = collector();
  const tail = new Tail("/log", { maxLine: 50, onError });
  tail.open("5", 0, bytes(""));
  tail.feed(bytes('1\n"' + "x".repeat(100)));
  assert.deepEqual(
    errors.map((e) => [e.code, e.line]),
    [["FRAME_TOO_LARGE", 2]],
  );
  tail.feed(bytes("x".repeat(100) + '"\n2\n'));
  assert.deepEqual(tail.popAll(), [1, 2]);
  assert.equal(tail.position.offset, 207);
  tail.feed(bytes('"' + "y".repeat(100)));
  tail.finish();
  assert.equal(errors.length, 2);
});

test("a bad position is refused", () => {
  assert.throws(() => new Tail("/log", { position: { inode: 5, head: "x", offset: 1 } }), RangeError);
  assert.throws(() => new Tail("/log", { position: { inode: "5", head: "x", offset: -1 } }), RangeError);
});

// ----------------------------------------------------------------------------------------------
// Real files

test("the writer creates the file 0600 and appends", async () => {
  writeFileSync(path, lines("before"));
  chmodSync(path, 0o644);
  const writer = await connect(url);
  assert.ok(writer instanceof FileWriter);
  await writer.send({ a: 1 });
  await writer.sendMany([2, 3]);
  await writer.close();
  assert.equal(readFileSync(path, "utf8"), lines("before", { a: 1 }, 2, 3));
  const other = join(dir, "new");
  await (await connect(`file:${other}`)).close();
  assert.equal(statSync(other).mode & 0o777, 0o600);
});

test("ten thousand messages in order while written", async () => {
  const values = Array.from({ length: 10000 }, (_, seq) => ({ seq, text: "ü".repeat(seq % 5) }));
  const writing = (async () => {
    const writer = await connect(url);
    for (let i = 0; i < 10000; i += 100) {
      await writer.sendMany(values.slice(i, i + 50));
      for (const value of values.slice(i + 50, i + 100)) {
        await writer.send(value);
      }
    }
    await writer.close();
  })();
  const reader = await listen(url, { poll: 10 });
  const got = [];
  const offsets = [];
  for await (const message of reader) {
    got.push(message);
    offsets.push(reader.position.offset);
    if (got.length === 10000) break;
  }
  await reader.close();
  await writing;
  assert.deepEqual(got, values);
  assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]));
});

test("a ten-megabyte message", async () => {
  const big = { blob: "b".repeat(10 * 1024 * 1024) };
  const writer = await connect(url);
  await writer.sendMany([1, big, 2]);
  await writer.close();
  assert.deepEqual((await drain())[0], [1, big, 2]);
});

test("a partial line waits for its newline", async () => {
  writeFileSync(path, '{"a": 1}\n{"a": ');
  const reader = await listen(url, { poll: 10 });
  assert.deepEqual(await reader.receive(), { a: 1 });
  const second = reader.receive();
  let done = false;
  second.then(() => (done = true));
  await sleep(200);
  assert.equal(done, false);
  appendFileSync(path, "2}\n");
  assert.deepEqual(await second, { a: 2 });
  await reader.close();
});

test("follow: false ends at the end and reports a partial line", async () => {
  writeFileSync(path, "1\n2\n[3");
  const { errors, onError } = collector();
  const reader = await listen(url, { follow: false, onError });
  assert.deepEqual(await all(reader), [1, 2]);
  await assert.rejects(reader.receive(), (e) => e instanceof TransportClosed && /end of file/.test(e.message));
  assert.equal(reader.position.offset, 4);
  await reader.close();
  assert.deepEqual(
    errors.map((e) => [e.code, e.line, e.delivered]),
    [["TRUNCATED_LINE", 3, false]],
  );
});

test("follow: false on a missing file ends", async () => {
  assert.deepEqual((await drain({ poll: 10 }))[0], []);
});

test("the reader waits for the file to appear", async () => {
  const reader = await listen(url, { poll: 10 });
  setTimeout(() => writeFileSync(path, lines("late")), 100);
  assert.equal(await reader.receive(), "late");
  await reader.close();
});

test("bad lines are reported and the neighbours kept", async () => {
  writeFileSync(path, '{"a": 1}\n{oops\n"' + "z".repeat(500) + '"\n{"a": 2}\n');
  const { errors, onError } = collector();
  assert.deepEqual((await drain({ maxLine: 100, onError }))[0], [{ a: 1 }, { a: 2 }]);
  assert.deepEqual(
    errors.map((e) => [e.code, e.line]),
    [
      ["DECODE_ERROR", 2],
      ["FRAME_TOO_LARGE", 3],
    ],
  );
});

test("rotation by the writer keeps the newest files", async () => {
  const writer = await connect(url, { maxBytes: 100, keep: 3 });
  for (let seq = 0; seq < 50; seq++) {
    await writer.send({ seq });
  }
  await writer.close();
  assert.deepEqual(readdirSync(dir).sort(), ["log", "log.1", "log.2", "log.3"]);
  const kept = ["log.3", "log.2", "log.1", "log"].map((n) => readFileSync(join(dir, n), "utf8")).join("");
  const seqs = kept
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l).seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: 50 - seqs[0] }, (_, i) => seqs[0] + i),
  );
});

test("the reader follows rotations", async () => {
  /** @type {() => void} */
  let following = () => {};
  const first = new Promise((resolve) => (following = () => resolve(undefined)));
  const writing = (async () => {
    const writer = await connect(url, { maxBytes: 2000, keep: 100 });
    for (let seq = 0; seq < 3000; seq++) {
      await writer.send({ seq });
      if (seq === 0) {
        await first; // (a reader that starts after a rotation begins at the newest file)
      }
    }
    await writer.close();
  })();
  await sleep(5); // the file exists (the reader starts at its top)
  const reader = await listen(url, { poll: 10 });
  const got = [];
  for await (const message of reader) {
    got.push(message.seq);
    following();
    if (message.seq === 2999) break;
  }
  await reader.close();
  await writing;
  assert.deepEqual(got.slice(0, 5), [0, 1, 2, 3, 4]);
  assert.deepEqual(
    got,
    Array.from({ length: 3000 }, (_, i) => i),
  );
});

test("rotation by rename finishes the old file first", async () => {
  writeFileSync(path, lines(1, 2));
  const reader = await listen(url, { poll: 10 });
  assert.equal(await reader.receive(), 1);
  appendFileSync(path, lines(3));
  renameSync(path, `${path}.1`);
  writeFileSync(path, lines(4));
  assert.deepEqual([await reader.receive(), await reader.receive(), await reader.receive()], [2, 3, 4]);
  await reader.close();
});

const openFds = () => readdirSync("/proc/self/fd").length;

for (const when of ["inside the switch", "while the switch awaits the file system"]) {
  test(`close() ${when} reads and opens nothing more, and leaks no handle`, async () => {
    // Mirrors test_close_from_another_thread_inside_a_rotation_switch: the reader is between
    // finding the next file (Tail.locate) and opening it when close() comes.
    writeFileSync(path, lines(1));
    const before = openFds();
    const reader = await listen(url, { poll: 5 });
    const locate = Tail.prototype.locate;
    let closing = null;
    Tail.prototype.locate = function (inodes, deleted) {
      const index = locate.call(this, inodes, deleted);
      if (index !== null && closing === null) {
        if (when === "inside the switch") {
          closing = reader.close();
        } else {
          closing = new Promise((resolve) => setImmediate(() => resolve(reader.close())));
        }
      }
      return index;
    };
    try {
      const got = [];
      const reading = (async () => {
        for await (const message of reader) {
          got.push(message);
          if (message === 1) {
            renameSync(path, `${path}.1`);
            writeFileSync(path, lines(2));
          }
        }
      })();
      await reading; // ends cleanly: TransportClosed ends an iteration
      await closing;
      assert.deepEqual(got, [1]); // message 2 was neither read nor handed out
      await assert.rejects(reader.receive(), TransportClosed);
      assert.ok(openFds() <= before, `${openFds()} descriptors open, ${before} before`);
    } finally {
      Tail.prototype.locate = locate;
      await reader.close();
    }
  });
}

test("a file renamed out of the scheme gives way to the path", async () => {
  writeFileSync(path, lines(1));
  const reader = await listen(url, { poll: 10 });
  assert.equal(await reader.receive(), 1);
  renameSync(path, `${path}-20240101`);
  writeFileSync(path, lines(2));
  assert.equal(await reader.receive(), 2);
  await reader.close();
});

test("copytruncate starts again from the top", async () => {
  writeFileSync(path, lines(...Array.from({ length: 100 }, (_, i) => i)));
  const reader = await listen(url, { poll: 10 });
  for (let i = 0; i < 100; i++) {
    assert.equal(await reader.receive(), i);
  }
  truncateSync(path, 0);
  appendFileSync(path, lines("after"));
  assert.equal(await reader.receive(), "after");
  await reader.close();
});

test("a deleted file gives way to the new one", async () => {
  writeFileSync(path, lines(1));
  const reader = await listen(url, { poll: 10 });
  assert.equal(await reader.receive(), 1);
  unlinkSync(path);
  writeFileSync(path, lines(2));
  assert.equal(await reader.receive(), 2);
  await reader.close();
});

test("state resumes after the last message taken", async () => {
  const state = join(dir, "state");
  writeFileSync(path, lines(...Array.from({ length: 10 }, (_, i) => i)));
  let reader = await listen(url, { state, follow: false });
  assert.deepEqual([await reader.receive(), await reader.receive(), await reader.receive()], [0, 1, 2]);
  await reader.close();
  assert.ok(!existsSync(`${state}.tmp`));
  reader = await listen(url, { state, follow: false, saveEvery: 0 }); // 0: at every request
  for await (const message of reader) {
    if (message === 6) break;
  }
  // A crash now would leave the state as it is: the position of 5, taken when 6 was asked for.
  const atCrash = readFileSync(state);
  await reader.close();
  writeFileSync(state, atCrash);
  reader = await listen(`${url}?state=${state}`, { follow: false });
  assert.deepEqual(await all(reader), [6, 7, 8, 9]);
  await reader.close();
});

const WINDOW = 50; // saveEvery in the resume tests: short, so that a few saves happen

/** The position in a state file, or null when there is none yet. */
const saved = (state) => (existsSync(state) ? JSON.parse(readFileSync(state, "utf8")) : null);

test("close saves the exact position", async () => {
  const state = join(dir, "state");
  writeFileSync(path, lines(...Array.from({ length: 10 }, (_, i) => i)));
  let reader = await listen(url, { state, follow: false, saveEvery: 3_600_000 });
  assert.deepEqual([await reader.receive(), await reader.receive(), await reader.receive()], [0, 1, 2]);
  assert.equal(saved(state), null); // not due yet, and never caught up
  const atClose = reader.position;
  await reader.close();
  assert.deepEqual(saved(state), atClose); // the last message handed out is taken as done on close
  reader = await listen(url, { state, follow: false, saveEvery: 3_600_000 });
  assert.deepEqual(await reader.receiveMany(), [3, 4, 5, 6, 7, 8, 9]);
  await reader.close();
  assert.deepEqual(await drain({ state }), [[], saved(state)]);
});

test("state saves are few", async () => {
  const state = join(dir, "state");
  writeFileSync(path, lines(...Array.from({ length: 10_000 }, (_, i) => i)));
  // Each save writes another position: count the changes seen after each message.
  let changes = 0;
  let last = null;
  const look = () => {
    const text = existsSync(state) ? readFileSync(state, "utf8") : null;
    changes += text !== last ? 1 : 0;
    last = text;
  };
  const started = performance.now();
  let reader = await listen(url, { state, follow: false }); // saveEvery: 200 ms
  let n = 0;
  for await (const message of reader) {
    assert.equal(message, n++);
    look();
  }
  await reader.close();
  look();
  const elapsed = performance.now() - started;
  assert.equal(n, 10_000);
  assert.ok(changes <= elapsed / 200 + 2, `${changes} saves in ${elapsed} ms`); // the interval's, the end's
  assert.deepEqual(saved(state), reader.position);
  unlinkSync(state);
  last = null;
  changes = 0;
  reader = await listen(url, { state, follow: false, saveEvery: 0 }); // the count sees them all
  for (let i = 0; i < 1_000; i++) {
    assert.equal(await reader.receive(), i);
    look();
  }
  await reader.close();
  look();
  assert.equal(changes, 1_000); // 999 when asked for more, then the last one on close
});

/**
 * Nothing lost, and what comes again was handed out in the WINDOW before the last request
 * (`asked`), or is the message in hand (`last`).
 */
function checkWindow(rest, handed, asked, last, total) {
  const first = rest[0];
  const expected = Array.from({ length: total - first }, (_, i) => first + i);
  assert.deepEqual(rest, expected); // in order, nothing lost
  assert.ok(first > 0 && first <= last, `resumed at ${first}`); // saved, and never the one in hand
  for (let i = first; i < last; i++) {
    const before = asked - handed[i];
    assert.ok(before <= WINDOW, `${i} was handed out ${before} ms before the last request`);
  }
}

for (const how of ["receive", "iteration"]) {
  test(`a reader abandoned mid-file resumes within the window (${how})`, async () => {
    const state = join(dir, "state");
    writeFileSync(path, lines(...Array.from({ length: 400 }, (_, i) => i)));
    const reader = await listen(url, { state, follow: false, saveEvery: WINDOW });
    const handed = [];
    const iterator = reader[Symbol.asyncIterator]();
    const get = how === "receive" ? () => reader.receive() : async () => (await iterator.next()).value;
    let asked;
    for (;;) {
      asked = performance.now();
      const message = await get();
      handed[message] = performance.now();
      if (message === 299) break;
      await sleep(2); // work: the stream takes several windows
    }
    // A crash now leaves the state file as it is (close() would save 299).
    const atCrash = existsSync(state) ? readFileSync(state) : null;
    await reader.close();
    assert.ok(atCrash !== null);
    writeFileSync(state, atCrash);
    const [rest] = await drain({ state });
    checkWindow(rest, handed, asked, 299, 400);
  });
}

test("a state file must hold a position", async () => {
  const state = join(dir, "state");
  writeFileSync(state, "[1, 2]");
  await assert.rejects(listen(url, { state }), /holds no position/);
});

test("position resumes exactly after a message across rotations", async () => {
  const writer = await connect(url, { maxBytes: 60, keep: 50 });
  for (let seq = 0; seq < 10; seq++) await writer.send({ seq });
  const [messages, position] = await drain();
  for (let seq = 10; seq < 40; seq++) await writer.send({ seq });
  await writer.close();
  const last = messages.at(-1).seq;
  assert.ok(last < 10);
  assert.deepEqual(
    (await drain({ position }))[0].map((m) => m.seq),
    Array.from({ length: 39 - last }, (_, i) => last + 1 + i),
  );
});

test("a position of a file rotated out gives the oldest file", async () => {
  const writer = await connect(url, { maxBytes: 30, keep: 2 });
  await writer.send({ seq: 0 });
  const [, position] = await drain();
  for (let seq = 1; seq < 20; seq++) await writer.send({ seq });
  await writer.close();
  const got = (await drain({ position, poll: 10 }))[0].map((m) => m.seq);
  assert.ok(got[0] > 1);
  assert.deepEqual(
    got,
    Array.from({ length: 20 - got[0] }, (_, i) => got[0] + i),
  );
});

test("one direction only", async () => {
  const writer = await connect(url);
  const reader = await listen(url);
  assert.ok(reader instanceof FileReader);
  await assert.rejects(reader.send(1), { message: `${url}: the reader end only receives` });
  await assert.rejects(writer.receive(), { message: `${url}: the writer end only sends` });
  await assert.rejects(reader.accept(), /no connections to accept/);
  await writer.close();
  await reader.close();
});

test("close twice, use after close, close wakes a waiting receive", async () => {
  const writer = await connect(url);
  await writer.close();
  await writer.close();
  await assert.rejects(writer.send(1), TransportClosed);
  const reader = await listen(url, { poll: 10 });
  const waiting = reader.receive();
  await sleep(50);
  await reader.close();
  await reader.close();
  await assert.rejects(waiting, TransportClosed);
  await assert.rejects(reader.receive(), TransportClosed);
});

test("options", async () => {
  await assert.rejects(listen(url, { maxBytes: 10 }), TypeError);
  await assert.rejects(connect(url, { follow: false }), TypeError);
  await assert.rejects(listen(url, { poll: 0 }), RangeError);
  await assert.rejects(connect(url, { maxBytes: 0 }), RangeError);
  await (await connect(`${url}?state=/x&poll=0.5`)).close(); // the reader's URL options are fine
  await assert.rejects(
    connect(`file:${dir}/missing-dir/log`),
    (e) => e instanceof TransportError && /for appending/.test(e.message),
  );
});
