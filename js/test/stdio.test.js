// Child processes across the real boundary: Node spawning python and node children, and the
// child's side, stdio(), in node children. Mirrors tests/cross/test_stdio.py.
//
// The Python interpreter is $BOTHWAYS_PYTHON, else <repo>/.venv/bin/python, else python3; bothways
// must be importable from it. Every timeout is a multiple of $BOTHWAYS_TEST_TIMEOUT_FACTOR.
import assert from "node:assert/strict";
import { spawn as rawSpawn } from "node:child_process";
import { PassThrough, Readable, Writable } from "node:stream";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";

import { ChildExited, DecodeError, TransportClosed } from "../src/errors.js";
import { Peer } from "../src/peer.js";
import { importModule } from "../src/python.js";
import { Channel, Inbox, logError, memoryPair, raiseError } from "../src/transports/base.js";
import { StdioChannel, TAIL_LINES, spawn, supervise } from "../src/transports/stdio.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
// BOTHWAYS_QUICK=1 (make mutation runs this file once per mutant): the stress cases are left out.
const STRESS_SKIPPED = process.env.BOTHWAYS_QUICK === "1" && "a stress case (BOTHWAYS_QUICK=1)";
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const FIXTURES = join(ROOT, "tests", "fixtures");
const STDIO_URL = pathToFileURL(join(ROOT, "js", "src", "transports", "stdio.js")).href;
const VENV_PYTHON = join(ROOT, ".venv", "bin", "python");
const PYTHON = process.env.BOTHWAYS_PYTHON ?? (existsSync(VENV_PYTHON) ? VENV_PYTHON : "python3");
const NODE = process.execPath;
const HOST = join(ROOT, "js", "bin", "host.mjs");

const py = (script, ...args) => [PYTHON, join(FIXTURES, script), ...args];
const js = (script, ...args) => [NODE, join(FIXTURES, script), ...args];
/** A node child running `code` as an ES module; its arguments are process.argv[1...]. */
const inline = (code, ...args) => [NODE, "--input-type=module", "-e", code, ...args];

// The child side's echo, through stdio() (js_echo.mjs uses the Decoder directly).
const ECHO = `import { stdio } from ${JSON.stringify(STDIO_URL)};
const channel = stdio(process.argv[1] ? { maxLine: Number(process.argv[1]) } : {});
for await (const message of channel) await channel.send(message);`;

/**
 * Runs `body` with a child that is closed afterwards, whatever happens.
 * @template T
 * @param {string[]} argv
 * @param {import("../src/transports/stdio.js").SpawnOptions} options
 * @param {(child: import("../src/transports/stdio.js").Child) => Promise<T>} body
 * @returns {Promise<T>}
 */
async function withChild(argv, options, body) {
  const child = spawn(argv, options);
  try {
    return await body(child);
  } finally {
    await child.close();
  }
}

/** Collects every message until the channel ends. */
async function all(channel) {
  const got = [];
  for await (const value of channel) {
    got.push(value);
  }
  return got;
}

/** Whether `pid` is a live process (a zombie counts as gone). */
function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** The processes whose parent is this one. */
function ourChildren() {
  const found = [];
  for (const name of readdirSync("/proc")) {
    if (/^\d+$/.test(name)) {
      try {
        if (readFileSync(`/proc/${name}/status`, "utf8").includes(`\nPPid:\t${process.pid}\n`)) {
          found.push(Number(name));
        }
      } catch {
        // gone meanwhile
      }
    }
  }
  return found;
}

/** A field of /proc/<pid>/status, in MB (VmHWM: peak resident set size). */
function memoryMb(pid, field) {
  const match = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  assert.ok(match, `no ${field} for ${pid}`);
  return Number(match[1]) / 1024;
}

/** Bytes `pid` has written so far, from /proc/<pid>/io. */
function written(pid) {
  return Number(/^wchar: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))[1]);
}

/** Waits until `predicate()` holds or `ms` have passed; returns its last result. */
async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) {
    await sleep(20);
  }
  return predicate();
}

describe("Inbox and Channel (base.js)", () => {
  test("values come out in order; a strict error waits for its turn", () => {
    const inbox = new Inbox({ onError: raiseError });
    inbox.feed('1\n2\nnope\n3\n{"a"');
    assert.equal(inbox.length, 4);
    assert.equal(inbox.pop(), 1);
    assert.equal(inbox.pop(), 2);
    assert.throws(() => inbox.pop(), (error) => error instanceof DecodeError && error.line === 3);
    assert.equal(inbox.pop(), 3);
    inbox.feedEof();
    assert.throws(() => inbox.pop(), { code: "TRUNCATED_LINE" });
    assert.equal(inbox.length, 0);
    assert.throws(() => inbox.pop(), RangeError);
  });

  test("the default policy warns and goes on; a parsed truncated line is delivered", (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const inbox = new Inbox({ maxLine: 8 });
    inbox.feed("1\nxx\n123456789\n4");
    inbox.feedEof();
    assert.deepEqual([inbox.pop(), inbox.pop()], [1, 4]);
    const lines = warn.mock.calls.map((call) => call.arguments[0]);
    assert.equal(lines.length, 3);
    assert.match(lines[0], /^DECODE_ERROR: line 2/);
    assert.match(lines[1], /^FRAME_TOO_LARGE: line 3/);
    assert.match(lines[2], /^TRUNCATED_LINE: line 4/);
    logError(new DecodeError("bad", { line: 7 }));
    assert.equal(warn.mock.calls.at(-1).arguments[0], "DECODE_ERROR: line 7: bad");
  });

  test("popAll hands out every value up to a strict error, which comes next", () => {
    const inbox = new Inbox({ onError: raiseError });
    inbox.feed("1\n2\n");
    inbox.feed("3\nnope\n4\n");
    inbox.feed("5\n");
    assert.deepEqual(inbox.popAll(), [1, 2, 3]);
    assert.equal(inbox.length, 3);
    assert.throws(() => inbox.popAll(), (error) => error instanceof DecodeError && error.line === 4);
    assert.equal(inbox.pop(), 4);
    assert.deepEqual(inbox.popAll(), [5]);
    assert.throws(() => inbox.popAll(), RangeError);
    for (let i = 0; i < 5000; i++) inbox.feed(`${i}\n`); // many batches: taken from a head index
    for (let i = 0; i < 2500; i++) assert.equal(inbox.pop(), i);
    const rest = inbox.popAll();
    assert.equal(rest.length, 2500);
    assert.equal(rest[0], 2500);
    assert.equal(inbox.length, 0);
  });

  test("receiveMany defaults to one receive()", async () => {
    const [a, b] = memoryPair();
    await a.send(1);
    await a.send(2);
    assert.deepEqual(await b.receiveMany(), [1]);
    assert.deepEqual(await b.receiveMany(), [2]);
    await a.close();
    await assert.rejects(b.receiveMany(), TransportClosed);
  });

  test("iteration ends at TransportClosed and rethrows anything else", async () => {
    class Scripted extends Channel {
      constructor(steps) {
        super();
        this.steps = steps;
        this.closed = 0;
      }
      async receive() {
        const step = this.steps.shift();
        if (step instanceof Error) throw step;
        return step;
      }
      async close() {
        this.closed++;
      }
    }
    assert.deepEqual(await all(new Scripted([1, 2, new TransportClosed("done")])), [1, 2]);
    await assert.rejects(all(new Scripted([1, new ChildExited("x", { returncode: 1 })])), ChildExited);
    const channel = new Scripted([]);
    await channel[Symbol.asyncDispose]();
    assert.equal(channel.closed, 1);
  });
});

test("memoryPair: messages both ways through the codec, then closed", async () => {
  const [a, b] = memoryPair();
  await a.send({ x: "é", n: [1, 2] });
  await b.send("back");
  assert.deepEqual(await b.receive(), { x: "é", n: [1, 2] });
  assert.equal(await a.receive(), "back");
  const pending = b.receive();
  await a.close();
  await assert.rejects(pending, /the other end closed/);
  await assert.rejects(b.receive(), /the other end closed/);
  await assert.rejects(a.send(1), /closed/);
  await assert.rejects(b.send(10n), { code: "ENCODE_ERROR" });
});

describe("spawn: messages", () => {
  const echoes = [
    ["python", py("py_echo.py")],
    ["node", js("js_echo.mjs")],
    ["node stdio()", inline(ECHO)],
  ];

  for (const [label, argv] of echoes) {
    test(`echo in order, writing while reading (${label})`, { timeout: 20 * S }, async () => {
      const values = Array.from({ length: 5000 }, (_, i) => ({ i, text: "é€𝄞\u2028".repeat(i % 5) }));
      await withChild(argv, {}, async (child) => {
        const writer = (async () => {
          for (const value of values) {
            await child.send(value);
          }
          child.closeStdin();
        })();
        const got = await all(child);
        await writer;
        assert.deepEqual(got, values);
        assert.equal(await child.wait(), 0);
        assert.equal(child.signal, null);
      });
    });
  }

  for (const [label, argv] of echoes) {
    test(`one 50 MB line both ways (${label})`, { skip: STRESS_SKIPPED, timeout: 40 * S }, async () => {
      const limit = 64 * 1024 * 1024;
      const big = { blob: "x€".repeat((25 * 1024 * 1024) / 2) }; // 50 MB of UTF-8 in one line
      await withChild([...argv, String(limit)], { maxLine: limit }, async (child) => {
        const writer = child.send(big).then(() => child.closeStdin());
        const got = await child.receive();
        await writer;
        assert.equal(got.blob.length, big.blob.length);
        assert.ok(got.blob === big.blob);
        await assert.rejects(child.receive(), TransportClosed);
      });
    });
  }

  test("1,000,000 small messages in order from python", { skip: STRESS_SKIPPED, timeout: 40 * S }, async () => {
    const count = 1_000_000;
    await withChild(py("py_producer.py", String(count)), {}, async (child) => {
      let expected = 0;
      for await (const value of child) {
        if (value !== expected) {
          assert.equal(value, expected);
        }
        expected++;
      }
      assert.equal(expected, count);
    });
  });

  test("100,000 lines of 80 KB non-ASCII text from python (8 GB)", { skip: STRESS_SKIPPED, timeout: 240 * S }, async () => {
    const count = 100_000;
    const size = 40 * 1024; // "é" is two bytes of UTF-8
    await withChild(py("py_producer.py", String(count), String(size)), {}, async (child) => {
      let seen = 0;
      for await (const value of child) {
        if (value.i !== seen || value.pad.length !== size) {
          assert.deepEqual([value.i, value.pad.length], [seen, size]);
        }
        seen++;
      }
      assert.equal(seen, count);
    });
  });

  test("sendBytes writes encoded lines as they are", { timeout: 10 * S }, async () => {
    await withChild(py("py_echo.py"), {}, async (child) => {
      await child.sendBytes('{"a":1}\n[2]\n');
      await child.sendBytes(new TextEncoder().encode('"é"\n'));
      child.closeStdin();
      assert.deepEqual(await all(child), [{ a: 1 }, [2], "é"]);
      await assert.rejects(child.send(1), /stdin is closed/);
    });
  });

  for (const [label, argv] of [
    ["python", py("py_stray.py")],
    ["node", js("js_stray.mjs")],
  ]) {
    test(`a stray print is reported, not fatal (${label})`, { timeout: 10 * S }, async () => {
      const errors = [];
      await withChild(argv, { onError: (error) => errors.push(error) }, async (child) => {
        assert.deepEqual(await all(child), [1, 2, 3]);
      });
      assert.deepEqual(
        errors.map((e) => [e.line, e.code]),
        [
          [2, "DECODE_ERROR"],
          [4, "DECODE_ERROR"],
        ],
      );
      assert.match(errors[0].excerpt, /debug: this is not JSON/);
    });
  }

  test("a strict onError makes receive() throw at the bad line, in order", { timeout: 10 * S }, async () => {
    await withChild(py("py_stray.py"), { onError: raiseError }, async (child) => {
      assert.equal(await child.receive(), 1);
      await assert.rejects(child.receive(), (error) => error instanceof DecodeError && error.line === 2);
      assert.equal(await child.receive(), 2); // the stream goes on if we do
    });
  });
});

describe("spawn: endings", () => {
  test("a python crash gives ChildExited with the traceback", { timeout: 10 * S }, async () => {
    const lines = [];
    await withChild(py("py_crash.py"), { stderr: (line) => lines.push(line) }, async (child) => {
      assert.deepEqual([await child.receive(), await child.receive()], [{ step: 1 }, { step: 2 }]);
      const error = await child.receive().then(
        () => assert.fail("no error"),
        (e) => e,
      );
      assert.ok(error instanceof ChildExited);
      assert.equal(error.returncode, 1);
      assert.equal(error.signal, null);
      assert.match(error.stderrTail, /ZeroDivisionError: division by zero/);
      assert.match(error.message, /^python py_crash\.py exited with code 1\n/);
      assert.match(error.message, /in compute/);
      assert.equal(error.code, "CHILD_EXITED");
      assert.equal(child.returncode, 1);
      assert.ok(lines.some((line) => line.includes("Traceback")));
      await assert.rejects(child.receive(), ChildExited); // and again
    });
  });

  test("a node crash gives ChildExited with the stack", { timeout: 10 * S }, async () => {
    await withChild(js("js_crash.mjs"), { stderr: "keep" }, async (child) => {
      assert.deepEqual([await child.receive(), await child.receive()], [{ step: 1 }, { step: 2 }]);
      await assert.rejects(child.receive(), (e) => {
        assert.ok(e instanceof ChildExited);
        assert.equal(e.returncode, 1);
        assert.match(e.message, /^node js_crash\.mjs exited with code 1\n/);
        assert.match(e.stderrTail, /RangeError: division by zero/);
        assert.match(e.stderrTail, /at compute /);
        return true;
      });
    });
  });

  for (const [label, make] of [
    ["python", (code) => py("py_exit.py", String(code))],
    ["node", (code) => js("js_exit.mjs", String(code))],
  ]) {
    for (const code of [0, 3]) {
      test(`exit code ${code} (${label})`, { timeout: 10 * S }, async () => {
        await withChild(make(code), {}, async (child) => {
          assert.deepEqual(await child.receive(), { exiting: code });
          if (code === 0) {
            await assert.rejects(child.receive(), (e) => e instanceof TransportClosed && !(e instanceof ChildExited));
          } else {
            await assert.rejects(child.receive(), (e) => {
              assert.ok(e instanceof ChildExited);
              assert.match(e.message, new RegExp(`exited with code ${code}$`));
              assert.equal(e.returncode, code);
              return true;
            });
            // Writing to a child that is gone says how it ended.
            await assert.rejects(
              (async () => {
                for (let i = 0; i < 10; i++) await child.send(i);
              })(),
              (e) => e instanceof ChildExited && e.returncode === code,
            );
          }
          assert.equal(await child.wait(), code);
        });
      });
    }
  }

  test("killed by a signal", { timeout: 10 * S }, async () => {
    await withChild(py("py_stubborn.py"), {}, async (child) => {
      assert.equal(await child.receive(), "ready");
      process.kill(child.pid, "SIGKILL");
      await assert.rejects(child.receive(), (e) => {
        assert.ok(e instanceof ChildExited);
        assert.match(e.message, /^python py_stubborn\.py was killed by SIGKILL/);
        assert.equal(e.signal, "SIGKILL");
        assert.equal(e.returncode, -9);
        return true;
      });
      assert.equal(child.returncode, -9);
      assert.equal(child.signal, "SIGKILL");
    });
  });

  test("killed by a signal: ChildExited keeps the last lines of stderr", { timeout: 10 * S }, async () => {
    const noise = TAIL_LINES + 10; // more lines than the tail keeps
    const tail = Array.from({ length: TAIL_LINES }, (_, i) => `noise ${noise - TAIL_LINES + i}`).join("\n");
    await withChild(py("py_noisy_sleeper.py", String(noise)), { stderr: "keep" }, async (child) => {
      assert.equal(await child.receive(), "ready"); // its stderr lines were written before
      process.kill(child.pid, "SIGKILL");
      await assert.rejects(child.receive(), (e) => {
        assert.ok(e instanceof ChildExited);
        assert.deepEqual([e.returncode, e.signal], [-9, "SIGKILL"]);
        assert.equal(e.stderrTail, tail);
        const name = `${PYTHON.split("/").at(-1)} py_noisy_sleeper.py`;
        assert.equal(e.message, `${name} was killed by SIGKILL\n--- stderr tail ---\n${tail}`);
        return true;
      });
    });
  });

  for (const [label, argv] of [
    ["python", py("py_stubborn.py")],
    ["node", js("js_stubborn.mjs")],
  ]) {
    test(`close() escalates for a child that ignores SIGTERM (${label})`, { timeout: 10 * S }, async () => {
      await withChild(argv, { grace: 300 * UNIT }, async (child) => {
        assert.equal(await child.receive(), "ready");
        const start = Date.now();
        await child.close();
        assert.ok(Date.now() - start < 3 * S, `close() took ${Date.now() - start} ms`);
        assert.equal(child.returncode, -9);
        assert.equal(child.signal, "SIGKILL");
        assert.ok(!alive(child.pid));
        await child.close(); // twice is fine
        await assert.rejects(child.receive(), /was closed/);
        await assert.rejects(child.send(1), /was closed/);
      });
    });
  }

  test("a program that cannot start gives ChildExited with returncode null", { timeout: 10 * S }, async () => {
    for (const [argv, options] of [
      [["/nonexistent/program", "x.py"], {}],
      [["bothways-no-such-program-here"], {}],
      [[NODE], { cwd: "/nonexistent/dir" }],
    ]) {
      await withChild(argv, options, async (child) => {
        for (const attempt of [() => child.receive(), () => child.send(1), () => child.wait()]) {
          await assert.rejects(attempt, (e) => {
            assert.ok(e instanceof ChildExited, String(e));
            assert.equal(e.returncode, null);
            assert.match(e.message, /could not start/);
            assert.ok(e.message.includes(argv[0]), e.message);
            assert.equal(e.cause.code, "ENOENT");
            return true;
          });
        }
        assert.equal(child.pid, null);
      });
    }
    assert.throws(() => spawn([]), TypeError);
  });
});

describe("spawn: lifetime", () => {
  for (const [label, grandchild] of [
    ["python", py("py_stubborn.py")],
    ["node", js("js_sleeper.mjs")],
  ]) {
    test(`the child dies with its SIGKILLed node parent (${label})`, { timeout: 10 * S }, async () => {
      let pids = null;
      try {
        await withChild(js("js_parent.mjs", ...grandchild), { stderr: "keep" }, async (parent) => {
          pids = await parent.receive();
          assert.equal(pids.parent, parent.pid);
          assert.ok(alive(pids.child));
          process.kill(parent.pid, "SIGKILL"); // no chance to clean up
          assert.ok(await until(() => !alive(pids.child), 2 * S), "the child outlived its SIGKILLed parent");
        });
      } finally {
        if (pids && alive(pids.child)) process.kill(pids.child, "SIGKILL");
      }
    });
  }

  test("the exit hook kills live children when no setpriv is found", { timeout: 10 * S }, async () => {
    // PATH without setpriv: only the process 'exit' hook is left to end the grandchild.
    const code = `import { spawn, stdio } from ${JSON.stringify(STDIO_URL)};
const child = spawn(${JSON.stringify(js("js_sleeper.mjs"))}, { stderr: "keep" });
await child.receive();
process.on("SIGTERM", () => process.exit(0));
await stdio().send({ child: child.pid });
setInterval(() => {}, 1000);`;
    let pids = null;
    try {
      await withChild(inline(code), { env: { ...process.env, PATH: "/nonexistent" } }, async (parent) => {
        pids = await parent.receive();
        assert.ok(alive(pids.child));
        process.kill(parent.pid, "SIGTERM");
        assert.equal(await parent.wait(), 0);
        assert.ok(await until(() => !alive(pids.child), 2 * S), "the exit hook left the child running");
      });
    } finally {
      if (pids && alive(pids.child)) process.kill(pids.child, "SIGKILL");
    }
  });

  test("aborting the signal closes the child", { timeout: 10 * S }, async () => {
    const controller = new AbortController();
    await withChild(js("js_stubborn.mjs"), { signal: controller.signal, grace: 200 * UNIT }, async (child) => {
      assert.equal(await child.receive(), "ready");
      const pending = child.receive();
      const reason = new Error("enough");
      controller.abort(reason);
      await assert.rejects(pending, (e) => e instanceof TransportClosed && e.cause === reason);
      assert.equal(await child.wait(), -9);
    });
    await withChild(js("js_stubborn.mjs"), { signal: AbortSignal.abort() }, async (early) => {
      assert.equal(early.pid, null);
      await assert.rejects(early.receive(), TransportClosed);
    });
  });

  test("for await ends quietly when the signal aborts", { timeout: 10 * S }, async () => {
    const controller = new AbortController();
    await withChild(py("py_forever.py"), { signal: controller.signal, grace: 200 * UNIT }, async (child) => {
      let count = 0;
      for await (const message of child) {
        assert.equal(message.i, count++);
        if (count === 1000) controller.abort();
      }
      assert.equal(count, 1000);
      assert.equal(await child.wait(), -15); // py_forever takes SIGTERM
    });
  });

  for (const [label, argv] of [
    ["python", py("py_forever.py")],
    ["node", js("js_forever.mjs")],
  ]) {
    test(`a fast producer is held back by a slow consumer (${label})`, { skip: STRESS_SKIPPED, timeout: 30 * S }, async (t) => {
      const rssBefore = process.memoryUsage.rss();
      await withChild(argv, { stderr: "keep", grace: 200 * UNIT }, async (child) => {
        const received = [];
        const slowUntil = Date.now() + 3 * S;
        while (Date.now() < slowUntil) {
          received.push((await child.receive()).i);
          await sleep(1);
        }
        // What it wrote beyond what we read fits in the pipe, our read-ahead and a batch.
        const ahead = written(child.pid) - received.length * 70;
        t.diagnostic(`read ${received.length} slowly; the producer was ${ahead} bytes ahead`);
        assert.ok(ahead < 2 * 1024 * 1024, `the producer ran ${ahead} bytes ahead`);
        for (let k = 0; k < 200_000; k++) {
          received.push((await child.receive()).i); // sped up: everything arrives, in order
        }
        for (let k = 0; k < received.length; k++) {
          if (received[k] !== k) assert.equal(received[k], k);
        }
        assert.ok(memoryMb(child.pid, "VmHWM") < 200, "the producer's peak RSS");
        const grown = (process.memoryUsage.rss() - rssBefore) / 2 ** 20;
        t.diagnostic(`producer peak ${memoryMb(child.pid, "VmHWM").toFixed(0)} MB, our RSS +${grown.toFixed(1)} MB`);
        // A hoarding consumer would hold hundreds of MB by now (the producer writes ~100 MB/s);
        // V8's heap alone grows by 20-55 MB here (young generation, garbage of the tests before).
        assert.ok(grown < 100, `our RSS grew by ${grown.toFixed(1)} MB`);
      });
    });
  }
});

describe("supervise: restarts with back-off", () => {
  test("restarts a crashing child, then gives up", { timeout: 10 * S }, async () => {
    const restarts = [];
    const onRestart = (error, attempt, delay) => restarts.push([attempt, delay, error.returncode]);
    const child = supervise(py("py_crash.py"), { stderr: "keep", maxRestarts: 2, backoff: 50, onRestart });
    try {
      const got = [];
      await assert.rejects(async () => {
        for await (const message of child) got.push(message);
      }, /exited with code 1/);
      assert.deepEqual(got, Array(3).fill([{ step: 1 }, { step: 2 }]).flat());
      assert.deepEqual(restarts, [
        [1, 50, 1],
        [2, 100, 1],
      ]);
    } finally {
      await child.close();
    }
  });

  test("ends cleanly after a recovered crash", { timeout: 10 * S }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "bothways-"));
    const child = supervise(py("py_flaky.py", join(dir, "marker")), { stderr: "keep", backoff: 10 });
    try {
      assert.deepEqual(await all(child), [{ run: 1 }, { run: 2 }]);
      assert.equal(child.restarts, 1);
    } finally {
      await child.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("close() during the back-off stops restarting", { timeout: 10 * S }, async () => {
    const child = supervise(py("py_crash.py"), { stderr: "keep", backoff: 60_000 });
    const first = child.child;
    try {
      assert.deepEqual([await child.receive(), await child.receive()], [{ step: 1 }, { step: 2 }]);
      const pending = child.receive(); // the crash: a minute's back-off starts
      await until(() => child.restarts === 1, 5 * S);
      const start = Date.now();
      await child.close();
      await assert.rejects(pending, TransportClosed);
      assert.ok(Date.now() - start < 2 * S);
      assert.equal(child.child, first);
      assert.equal(child.restarts, 1);
    } finally {
      await child.close();
    }
  });

  test("a program that cannot start is not retried", { timeout: 10 * S }, async () => {
    const child = supervise(["/nonexistent/program"], { backoff: 10 });
    await assert.rejects(child.receive(), (e) => e instanceof ChildExited && e.returncode === null);
    assert.equal(child.restarts, 0);
    await child.close();
  });
});

describe("stdio(): the child's side, in node", () => {
  test("200,000 messages from a node producer, in order", { timeout: 20 * S }, async () => {
    await withChild(js("js_producer.mjs", "200000"), {}, async (child) => {
      let expected = 0;
      for await (const value of child) {
        if (value !== expected) assert.equal(value, expected);
        expected++;
      }
      assert.equal(expected, 200_000);
    });
  });

  test("a node producer stops cleanly when its parent stops reading (EPIPE)", { timeout: 10 * S }, async () => {
    const child = rawSpawn(NODE, [join(FIXTURES, "js_forever.mjs")], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (text) => (stderr += text));
    const exited = new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
    try {
      await new Promise((resolve) => child.stdout.once("data", resolve));
      child.stdout.destroy(); // our end of its stdout: its next write gets EPIPE
      const { code, signal } = await exited;
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, stderr);
      assert.match(stderr, /stopped: stdout closed: the parent is gone/);
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
  });

  test("stderr is forwarded with the child's name, by default", { timeout: 10 * S }, async () => {
    const code = `import { spawn } from ${JSON.stringify(STDIO_URL)};
const child = spawn(${JSON.stringify(py("py_crash.py"))});
try { for await (const _ of child) {} } catch { /* ChildExited */ } finally { await child.close(); }`;
    await withChild(inline(code), { stderr: "keep", tailLines: 200 }, async (runner) => {
      await assert.rejects(runner.receive(), TransportClosed);
      assert.equal(runner.returncode, 0);
      assert.match(runner.stderrTail, /^\[python py_crash\.py\] Traceback/m);
      assert.match(runner.stderrTail, /^\[python py_crash\.py\] ZeroDivisionError: division by zero$/m);
    });
  });

  test("a python child gets unbuffered UTF-8 I/O and our pid", { timeout: 10 * S }, async () => {
    const show = "import json, os; print(json.dumps({k: os.environ.get(k) for k in " +
      "['PYTHONUNBUFFERED', 'PYTHONIOENCODING', 'PYTHONUTF8', 'BOTHWAYS_PARENT_PID', 'MINE']}))";
    const env = { ...process.env, PYTHONUNBUFFERED: "0", MINE: "é" };
    await withChild([PYTHON, "-c", show], { env }, async (child) => {
      assert.equal(child.name, PYTHON.split("/").at(-1));
      assert.deepEqual(await child.receive(), {
        PYTHONUNBUFFERED: "0", // the caller's choice stays
        PYTHONIOENCODING: "utf-8",
        PYTHONUTF8: "1",
        BOTHWAYS_PARENT_PID: String(process.pid),
        MINE: "é",
      });
    });
  });
});

describe("receiveMany and iteration: one await per chunk, nothing lost", () => {
  test("receiveMany returns whole chunks, in order, then TransportClosed", { timeout: 20 * S }, async () => {
    await withChild(py("py_producer.py", "100000"), {}, async (child) => {
      let expected = 0;
      let batches = 0;
      for (;;) {
        let batch;
        try {
          batch = await child.receiveMany();
        } catch (error) {
          assert.ok(error instanceof TransportClosed, String(error));
          break;
        }
        assert.ok(batch.length >= 1);
        batches++;
        for (const value of batch) {
          if (value !== expected) assert.equal(value, expected);
          expected++;
        }
      }
      assert.equal(expected, 100_000);
      assert.ok(batches < expected / 10, `${batches} batches for ${expected} messages`);
    });
  });

  test("breaking out of for await loses nothing", { timeout: 20 * S }, async () => {
    await withChild(py("py_producer.py", "10000"), {}, async (child) => {
      const got = [];
      for await (const value of child) {
        got.push(value);
        if (got.length === 10) break;
      }
      got.push(await child.receive());
      got.push(...(await child.receiveMany()));
      for await (const value of child) got.push(value);
      assert.deepEqual(got, Array.from({ length: 10_000 }, (_, i) => i));
    });
  });

  test("a strict error in the stream: iteration throws it in its turn", { timeout: 10 * S }, async () => {
    await withChild(py("py_stray.py"), { onError: raiseError }, async (child) => {
      const got = [];
      await assert.rejects(async () => {
        for await (const value of child) got.push(value);
      }, (error) => error instanceof DecodeError && error.line === 2);
      assert.deepEqual(got, [1]);
      assert.deepEqual(await child.receiveMany(), [2]); // the stream goes on if we do
    });
  });

  test("thousands of concurrent sends on a full pipe share one set of drain listeners", { timeout: 20 * S }, async () => {
    const warnings = [];
    const onWarning = (warning) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      await withChild(py("py_echo.py"), {}, async (child) => {
        const values = Array.from({ length: 3000 }, (_, i) => ({ i, pad: "x".repeat(500) }));
        const sending = Promise.all(values.map((value) => child.send(value))); // none awaited alone
        const got = [];
        for await (const value of child) {
          got.push(value);
          if (got.length === values.length) break;
        }
        await sending;
        assert.deepEqual(got, values);
      });
      await sleep(10); // warnings are emitted on the next tick
    } finally {
      process.removeListener("warning", onWarning);
    }
    assert.deepEqual(warnings.map(String), []);
  });
});

/**
 * Push mode: every batch `deliverTo` hands out, and how the messages ended.
 * @param {import("../src/transports/base.js").Channel} channel
 * @returns {{batches: unknown[][], ended: Promise<Error>, supported: boolean}}
 */
function delivered(channel) {
  /** @type {unknown[][]} */
  const batches = [];
  let ends = 0;
  /** @type {(error: Error) => void} */
  let end = () => {};
  const ended = new Promise((resolve) => (end = resolve));
  const supported = channel.deliverTo(
    (values) => {
      assert.equal(ends, 0, "a batch after the end");
      batches.push(values);
    },
    (error) => {
      ends++;
      assert.equal(ends, 1, "the end handler called twice");
      end(error);
    },
  );
  return { batches, ended, supported };
}

describe("deliverTo: push mode, batches straight from the 'data' handler", () => {
  test("channels without it say so: the caller reads", async () => {
    const [a, b] = memoryPair();
    assert.equal(
      a.deliverTo(
        () => assert.fail("delivered"),
        () => assert.fail("ended"),
      ),
      false,
    );
    await a.send(1);
    assert.equal(await b.receive(), 1); // nothing was taken over
    assert.equal(new Channel().deliverTo(() => {}, () => {}), false);
    await a.close();
  });

  test("a node producer's messages in order, whole chunks, then TransportClosed", { timeout: 20 * S }, async () => {
    await withChild(js("js_producer.mjs", "100000"), {}, async (child) => {
      const { batches, ended, supported } = delivered(child);
      assert.equal(supported, true);
      const error = await within(ended, 15 * S);
      assert.ok(error instanceof TransportClosed, String(error));
      const values = batches.flat();
      assert.equal(values.length, 100_000);
      for (let i = 0; i < values.length; i++) {
        if (values[i] !== i) assert.equal(values[i], i);
      }
      assert.ok(batches.length < values.length / 10, `${batches.length} batches`);
    });
  });

  test("a crash ends it with ChildExited and the stack, after the messages before it", { timeout: 10 * S }, async () => {
    await withChild(js("js_crash.mjs"), { stderr: "keep" }, async (child) => {
      const { batches, ended } = delivered(child);
      const error = await within(ended, 5 * S);
      assert.ok(error instanceof ChildExited, String(error));
      assert.equal(error.returncode, 1);
      assert.match(error.stderrTail, /RangeError: division by zero/);
      assert.deepEqual(batches.flat(), [{ step: 1 }, { step: 2 }]);
    });
  });

  test("a strict error ends it in its turn; the default policy goes on", { timeout: 10 * S }, async () => {
    await withChild(js("js_stray.mjs"), { onError: raiseError }, async (child) => {
      const { batches, ended } = delivered(child);
      const error = await within(ended, 5 * S);
      assert.ok(error instanceof DecodeError && error.line === 2, String(error));
      assert.deepEqual(batches.flat(), [1]);
    });
    await withChild(js("js_stray.mjs"), { onError: () => {} }, async (child) => {
      const { batches, ended } = delivered(child);
      assert.ok((await within(ended, 5 * S)) instanceof TransportClosed);
      assert.deepEqual(batches.flat(), [1, 2, 3]);
    });
  });

  test("close() ends it with TransportClosed; nothing comes after", { timeout: 10 * S }, async () => {
    const child = spawn(js("js_forever.mjs"), { stderr: "keep", grace: 200 * UNIT });
    const { batches, ended } = delivered(child);
    assert.ok(await until(() => batches.length > 3, 5 * S));
    const closing = child.close();
    const error = await within(ended, 5 * S);
    assert.ok(error instanceof TransportClosed && /was closed/.test(error.message), String(error));
    const count = batches.length;
    await closing;
    await sleep(20);
    assert.equal(batches.length, count);
    const values = batches.flat().map((value) => /** @type {any} */ (value).i);
    assert.deepEqual(values, Array.from({ length: values.length }, (_, i) => i));
  });

  test("a program that cannot start: ChildExited with returncode null, after deliverTo returned", async () => {
    const child = spawn(["/nonexistent/program"]);
    let returned = false;
    const { ended } = delivered(child);
    returned = true;
    const error = await ended;
    assert.ok(returned);
    assert.ok(error instanceof ChildExited && error.returncode === null, String(error));
    await child.close();
  });

  test("messages fed from the handler itself wait for the batch being handled", async () => {
    const stdin = new Readable({ read() {} }); // push() in flowing mode emits 'data' at once
    const channel = new StdioChannel({ stdin, stdout: new PassThrough() });
    /** @type {unknown[]} */
    const got = [];
    let ended;
    channel.deliverTo(
      (values) => {
        for (const value of values) {
          got.push(value);
          if (value === 1) {
            stdin.push("3\n"); // emits 'data' right now, amid this batch
          }
        }
      },
      (error) => (ended = error),
    );
    await sleep(1); // (the channel's reader starts flowing on the next tick)
    stdin.push("1\n2\n");
    await sleep(10);
    assert.deepEqual(got, [1, 2, 3]);
    stdin.push(null);
    await sleep(10);
    assert.ok(ended instanceof TransportClosed);
    await channel.close();
  });

  test("stdio(): what waits already comes first, then the rest; the end of stdin is TransportClosed", async () => {
    const stdin = new PassThrough();
    const channel = new StdioChannel({ stdin, stdout: new PassThrough() });
    stdin.write('1\n2\n{"a":');
    assert.deepEqual(await channel.receive(), 1); // pull first: 2 waits in the inbox
    const { batches, ended } = delivered(channel);
    stdin.write("3}\n4\n");
    stdin.end("5\n");
    assert.ok((await within(ended, 5 * S)) instanceof TransportClosed);
    assert.deepEqual(batches.flat(), [2, { a: 3 }, 4, 5]);
    await channel.close();
  });
});

/**
 * `promise`, or a rejection after `ms` milliseconds.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @returns {Promise<T>}
 */
async function within(promise, ms) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe("the Peer over a stream channel: answers from the 'data' handler, writes gathered", () => {
  /**
   * A StdioChannel over in-memory streams whose output records each write.
   * @param {{highWaterMark?: number, delay?: number}} [options] `delay`: ms before each write
   *   completes (a slow reader: the output fills up).
   */
  function recorded({ highWaterMark = 16 * 1024, delay = 0 } = {}) {
    /** @type {string[]} */
    const writes = [];
    const stdout = new Writable({
      highWaterMark,
      write(chunk, _encoding, callback) {
        writes.push(chunk.toString());
        if (delay > 0) {
          setTimeout(callback, delay);
        } else {
          callback();
        }
      },
    });
    const stdin = new PassThrough();
    return { stdin, writes, channel: new StdioChannel({ stdin, stdout }) };
  }

  test("a sync function is answered before the 'data' event is over", async () => {
    const { stdin, writes, channel } = recorded();
    const peer = await new Peer(channel).start();
    peer.expose(function add(a, b) {
      return a + b;
    });
    /** @type {string[][]} */
    const seen = [];
    stdin.on("data", () => seen.push([...writes])); // runs after the channel's own listener
    stdin.write('{"jsonrpc":"2.0","method":"add","params":[1,2],"id":7}\n');
    await sleep(10);
    assert.deepEqual(seen, [['{"jsonrpc":"2.0","result":3,"id":7}\n']]);
    await peer.close();
  });

  test("a burst of calls leaves in two writes, in order", async () => {
    const { writes, channel } = recorded();
    const peer = await new Peer(channel).start();
    const calls = Array.from({ length: 1000 }, (_, i) => peer.call("f", i));
    await sleep(10);
    assert.equal(writes.length, 2);
    const ids = writes.join("").trimEnd().split("\n").map((line) => JSON.parse(line).id);
    assert.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => i + 1));
    const settled = Promise.allSettled(calls); // (handled before close() rejects them)
    await peer.close();
    assert.ok((await settled).every((result) => result.status === "rejected"));
  });

  test("while the output is full, the messages of later calls gather", { timeout: 10 * S }, async () => {
    const { writes, channel } = recorded({ highWaterMark: 64, delay: 5 });
    const peer = await new Peer(channel).start();
    /** @type {Promise<unknown>[]} */
    const calls = [];
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k < 10; k++) {
        calls.push(peer.call("f", round * 10 + k));
      }
      await sleep(1);
    }
    assert.ok(await until(() => writes.join("").split("\n").length > 200, 5 * S));
    const ids = writes.join("").trimEnd().split("\n").map((line) => JSON.parse(line).id);
    assert.deepEqual(ids, Array.from({ length: 200 }, (_, i) => i + 1));
    assert.ok(writes.length < 100, `${writes.length} writes for 200 calls`);
    const settled = Promise.allSettled(calls); // (handled before close() rejects them)
    await peer.close();
    await settled;
  });
});

describe("channelFd: messages on a socket of their own, the child's output shown", () => {
  for (const [label, argv] of [
    ["python", py("stdio_noisy_echo.py")],
    ["node", js("stdio_noisy_echo.mjs")],
  ]) {
    test(`echo in order while the child writes to stdout every way (${label})`, { timeout: 20 * S }, async () => {
      const lines = [];
      const values = Array.from({ length: 3000 }, (_, i) => ({ i, text: "é€𝄞" }));
      await withChild(argv, { channelFd: true, stderr: (line) => lines.push(line) }, async (child) => {
        assert.deepEqual(await child.receive(), { inherited: null }); // taken out of its env
        const writer = (async () => {
          for (const value of values) await child.send(value);
          child.closeStdin(); // half-closes the socket: the echoes still come
        })();
        assert.deepEqual(await all(child), values);
        await writer;
        assert.equal(await child.wait(), 0);
      });
      assert.ok(lines.includes("raw 0") && lines.includes("raw 2999"), lines.slice(0, 5).join("\n"));
      assert.ok(lines.includes("print 2999") || lines.includes("log 2999"));
    });
  }

  test("python.import: print, sys.stdout.write and os.write(1) during 200 concurrent calls", { timeout: 20 * S }, async () => {
    const lines = [];
    const m = await importModule("host_noisy", { python: PYTHON, cwd: FIXTURES, stderr: (line) => lines.push(line) });
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => m.noisy(i)));
      assert.deepEqual(
        results,
        Array.from({ length: 200 }, (_, i) => 2 * i),
      );
    } finally {
      await m.close();
    }
    for (let i = 0; i < 200; i++) {
      for (const line of [`print ${i}`, `write ${i}`, `raw ${i}`, `err ${i}`]) {
        assert.ok(lines.includes(line), `${line} was not shown`);
      }
    }
  });

  test("python.import with threads: a slow sync function does not hold up a fast one", { timeout: 20 * S }, async () => {
    const m = await importModule("host_noisy", { python: PYTHON, cwd: FIXTURES, stderr: "keep", threads: 2 });
    try {
      const finished = [];
      const started = Date.now();
      await Promise.all([m.slow(1.5), m.fast(), m.fast()].map((call) => call.then((r) => finished.push(r))));
      assert.deepEqual(finished, ["fast", "fast", "slow"]);
      assert.ok(Date.now() - started < 5 * S);
    } finally {
      await m.close();
    }
  });

  test("host.mjs: console.log, process.stdout.write and fs.writeSync(1) during 200 concurrent calls", { timeout: 20 * S }, async () => {
    const lines = [];
    const child = spawn([NODE, HOST, "host_noisy.mjs"], {
      cwd: FIXTURES,
      channelFd: true,
      stderr: (line) => lines.push(line),
    });
    const peer = await new Peer(child).start();
    try {
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => peer.call("noisy", i)));
      assert.deepEqual(
        results,
        Array.from({ length: 200 }, (_, i) => 2 * i),
      );
      child.closeStdin(); // the host ends when its channel closes
      assert.equal(await child.wait(), 0);
    } finally {
      await peer.close();
    }
    const wanted = Array.from({ length: 200 }, (_, i) => [`log ${i}`, `write ${i}`, `raw ${i}`, `err ${i}`]).flat();
    // (the last lines of the child's output may still be on their way after it exited)
    for (let tries = 0; tries < 100 && !wanted.every((line) => lines.includes(line)); tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const line of wanted) {
      assert.ok(lines.includes(line), `${line} was not shown`);
    }
  });

  test("a channel is not passed on to a child that did not ask for one", { timeout: 10 * S }, async () => {
    const env = { ...process.env, BOTHWAYS_CHANNEL_FD: "0" }; // as if inherited from our parent
    const show = "console.log(JSON.stringify(process.env.BOTHWAYS_CHANNEL_FD ?? null))";
    await withChild([NODE, "-e", show], { env }, async (child) => {
      assert.equal(await child.receive(), null);
    });
  });
});

test("sendMany writes every message, in order, as one chunk", { timeout: 30_000 }, async () => {
  const { spawn: spawnChild } = await import("../src/transports/stdio.js");
  const echo = fileURLToPath(new URL("../../tests/fixtures/js_echo.mjs", import.meta.url));
  const child = spawnChild([process.execPath, echo]);
  try {
    const values = Array.from({ length: 3000 }, (_, i) => ({ i, text: "é€" }));
    const sending = child.sendMany(values).then(() => child.closeStdin());
    const got = [];
    for await (const value of child) got.push(value);
    await sending;
    assert.deepEqual(got, values);
  } finally {
    await child.close();
  }
});

test("no process started by these tests is left", { timeout: 10 * S }, async () => {
  assert.ok(await until(() => ourChildren().length === 0, 5 * S), `left behind: ${ourChildren()}`);
});
