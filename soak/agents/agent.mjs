// The soak's Node agent: the same roles, commands and events as agent.py (read its docstring),
// with the JavaScript package, so that every stream crosses from one language to the other.

import { dirname, join } from "node:path";
import { writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

import { BothwaysError, ChildExited, TransportClosed, connect, listen } from "../../js/src/index.js";
import { python } from "../../js/src/python.js";
import { spawn, stdio } from "../../js/src/transports/stdio.js";

const REPORT_EVERY = 100; // ms between "sent" reports
const HERE = dirname(fileURLToPath(import.meta.url));

class Control {
  constructor() {
    this.channel = stdio();
    this.handlers = new Map();
    this.queue = [];
    this.read();
  }

  report(ev, fields = {}) {
    return this.channel.send({ ev, ...fields });
  }

  async read() {
    try {
      for await (const command of this.channel) {
        const handler = this.handlers.get(command.cmd);
        if (handler) await handler(command);
        else this.queue.push(command);
      }
    } catch (error) {
      if (!(error instanceof BothwaysError)) throw error;
    }
    const stop = this.handlers.get("stop");
    if (stop) await stop({ cmd: "stop" });
    else this.queue.push({ cmd: "stop" }); // the orchestrator went away (or closed our stdin)
  }

  pending() {
    return this.queue.splice(0);
  }
}

// A fixed rate: never faster, and no burst to catch up after a long block.
class Pacer {
  constructor(rate) {
    this.period = 1000 / rate;
    this.next = performance.now();
  }

  async wait() {
    this.next += this.period;
    const delay = this.next - performance.now();
    if (delay > 0) await sleep(delay);
    else if (delay < -500) this.next = performance.now();
  }
}

const describe = (error) => `${error?.constructor?.name ?? "Error"}: ${error?.message ?? error}`.slice(0, 400);

// --------------------------------------------------------------------------------------------
// Senders

async function openWriter(url, ctl) {
  let delay = 50;
  for (;;) {
    try {
      return await connect(url);
    } catch (error) {
      if (!(error instanceof BothwaysError)) throw error;
      await ctl.report("connect_retry", { error: describe(error) });
      await sleep(delay);
      delay = Math.min(delay * 2, 1000);
    }
  }
}

// close(): for tcp and ws it confirms that the server read everything, else it throws.
async function closeCheckpoint(channel, ctl, inc, upto) {
  await ctl.report("sent", { i: inc, upto });
  try {
    await channel.close();
    await ctl.report("checkpoint", { i: inc, upto, ok: true });
  } catch (error) {
    if (!(error instanceof BothwaysError)) throw error;
    await ctl.report("checkpoint", { i: inc, upto, ok: false, error: describe(error) });
  }
}

async function runSender(ctl, args) {
  const inc = args.inc;
  const pad = "x".repeat(Number(args.pad));
  let channel = await openWriter(args.url, ctl);
  await ctl.report("ready", { pid: process.pid });
  const pacer = new Pacer(Number(args.rate));
  let seq = 0;
  let lastReport = 0;
  for (;;) {
    for (const command of ctl.pending()) {
      if (command.cmd === "stop") {
        await closeCheckpoint(channel, ctl, inc, seq);
        return;
      }
      if (command.cmd === "cycle") {
        await closeCheckpoint(channel, ctl, inc, seq);
        channel = await openWriter(args.url, ctl);
      }
    }
    seq += 1;
    const message = { i: inc, n: seq, p: pad };
    for (;;) {
      try {
        await channel.send(message);
        break;
      } catch (error) {
        if (!(error instanceof BothwaysError)) throw error;
        // Refused (fifo: the reader went): not sent; a new channel sends it, as an application would.
        await ctl.report("send_error", { i: inc, n: seq, error: describe(error) });
        await channel.close().catch(() => {});
        channel = await openWriter(args.url, ctl);
      }
    }
    const now = performance.now();
    if (now - lastReport >= REPORT_EVERY) {
      await ctl.report("sent", { i: inc, upto: seq });
      lastReport = now;
    }
    await pacer.wait();
  }
}

// The sender of a stdio stream: stdout is the channel, progress goes to stderr.
async function runStdioChild(args) {
  const channel = stdio();
  const commands = [];
  let stopping = false;
  (async () => {
    try {
      for await (const command of channel) commands.push(command);
    } catch (error) {
      if (!(error instanceof BothwaysError)) throw error;
    }
    stopping = true;
  })();
  const pacer = new Pacer(Number(args.rate));
  const pad = "x".repeat(Number(args.pad));
  let seq = 0;
  let lastReport = 0;
  while (!stopping) {
    for (const command of commands.splice(0)) {
      if (command.cmd === "garbage") writeSync(1, `{"soak-garbage": ${command.tag}}\n`);
    }
    seq += 1;
    await channel.send({ i: args.inc, n: seq, p: pad });
    const now = performance.now();
    if (now - lastReport >= REPORT_EVERY) {
      writeSync(2, `SOAK-SENT ${seq}\n`);
      lastReport = now;
    }
    await pacer.wait();
  }
  writeSync(2, `SOAK-SENT ${seq}\n`);
  process.exit(0); // (the stdin reader would keep us alive otherwise)
}

// --------------------------------------------------------------------------------------------
// Receivers

class Intake {
  constructor(ctl) {
    this.ctl = ctl;
    this.pause = 0;
    ctl.handlers.set("pause", (command) => {
      this.pause = command.ms;
    });
    this.onError = (error) => {
      this.ctl.report("bad", {
        kind: error.constructor.name,
        text: String(error.message).slice(0, 300),
        excerpt: String(error.excerpt ?? ""),
      });
    };
  }

  async take(values) {
    const items = [];
    const strays = [];
    for (const value of values) {
      if (value && typeof value === "object" && typeof value.i === "string" && Number.isInteger(value.n)) {
        items.push([value.i, value.n]);
      } else {
        strays.push(JSON.stringify(value).slice(0, 200));
      }
    }
    if (items.length) await this.ctl.report("got", { items });
    if (strays.length) await this.ctl.report("stray", { values: strays });
    if (this.pause) {
      const pause = this.pause;
      this.pause = 0;
      await sleep(pause); // a slow consumer: the channel's backpressure holds its senders
    }
  }
}

async function runReceiver(ctl, args) {
  const intake = new Intake(ctl);
  const listener = await listen(args.url, { onError: intake.onError });
  let stopping = false;
  ctl.handlers.set("stop", async () => {
    stopping = true;
    await listener.close();
  });
  await ctl.report("ready", { pid: process.pid });
  for (;;) {
    let values;
    try {
      values = await listener.receiveMany();
    } catch (error) {
      if (stopping) return;
      await ctl.report("error", { error: describe(error) });
      throw error;
    }
    await intake.take(values);
  }
}

async function runStdioParent(ctl, args) {
  const intake = new Intake(ctl);
  let child = null;
  let stopping = false;
  ctl.handlers.set("stop", () => {
    stopping = true;
    child?.closeStdin(); // the child stops, and we read what it sent up to its end
  });
  ctl.handlers.set("garbage", (command) => {
    child?.send({ cmd: "garbage", tag: command.tag }).catch(() => {});
  });
  await ctl.report("ready", { pid: process.pid });
  const argv = [process.env.SOAK_PYTHON ?? "python3", join(HERE, "agent.py"), "stdio-child"];
  argv.push("--rate", String(args.rate), "--pad", String(args.pad));
  for (let number = 1; !stopping; number += 1) {
    const inc = `${args.inc}.c${number}`;
    const progress = (line) => {
      if (line.startsWith("SOAK-SENT ")) ctl.report("sent", { i: inc, upto: Number(line.split(" ")[1]) });
      else process.stderr.write(`[child ${inc}] ${line}\n`);
    };
    child = spawn([...argv, "--inc", inc], { stderr: progress, onError: intake.onError, name: `child ${inc}` });
    await ctl.report("child", { i: inc, pid: child.pid });
    let why = "ended";
    try {
      for (;;) await intake.take(await child.receiveMany());
    } catch (error) {
      if (error instanceof ChildExited) why = describe(error);
      else if (!(error instanceof TransportClosed)) throw error;
    }
    await child.close();
    await ctl.report("child_exit", { i: inc, why });
  }
}

// --------------------------------------------------------------------------------------------
// Calls: Node -> Python

async function runCaller(ctl, args) {
  const stats = { made: 0, ok: 0, failed: 0, wrong: 0, pending: 0 };
  let module = null;
  let generation = 0;
  let restarting = null;
  let stopping = false;
  const options = { cwd: HERE, python: process.env.SOAK_PYTHON ?? "python3", threads: 4 };

  const start = async () => {
    module = await python.import("soak_calls", options);
    generation += 1;
    await ctl.report("host", { pid: await module.pid() });
  };
  const restart = (seen) => {
    if (generation !== seen || stopping) return restarting;
    restarting ??= (async () => {
      await module.close().catch(() => {});
      while (!stopping) {
        try {
          await start();
          break;
        } catch (error) {
          if (!(error instanceof BothwaysError)) throw error;
          await ctl.report("call_fail", { type: error.constructor.name, error: describe(error), phase: "start" });
          await sleep(200);
        }
      }
      restarting = null;
    })();
    return restarting;
  };
  const loop = async (slow, rate) => {
    const pacer = new Pacer(rate);
    let k = 0;
    while (!stopping) {
      if (restarting) await restarting;
      const seen = generation;
      k += 1;
      stats.made += 1;
      stats.pending += 1;
      try {
        const result = slow ? await module.sleep(Number(args["slow-ms"]), k) : await module.echo(k);
        stats[result === k ? "ok" : "wrong"] += 1;
      } catch (error) {
        if (!(error instanceof BothwaysError)) throw error;
        stats.failed += 1;
        const phase = error instanceof ChildExited || error instanceof TransportClosed ? "call" : "other";
        await ctl.report("call_fail", { type: error.constructor.name, error: describe(error), phase });
        await restart(seen);
      } finally {
        stats.pending -= 1;
      }
      await pacer.wait();
    }
  };
  const libraryPending = () => module?.peer?.endpoint?.pending?.length ?? -1;

  await start();
  ctl.handlers.set("stop", () => {
    stopping = true;
  });
  await ctl.report("ready", { pid: process.pid });
  const threads = Number(args.threads);
  const loops = [loop(true, 1000 / Number(args["slow-ms"]))];
  for (let t = 0; t < threads; t += 1) loops.push(loop(false, Number(args.rate) / threads));
  const ticker = setInterval(() => ctl.report("calls", { ...stats, lib_pending: libraryPending() }), 500);
  await Promise.all(loops);
  clearInterval(ticker);
  await ctl.report("calls", { ...stats, lib_pending: libraryPending() });
  await module.close();
}

async function main() {
  const { values: args, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: "string", default: "" },
      inc: { type: "string", default: "" },
      rate: { type: "string", default: "200" },
      pad: { type: "string", default: "32" },
      threads: { type: "string", default: "4" },
      "slow-ms": { type: "string", default: "200" },
    },
  });
  const role = positionals[0];
  if (role === "stdio-child") return runStdioChild(args);
  const ctl = new Control();
  const roles = { sender: runSender, receiver: runReceiver, "stdio-parent": runStdioParent, caller: runCaller };
  try {
    await roles[role](ctl, args);
  } catch (error) {
    await ctl.report("error", { error: describe(error) });
    throw error;
  }
  await ctl.report("bye");
  process.exit(0); // (the control reader keeps stdin open)
}

await main();
