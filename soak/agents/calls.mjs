// The module a Python caller serves through bothways.node.require: quick and slow calls, and the
// pid of the Node host, which the soak kills mid-call.
import { setTimeout as sleepFor } from "node:timers/promises";

export function echo(k) {
  return k;
}

export async function sleep(ms, k) {
  await sleepFor(ms);
  return k;
}

export function pid() {
  return process.pid;
}
