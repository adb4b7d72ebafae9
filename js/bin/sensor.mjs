#!/usr/bin/env node
/**
 * `bothways-sensor`: the Node.js temperature sensor of the telemetry app; the same flags, with
 * the same meaning, as Python's `bothways sensor` (src/bothways/telemetry/sensor.py).
 *
 *     bothways-sensor [--id ID] [--interval S | --rate R] [--count N] [--seed N] [--to URL]
 *                     [--bare] [--buffer N] [--wait S]
 *
 * By default it is the tutorial's sensor (examples/tutorial/sensor.js): a temperature uniform in
 * -5..15 °C every 0-5 s (random), forever, one line per reading on stdout; but a line is a whole
 * reading, `{"sensor": ID, "seq": n, "t": epoch seconds, "celsius": x}` (`--bare`: the tutorial's
 * bare number). `--rate R` sends R readings a second, in batches (`sendMany`); `--to URL` sends
 * to any bothways channel (`tcp://`, `ws://`, `fifo:`, `file:`, `stdio:`) or POSTs NDJSON
 * batches to `http://host:port/api/readings`.
 *
 * - `seq` starts at the start time in microseconds and goes up by one per reading, so a sensor
 *   restarted with the same `--id` numbers its readings above the old ones, and a reading sent
 *   twice is stored once.
 * - Every reading goes into an Outbox (js/src/telemetry.js; `--buffer`, 10,000) that a Sender
 *   delivers: when the channel is lost, the readings stay, the sensor connects again with
 *   back-off and sends them once the channel is back; when the buffer is full the oldest are
 *   dropped, and counted on stderr. On tcp, ws and fifo a sent reading is kept 10 s (or three
 *   intervals) and sent again after a reconnection; never a bare number (a listener numbers
 *   those on arrival: a copy would be stored twice).
 * - The end (`--count`): what is held is delivered and the channel closed (on tcp and ws, the
 *   listener confirms it read everything), `--wait` seconds at most (10); exit 0, or 1 when
 *   readings could not be delivered. SIGINT or SIGTERM: it stops making readings, sends what it
 *   holds within 2 s, exits 0. An HTTP 4xx answer or a refusal: exit 1. Bad usage: exit 2.
 *   stdout closed (the reader went away): a quiet exit 0.
 */

import { hostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { DEFAULT_BUFFER, FINAL_WAIT, MAX_SEQ, Outbox, RESEND_WINDOW, Sender } from "../src/telemetry.js";

const PROGRAM = "bothways-sensor";
const LOW = -5; // °C, the tutorial's range
const HIGH = 15;
const MAX_PAUSE = 5; // the tutorial's longest random pause, seconds
const STOP_WAIT = 2000; // ms to deliver what is held after SIGINT/SIGTERM
const TICK = 5; // ms between batches at a --rate
const RATE_BATCH = 5000; // readings made at once at most

const HELP = `usage: ${PROGRAM} [--help] [--id ID] [--interval S] [--rate R] [--count N] [--seed N]
                       [--to URL] [--bare] [--buffer N] [--wait S]

Sends temperature readings (°C, uniform in -5..15) to stdout or to any bothways channel, keeping
them while the channel is down.

options:
  --help        show this help message and exit
  --id ID       the sensor's name (default: js-<hostname>-<pid>)
  --interval S  seconds between readings (default: random 0-5)
  --rate R      readings per second, sent in batches (overrides --interval)
  --count N     stop after N readings (default: never)
  --seed N      seed the generator, for a repeatable series
  --to URL      where to send: tcp://, ws://, fifo:, file:, stdio:, or
                http://host:port/api/readings (POSTed in NDJSON batches); default: stdout
  --bare        send bare numbers, as the tutorial's sensor
  --buffer N    readings kept while the channel is down; the oldest go first (default: ${DEFAULT_BUFFER})
  --wait S      at the end, seconds to go on trying to deliver what is held (default: ${FINAL_WAIT / 1000})
`;

/**
 * Exits 2 with the usage and `message` on stderr, as argparse does.
 * @param {string} message
 * @returns {never}
 */
function usageError(message) {
  process.stderr.write(`${HELP.slice(0, HELP.indexOf("\n\n"))}\n${PROGRAM}: error: ${message}\n`);
  process.exit(2);
}

/**
 * A number flag, checked.
 * @param {string | undefined} text
 * @param {string} flag
 * @param {(n: number) => boolean} ok
 * @param {string} what
 * @returns {number | undefined}
 */
function number(text, flag, ok, what) {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || !ok(n)) {
    usageError(`argument ${flag}: must be ${what}, not '${text}'`);
  }
  return n;
}

/**
 * The flags, checked (`--help` and bad usage exit here).
 * @param {string[]} argv
 */
function readFlags(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        help: { type: "boolean", default: false },
        id: { type: "string" },
        interval: { type: "string" },
        rate: { type: "string" },
        count: { type: "string" },
        seed: { type: "string" },
        to: { type: "string" },
        bare: { type: "boolean", default: false },
        buffer: { type: "string" },
        wait: { type: "string" },
      },
    }));
  } catch (error) {
    usageError(/** @type {Error} */ (error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const whole = (/** @type {number} */ n) => Number.isSafeInteger(n);
  return {
    id: values.id || `js-${hostname()}-${process.pid}`,
    interval: number(values.interval, "--interval", (n) => n >= 0, ">= 0 seconds"),
    rate: number(values.rate, "--rate", (n) => n > 0, "> 0 readings a second"),
    count: number(values.count, "--count", (n) => whole(n) && n >= 0, "a whole number >= 0") ?? Infinity,
    seed: number(values.seed, "--seed", whole, "a whole number"),
    to: values.to || "stdio:",
    bare: Boolean(values.bare),
    buffer: number(values.buffer, "--buffer", (n) => whole(n) && n >= 1, "a whole number >= 1") ?? DEFAULT_BUFFER,
    wait: number(values.wait, "--wait", (n) => n >= 0, ">= 0 seconds") ?? FINAL_WAIT / 1000,
  };
}

/**
 * mulberry32: a small generator that can be seeded (Math.random cannot), 32 bits of state.
 * @param {number} seed
 * @returns {() => number} floats in [0, 1)
 */
function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Makes readings.
 * @param {ReturnType<typeof readFlags>} flags
 */
function generator(flags) {
  const random = flags.seed === undefined ? Math.random : mulberry32(flags.seed);
  const uniform = (/** @type {number} */ low, /** @type {number} */ high) => low + (high - low) * random();
  let seq = Math.floor((performance.timeOrigin + performance.now()) * 1000); // the start, in µs
  return {
    /** @returns {number} seconds to the next reading */
    pause: () => flags.interval ?? uniform(0, MAX_PAUSE),
    /**
     * @param {number} t seconds since the epoch.
     * @returns {unknown} one reading.
     */
    reading(t) {
      const celsius = Math.round(uniform(LOW, HIGH) * 100) / 100;
      if (flags.bare) return celsius;
      const reading = { sensor: flags.id, seq, t, celsius };
      seq = seq < MAX_SEQ ? seq + 1 : 0;
      return reading;
    },
  };
}

/**
 * Makes readings on the flags' schedule and hands them to `sender`, until `count` or `signal`.
 * @param {ReturnType<typeof readFlags>} flags
 * @param {Sender} sender
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
async function produce(flags, sender, signal) {
  const make = generator(flags);
  const { count, rate } = flags;
  let made = 0;
  const wait = async (/** @type {number} */ ms) => {
    await sleep(Math.max(ms, 0), undefined, { signal }).catch(() => {});
  };
  if (rate !== undefined) {
    const start = performance.now();
    while (!signal.aborted && made < count) {
      const elapsed = performance.now() - start;
      const due = Math.min(Math.floor((elapsed / 1000) * rate) + 1 - made, count - made, RATE_BATCH);
      if (due > 0) {
        const t = Date.now() / 1000;
        const batch = [];
        for (let i = 0; i < due; i++) batch.push(make.reading(t));
        made += due;
        sender.add(batch);
        if (sender.outbox.pending > sender.outbox.capacity / 2) {
          await wait(TICK); // the sender lags: let it catch up (the buffer bounds memory)
        }
        continue;
      }
      await wait(Math.max((made / rate) * 1000 - elapsed, TICK)); // the next reading's time, or a tick
    }
    return;
  }
  let due = performance.now();
  while (!signal.aborted && made < count) {
    sender.add([make.reading(Date.now() / 1000)]);
    made++;
    if (made >= count) return;
    due += make.pause() * 1000;
    await wait(due - performance.now());
  }
}

async function main() {
  const flags = readFlags(process.argv.slice(2));
  const say = (/** @type {string} */ text) => process.stderr.write(`${PROGRAM} ${flags.id}: ${text}\n`);
  // Bare numbers are numbered on arrival: sending one again would store it twice.
  const window = flags.bare ? 0 : Math.max(RESEND_WINDOW, 3 * 1000 * (flags.interval ?? MAX_PAUSE));
  let sender;
  try {
    sender = new Sender(flags.to, { outbox: new Outbox({ capacity: flags.buffer, window }), say });
  } catch (error) {
    usageError(`argument --to: ${/** @type {Error} */ (error).message}`);
  }
  const stop = new AbortController();
  let signalled = false;
  let finishing = false; // every reading is made: what is held is being delivered
  for (const name of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
    process.on(name, () => {
      if (signalled) process.exit(0); // a second signal: at once
      signalled = true;
      stop.abort();
      if (finishing) sender.finish(STOP_WAIT); // (else once the last reading is made; the sooner deadline holds)
    });
  }
  sender.done.then(() => stop.abort()); // failed, or stdout gone: stop making readings

  await produce(flags, sender, stop.signal);
  finishing = true;
  const wait = flags.wait * 1000;
  const left = await sender.finish(signalled || sender.gone ? Math.min(wait, STOP_WAIT) : wait);
  const stopped = signalled || sender.gone; // (a signal may come while it finishes)
  if (sender.failed !== null) return 1;
  if (left > 0 && !sender.gone) {
    say(`${left} readings could not be delivered to ${flags.to}`);
    return stopped ? 0 : 1;
  }
  return 0;
}

process.exitCode = await main();
process.exit();
