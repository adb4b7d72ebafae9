// The telemetry app's JavaScript side: toReading against spec/vectors/readings.json (the cases
// tests/unit/test_readings.py runs too), the Outbox, and the programs bin/sensor.mjs and
// bin/listen.mjs run as real processes (127.0.0.1, free ports only). tests/cross/
// test_telemetry_node.py pairs them with Python listeners and sensors.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { listen } from "../src/channels.js";
import { BothwaysError } from "../src/errors.js";
import {
  FIELDS,
  InvalidReading,
  MAX_SEQ,
  Outbox,
  Rejected,
  Sender,
  toReading,
} from "../src/telemetry.js";
import { same } from "./support.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const SENSOR = join(ROOT, "js", "bin", "sensor.mjs");
const LISTEN = join(ROOT, "js", "bin", "listen.mjs");
const { description, cases: CASES } = JSON.parse(readFileSync(join(ROOT, "spec", "vectors", "readings.json"), "utf8"));
const T = { timeout: 30 * S };

const scratch = mkdtempSync(join(tmpdir(), "bothways-telemetry-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

// ----------------------------------------------------------------------------------------------
// Running the programs

/**
 * A running program: its stdout and stderr collected, its exit awaited (and killed at the end).
 */
class Program {
  stdout = "";
  stderr = "";

  /**
   * @param {string} script
   * @param {string[]} args
   */
  constructor(script, args) {
    this.proc = spawn(process.execPath, [script, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    this.proc.stdout.setEncoding("utf8").on("data", (text) => (this.stdout += text));
    this.proc.stderr.setEncoding("utf8").on("data", (text) => (this.stderr += text));
    this.exited = once(this.proc, "close").then(([code, signal]) => ({ code, signal }));
  }

  /** @returns {unknown[]} the stdout lines, parsed. */
  get lines() {
    return this.stdout
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line));
  }

  /**
   * Waits until stderr matches `pattern`.
   * @param {RegExp} pattern
   * @param {number} [ms]
   * @returns {Promise<RegExpMatchArray>}
   */
  async waitErr(pattern, ms = 10 * S) {
    const deadline = performance.now() + ms;
    for (;;) {
      const match = this.stderr.match(pattern);
      if (match) return match;
      assert.ok(performance.now() < deadline, `no ${pattern} on stderr within ${ms} ms:\n${this.stderr}`);
      await sleep(10);
    }
  }

  /**
   * The exit, within `ms`.
   * @param {number} [ms]
   * @returns {Promise<{code: number | null, signal: string | null}>}
   */
  async exit(ms = 20 * S) {
    const late = sleep(ms, null, { ref: false }); // (unref: the child keeps the loop alive)
    const result = await Promise.race([this.exited, late]);
    if (result === null) {
      this.proc.kill("SIGKILL");
      assert.fail(`still running after ${ms} ms; stderr:\n${this.stderr}`);
    }
    return result;
  }
}

const sensor = (...args) => new Program(SENSOR, args);
const listener = (...args) => new Program(LISTEN, args);

/**
 * Takes every message a bothways listener receives, until `stop()`.
 * @param {import("../src/transports/base.js").Listener} server
 * @param {unknown[]} into
 */
async function drain(server, into) {
  try {
    for (;;) into.push(...(await server.receiveMany()));
  } catch {
    // closed
  }
}

/**
 * The set of `seq`s in `readings`, after checking that each is a reading.
 * @param {unknown[]} readings
 * @returns {Set<number>}
 */
function seqsOf(readings) {
  const seqs = new Set();
  for (const value of readings) {
    const reading = toReading(value, { source: "test", now: 0, seqs: {} });
    seqs.add(reading.seq);
  }
  return seqs;
}

/**
 * Asserts that `seqs` holds every number from `first` to `first + count - 1`.
 * @param {Set<number>} seqs
 * @param {number} count
 */
function assertAll(seqs, count) {
  const first = Math.min(...seqs);
  const missing = [];
  for (let i = 0; i < count; i++) {
    if (!seqs.has(first + i)) missing.push(first + i);
  }
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${count} seqs missing`);
  assert.equal(seqs.size, count);
}

// ----------------------------------------------------------------------------------------------
// toReading: the vectors

describe("toReading: spec/vectors/readings.json", () => {
  test("the vectors cover both outcomes", () => {
    assert.match(description, /to_reading/);
    assert.ok(CASES.filter((c) => "reading" in c).length >= 8);
    assert.ok(CASES.filter((c) => "invalid" in c).length >= 15);
  });

  for (const kind of ["object", "Map"]) {
    for (const c of CASES) {
      test(`${c.name} (seqs as ${kind === "Map" ? "a Map" : "an object"})`, () => {
        const given = structuredClone(c.seqs);
        const seqs = kind === "Map" ? new Map(Object.entries(given)) : given;
        const plain = () => (kind === "Map" ? Object.fromEntries(seqs) : seqs);
        if ("invalid" in c) {
          assert.throws(
            () => toReading(c.value, { source: c.source, now: c.now, seqs }),
            (error) => {
              assert.ok(error instanceof InvalidReading && error instanceof BothwaysError);
              assert.equal(error.reason, c.invalid);
              assert.equal(error.source, c.source);
              assert.deepEqual(error.toJson(), {
                code: "INVALID_READING",
                message: `${c.source}: ${c.invalid}`,
                reason: c.invalid,
                source: c.source,
              });
              return true;
            },
          );
          assert.deepEqual(plain(), c.seqs);
          return;
        }
        const reading = toReading(c.value, { source: c.source, now: c.now, seqs });
        assert.ok(same(reading, c.reading), `${JSON.stringify(reading)} != ${JSON.stringify(c.reading)}`); // order too
        assert.deepEqual(plain(), c.seqs_after ?? c.seqs);
      });
    }
  }
});

describe("toReading: what the vectors cannot say", () => {
  test("bare numbers stay new across restarts", () => {
    const first = new Map();
    const a = [0, 1, 2].map(() => toReading(1.0, { source: "s", now: 1000.0, seqs: first }).seq);
    const b = toReading(1.0, { source: "s", now: 1000.001, seqs: new Map() }).seq;
    assert.deepEqual(a, [1_000_000_000, 1_000_000_001, 1_000_000_002]);
    assert.ok(b > a[2]);
  });

  test("InvalidReading without a source, and in the error tree", () => {
    const error = new InvalidReading("x");
    assert.equal(error.message, "x");
    assert.equal(error.code, "INVALID_READING");
    assert.equal(InvalidReading.code, "INVALID_READING");
    assert.equal(error.name, "InvalidReading");
    assert.deepEqual(error.details(), { reason: "x", source: "" });
    assert.equal(new InvalidReading("y", { source: "tcp://h:1" }).message, "tcp://h:1: y");
  });

  test("an infinite bare number, or a value JSON cannot give, is invalid", () => {
    assert.throws(() => toReading(Infinity, { source: "s", now: 1, seqs: {} }), /finite/);
    assert.throws(() => toReading(undefined, { source: "s", now: 1, seqs: {} }), /not undefined$/);
    assert.throws(() => toReading(new Date(), { source: "s", now: 1, seqs: {} }), /not Date$/);
  });

  test("-0 as seq is 0; a __proto__ field is kept as a field; the input is not changed", () => {
    const value = JSON.parse('{"sensor": "s", "seq": -0, "celsius": 1, "__proto__": {"x": 1}}');
    const reading = toReading(value, { source: "s", now: 5, seqs: {} });
    assert.ok(Object.is(reading.seq, 0));
    assert.deepEqual(Object.keys(reading), [...FIELDS, "__proto__"]);
    assert.equal(Object.getPrototypeOf(reading), Object.prototype);
    assert.equal(value.t, undefined);
    const seqs = {};
    toReading(2, { source: "__proto__", now: 1, seqs });
    assert.deepEqual(Object.keys(seqs), ["__proto__"]);
  });

  test("MAX_SEQ is 2**53 - 1", () => {
    assert.equal(MAX_SEQ, 2 ** 53 - 1);
    assert.deepEqual(FIELDS, ["sensor", "seq", "t", "celsius"]);
  });
});

// ----------------------------------------------------------------------------------------------
// The Outbox (sans-I/O)

describe("Outbox", () => {
  test("sent without confirmation, kept for the window, pending again when lost", () => {
    const outbox = new Outbox({ capacity: 10, window: 100 });
    outbox.add([1, 2, 3]);
    assert.deepEqual(outbox.take(2), [1, 2]);
    outbox.sent(2, 0, { confirmed: false });
    assert.deepEqual([outbox.length, outbox.pending, outbox.unconfirmed], [3, 1, 2]);
    assert.deepEqual(outbox.take(5), [3]);
    outbox.sent(1, 50, { confirmed: false });
    outbox.expire(120); // the first two are older than the window
    assert.deepEqual([outbox.length, outbox.unconfirmed], [1, 1]);
    assert.equal(outbox.lost(), 1);
    assert.deepEqual(outbox.take(5), [3]);
    outbox.sent(1, 200, { confirmed: false });
    outbox.confirm();
    assert.equal(outbox.length, 0);
  });

  test("full: the oldest go, unconfirmed ones first and uncounted", () => {
    const outbox = new Outbox({ capacity: 4 });
    outbox.add([1, 2]);
    outbox.take(2);
    outbox.sent(2, 0, { confirmed: false });
    assert.equal(outbox.add([3, 4, 5]), 0); // 1 went: it was sent
    assert.equal(outbox.add([6, 7]), 1); // 2 (sent) and 3 (never sent) went
    assert.equal(outbox.dropped, 1);
    assert.deepEqual(outbox.take(10), [4, 5, 6, 7]);
  });

  test("readings pushed out while they are on their way are neither lost nor counted twice", () => {
    const outbox = new Outbox({ capacity: 3 });
    outbox.add([1, 2, 3]);
    assert.deepEqual(outbox.take(2), [1, 2]);
    assert.equal(outbox.add([4, 5]), 0); // 1 and 2 are being sent
    outbox.sent(2, 0, { confirmed: true });
    assert.deepEqual(outbox.take(10), [3, 4, 5]);
  });

  test("confirmed sends leave at once", () => {
    const outbox = new Outbox();
    outbox.add(Array.from({ length: 10_000 }, (_, i) => i));
    for (let i = 0; i < 10; i++) {
      const batch = outbox.take(1000);
      assert.equal(batch[0], i * 1000);
      outbox.sent(batch.length, i, { confirmed: true });
    }
    assert.equal(outbox.length, 0);
    assert.throws(() => new Outbox({ capacity: 0 }), RangeError);
  });
});

// ----------------------------------------------------------------------------------------------
// bin/sensor.mjs

describe("bothways-sensor", T, () => {
  test("--count 5 --interval 0 --seed 1: five readings on stdout, a repeatable series", async () => {
    const first = sensor("--count", "5", "--interval", "0", "--seed", "1");
    const again = sensor("--count", "5", "--interval", "0", "--seed", "1", "--id", "kitchen");
    const bare = sensor("--count", "5", "--interval", "0", "--seed", "1", "--bare");
    for (const program of [first, again, bare]) {
      assert.deepEqual(await program.exit(), { code: 0, signal: null });
      assert.equal(program.stderr, "");
    }
    const readings = first.lines;
    assert.equal(readings.length, 5);
    const started = Date.now() / 1000;
    readings.forEach((reading, i) => {
      assert.deepEqual(Object.keys(reading), FIELDS);
      assert.ok(same(toReading(reading, { source: "x", now: 0, seqs: {} }), reading));
      assert.equal(reading.sensor, `js-${hostname()}-${first.proc.pid}`);
      assert.equal(reading.seq, readings[0].seq + i);
      assert.ok(Math.abs(reading.t - started) < 60 && reading.celsius >= -5 && reading.celsius <= 15);
    });
    // seq starts at the start time in microseconds
    assert.ok(Math.abs(readings[0].seq / 1e6 - readings[0].t) < 5, `${readings[0].seq} vs ${readings[0].t}`);
    const celsius = readings.map((r) => r.celsius);
    assert.deepEqual(
      again.lines.map((r) => r.celsius),
      celsius,
    );
    assert.ok(again.lines.every((r) => r.sensor === "kitchen"));
    assert.deepEqual(bare.lines, celsius);
  });

  test("--help, and bad usage", async () => {
    const help = sensor("--help");
    assert.deepEqual(await help.exit(), { code: 0, signal: null });
    assert.match(help.stdout, /^usage: bothways-sensor /);
    for (const flag of ["--id", "--interval", "--rate", "--count", "--seed", "--to", "--bare", "--buffer", "--wait"]) {
      assert.ok(help.stdout.includes(`  ${flag}`), flag);
    }
    for (const args of [["--rate", "0"], ["--count", "x"], ["--nope"], ["--to", "gopher://x"], ["--buffer", "0"]]) {
      const bad = sensor(...args);
      assert.equal((await bad.exit()).code, 2, args.join(" "));
      assert.match(bad.stderr, /^usage: bothways-sensor .*\n(.*\n)*bothways-sensor: error: /);
    }
  });

  test("SIGTERM stops it quietly", async () => {
    const program = sensor("--interval", "0.05");
    while (program.lines.length < 2) await sleep(10);
    program.proc.kill("SIGTERM");
    assert.deepEqual(await program.exit(), { code: 0, signal: null });
    assert.equal(program.stderr, "");
  });

  test("a listener closed and opened again on the same port mid-run: every seq arrives", async () => {
    let server = await listen("tcp://127.0.0.1:0");
    const url = server.url;
    const got = [];
    const count = 4000;
    const program = sensor("--to", url, "--rate", "2000", "--count", String(count), "--id", "resend");
    while (got.length < 1000) {
      got.push(...(await server.receiveMany()));
    }
    await sleep(200); // not read: what comes now is in the listener's buffers...
    await server.close(); // ...and lost with it: only the sensor's resend window brings it back
    await sleep(300);
    server = await listen(url);
    const draining = drain(server, got);
    assert.deepEqual(await program.exit(), { code: 0, signal: null }, program.stderr);
    await server.close();
    await draining;
    assertAll(seqsOf(got), count);
    assert.match(program.stderr, /lost tcp:\/\/127\.0\.0\.1:\d+ \(.*\); keeping readings \(\d+ sent lately will go/);
    assert.match(program.stderr, /reached tcp:\/\/127\.0\.0\.1:\d+ again after/);
  });

  test("a ws listener that comes up late, and one that restarts", async () => {
    const probe = await listen("ws://127.0.0.1:0/readings");
    const url = probe.url;
    await probe.close(); // a free port, nothing on it yet
    const program = sensor("--to", url, "--interval", "0.01", "--count", "60", "--id", "ws");
    await program.waitErr(/cannot reach ws:\/\/.*; keeping readings, trying again/);
    let server = await listen(url);
    const got = [];
    let draining = drain(server, got);
    while (got.length < 30) await sleep(5);
    await server.close();
    await draining;
    server = await listen(url);
    draining = drain(server, got);
    assert.deepEqual(await program.exit(), { code: 0, signal: null }, program.stderr);
    await server.close();
    await draining;
    assertAll(seqsOf(got), 60);
  });

  test("--rate 10000 to tcp keeps up", async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const got = [];
    const draining = drain(server, got);
    const started = performance.now();
    const program = sensor("--to", server.url, "--rate", "10000", "--count", "20000");
    assert.deepEqual(await program.exit(), { code: 0, signal: null }, program.stderr);
    const seconds = (performance.now() - started) / 1000;
    await server.close();
    await draining;
    assertAll(seqsOf(got), 20_000);
    assert.ok(seconds < 2 + 3 * UNIT, `${seconds} s for 20,000 readings at 10,000/s`);
  });

  test("a full buffer drops the oldest and says so; what is left is counted; exit 1", async () => {
    const probe = await listen("tcp://127.0.0.1:0");
    const url = probe.url;
    await probe.close(); // nothing listens there
    const program = sensor("--to", url, "--rate", "20000", "--count", "5000", "--buffer", "1000", "--wait", "0.3");
    assert.equal((await program.exit()).code, 1);
    assert.match(program.stderr, /buffer full \(1000 readings\): dropped the \d+ oldest \(\d+ in all\)/);
    assert.match(program.stderr, /dropped 4000 readings in all: the buffer was full/);
    assert.match(program.stderr, /1000 readings could not be delivered to tcp:/);
  });

  test("to a file, and to HTTP: 503 is tried again, 4xx ends it", async () => {
    const path = join(scratch, "readings.ndjson");
    const toFile = sensor("--to", `file:${path}`, "--count", "5", "--interval", "0");
    assert.deepEqual(await toFile.exit(), { code: 0, signal: null }, toFile.stderr);
    assertAll(seqsOf(readFileSync(path, "utf8").trim().split("\n").map((line) => JSON.parse(line))), 5);

    const posts = [];
    let answers = [503, 503];
    const server = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8").on("data", (text) => (body += text));
      request.on("end", () => {
        const status = answers.shift() ?? 201;
        if (status === 201) posts.push({ type: request.headers["content-type"], body });
        response.writeHead(status, { "content-type": "text/plain" });
        response.end(status === 201 ? "stored" : "not now");
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `http://127.0.0.1:${server.address().port}/api/readings`;
    try {
      const ok = sensor("--to", url, "--count", "20", "--interval", "0.005");
      assert.deepEqual(await ok.exit(), { code: 0, signal: null }, ok.stderr);
      assert.match(ok.stderr, /lost http:.*\(HTTP 503: not now\)/);
      assert.ok(posts.every((post) => post.type === "application/x-ndjson"));
      const readings = posts.flatMap((post) => post.body.trim().split("\n").map((line) => JSON.parse(line)));
      assertAll(seqsOf(readings), 20);

      answers = [422];
      const refused = sensor("--to", url, "--count", "3", "--interval", "0");
      assert.equal((await refused.exit()).code, 1);
      assert.match(refused.stderr, /HTTP 422: not now; stopping/);
    } finally {
      server.close();
    }
  });
});

// ----------------------------------------------------------------------------------------------
// bin/listen.mjs

describe("bothways-listen", T, () => {
  test("two sources: every reading printed, an invalid one and a bad line counted", async () => {
    const program = listener(
      "tcp://127.0.0.1:0",
      `node js/bin/sensor.mjs --count 3 --interval 0 --seed 1 --id 'the kitchen'`,
    );
    const [, url] = await program.waitErr(/tcp:\/\/127\.0\.0\.1:0: listening on (tcp:\/\/\S+)/);
    const client = await (await import("../src/channels.js")).connect(url);
    await client.sendMany([{ sensor: "net", seq: 1, celsius: 20 }, 21.5, { sensor: "net", seq: 2 }]);
    await client.sendBytes("{oops\n");
    await client.send({ sensor: "net", seq: 3, t: 5, celsius: 22, room: "lab" });
    await client.close();
    await program.waitErr(/the kitchen.*: ended/);
    while (program.lines.length < 6) await sleep(10);
    program.proc.kill("SIGTERM");
    assert.deepEqual(await program.exit(), { code: 0, signal: null }, program.stderr);
    const readings = program.lines;
    assert.equal(readings.length, 6, program.stdout);
    for (const reading of readings) {
      assert.ok(same(toReading(reading, { source: "x", now: 0, seqs: {} }), reading));
    }
    assert.deepEqual(
      readings.filter((r) => r.sensor === "the kitchen").map((r) => r.celsius),
      [7.54, -4.95, 5.55],
    );
    const net = readings.filter((r) => r.sensor === "net");
    assert.deepEqual(
      net.map((r) => [r.seq, r.room]),
      [
        [1, undefined],
        [3, "lab"],
      ],
    );
    const bare = readings.filter((r) => r.sensor === "tcp://127.0.0.1:0"); // named after the source
    assert.deepEqual(
      bare.map((r) => r.celsius),
      [21.5],
    );
    assert.match(program.stderr, /invalid reading from tcp:\/\/127\.0\.0\.1:0: missing "celsius"/);
    assert.match(program.stderr, /tcp:\/\/127\.0\.0\.1:0: DECODE_ERROR: line 4, col 2: expected a string key/);
    assert.match(program.stderr, /stopped: 6 readings, 1 invalid, 1 bad lines\n$/);
  });

  test("ends with its sources; a failing child is reported, exit 1", async () => {
    const program = listener(
      `node -e 'console.log(1.5); console.log(JSON.stringify({sensor: "s", seq: 4, celsius: 2}))'`,
      "node -e 'process.exit(3)'",
    );
    assert.equal((await program.exit()).code, 1);
    assert.deepEqual(
      program.lines.map((r) => r.celsius),
      [1.5, 2],
    );
    assert.match(program.stderr, /node -e 'process.exit\(3\)': failed: .*exited with code 3/);
    assert.match(program.stderr, /every source ended: 2 readings, 0 invalid, 0 bad lines/);
  });

  test("--to: readings forwarded to a channel; SIGTERM stops its child sensors", async () => {
    const server = await listen("tcp://127.0.0.1:0");
    const got = [];
    const draining = drain(server, got);
    const program = listener("--to", server.url, "node js/bin/sensor.mjs --rate 200 --id forwarded");
    while (got.length < 50) await sleep(10);
    program.proc.kill("SIGTERM");
    assert.deepEqual(await program.exit(), { code: 0, signal: null }, program.stderr);
    assert.equal(program.stdout, "");
    await sleep(100);
    await server.close();
    await draining;
    const seqs = seqsOf(got);
    assertAll(seqs, seqs.size); // no gap
    assert.match(program.stderr, /forwarded: stopped\nbothways-listen: stopped: \d+ readings/);
  });

  test("--help, and bad usage", async () => {
    const help = listener("--help");
    assert.deepEqual(await help.exit(), { code: 0, signal: null });
    assert.match(help.stdout, /^usage: bothways-listen \[--help\] \[--to URL\] SOURCE \[SOURCE \.\.\.\]/);
    const cases = [[], ["http://127.0.0.1:1/api/readings"], ["tcp://127.0.0.1"], ["'unclosed"], ["--to", "x:y", "stdio:"]];
    for (const args of cases) {
      const bad = listener(...args);
      assert.equal((await bad.exit()).code, 2, args.join(" "));
      assert.match(bad.stderr, /bothways-listen: error: /);
    }
  });
});

test("Sender: what cannot be delivered in time is held and counted; Rejected", async () => {
  assert.equal(Rejected.code, "REJECTED");
  assert.equal(new Rejected("x").name, "Rejected");
  const sender = new Sender("http://127.0.0.1:1/api/readings", { say: () => {} });
  sender.add([{ sensor: "s", seq: 1, t: 1, celsius: 1 }]);
  assert.equal(await sender.finish(50), 1); // nothing listens there: the reading is still held
  assert.equal(sender.failed, null);
});
