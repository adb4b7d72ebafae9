/**
 * The tutorial's Node.js sensor: a temperature in °C (uniform in -5..15) every 0-5 seconds.
 *
 *     node examples/tutorial/sensor.js [--interval SECONDS] [--count N] [--seed S]
 *
 * The tutorial's `temperature + '\n'` was already right: one reading per line is an NDJSON
 * stream of bare numbers. Added here: flags for tests and demos, a seedable generator (for a
 * repeatable series), and a quiet stop when the listener goes away (EPIPE) instead of a crash.
 */

import { flags as readFlags } from "./flags.js";

const flags = readFlags("Prints one temperature reading (°C) per line, the tutorial's Node.js sensor.", {
  interval: { type: "string", help: "seconds between readings (default: random 0-5)" },
  count: { type: "string", help: "stop after N readings (default: never)" },
  seed: { type: "string", help: "seed the generator, for a repeatable series" },
});

// Math.random() cannot be seeded; mulberry32 is a small, well-known generator that can.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = flags.seed === undefined ? Math.random : mulberry32(Number(flags.seed));
const uniform = (low, high) => low + (high - low) * random();
const count = flags.count === undefined ? Infinity : Number(flags.count);

// The listener went away: stop quietly.
process.stdout.on("error", (error) => {
  if (error.code !== "EPIPE") throw error;
  process.exit(0);
});

let sent = 0;
function tick() {
  const temperature = Math.round(uniform(-5, 15) * 100) / 100;
  process.stdout.write(temperature + "\n"); // one reading, one line
  sent += 1;
  if (sent < count) {
    const seconds = flags.interval === undefined ? uniform(0, 5) : Number(flags.interval);
    setTimeout(tick, seconds * 1000);
  }
}
tick();
