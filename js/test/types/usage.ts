// The public API used the way README.md shows it, from TypeScript. types.test.js copies this file
// next to a node_modules/bothways that carries freshly generated declarations and runs
// `tsc --noEmit` on it: it must compile without a single error. Nothing here is ever run.
import {
  BothwaysError,
  ChildExited,
  DecodeError,
  Decoder,
  EncodeError,
  Messages,
  RemoteError,
  TransportClosed,
  connect,
  decode,
  encode,
  encodeMany,
  listen,
} from "bothways";
import { CallTimeout } from "bothways/errors";
import { Peer } from "bothways/peer";
import { python } from "bothways/python";
import { spawn, stdio, supervise } from "bothways/stdio";
import { memoryPair, raiseError, type Channel, type Listener } from "bothways/transports/base";
import { parse } from "bothways/urls";
import { connect as browserConnect } from "bothways/browser";
import { FIELDS, InvalidReading, MAX_SEQ, Outbox, Sender, toReading, type Reading } from "bothways/telemetry";
import { MQTT_MODULE, listen as browserListen } from "bothways/browser";
import { rpcConnect, rpcListen } from "bothways/mqtt";

// The wire format.
const line: string = encode({ sensor: "s1", celsius: NaN }); // '{"sensor":"s1","celsius":null}\n'
const lines: string = encodeMany([{ seq: 1 }, { seq: 2 }], { strict: true });
const value: { a: number } = decode('{"a": 1}'); // { a: 1 }
decode(new TextEncoder().encode(line + lines));

declare const chunk1: Uint8Array;
const chunk2 = 'q": 2}\n';
const decoder = new Decoder({ maxLine: 1 << 20 });
for (const event of [...decoder.feed(chunk1), ...decoder.feed(chunk2), ...decoder.feedEof()]) {
  if (event instanceof Messages) console.log(event.values, event.line);
  else if ("error" in event) console.warn(event.error.message, event.error.line, event.error.code); // "line 2, col 2: ..."
}
console.log(value.a, decoder.line, decoder.buffered);

// Child processes: Node.js spawns Python.
export async function parent(): Promise<number> {
  const child = spawn(["python3", "worker.py"]); // PYTHONUNBUFFERED set for you
  await child.send({ n: 21 });
  child.closeStdin();
  for await (const message of child) console.log(message); // throws ChildExited on a crash
  console.log(child.pid, child.stderrTail);
  return child.wait();
}

// The child's side.
export async function worker(): Promise<void> {
  const channel = stdio();
  for await (const message of channel) await channel.send({ double: message.n * 2 });
}

export async function scoped(signal: AbortSignal): Promise<void> {
  await using child = spawn(["node", "worker.mjs"], { channelFd: true, stderr: "keep", signal });
  await child.sendMany([1, 2, 3]);
  const supervisor = supervise(["python3", "worker.py"], {
    maxRestarts: 3,
    onRestart: (error, attempt, delay) => console.warn(error.returncode, attempt, delay),
  });
  await supervisor.close();
}

// Channels: one URL, any transport.
export async function channels(): Promise<void> {
  const inbox: Listener = await listen("tcp://127.0.0.1:9000?token=s3cret");
  for await (const reading of inbox) console.log(reading);

  const out: Channel = await connect("tcp://127.0.0.1:9000?token=s3cret&reconnect=1");
  await out.send({ sensor: "kitchen", celsius: 21.5 });
  await out.close();

  const server = await listen(parse("ws://127.0.0.1:0/readings"), {
    origins: ["http://localhost:5000"],
    onError: raiseError,
    signal: AbortSignal.timeout(1000),
  });
  const one = await server.accept();
  console.log(server.url, await one.receive());
  await connect("file:/var/log/readings.ndjson", { maxBytes: 1 << 20, keep: 3 });
  await listen("file:/var/log/readings.ndjson", { state: "/tmp/position", follow: false });
  const live = await browserConnect("ws://127.0.0.1:8765/readings?token=s3cret");
  for await (const reading of live) console.log(reading);

  // MQTT: sensors publish to a broker, listeners share the subscription (and a page listens too).
  const ingest = await listen("mqtt://127.0.0.1:1883/sensors/#?share=ingest&client_id=ingest-1");
  const kitchen = await connect("mqtt://127.0.0.1:1883/sensors/kitchen?qos=1&timeout=5");
  await kitchen.sendMany([{ sensor: "kitchen", celsius: 21.5 }]); // resolves once the broker has them
  console.log(await ingest.receiveMany());
  const page = await browserListen("mqtt+ws://127.0.0.1:9001/sensors/#", {
    username: "ann",
    password: "s3cret",
    library: MQTT_MODULE,
  });
  console.log(page.clientId, await page.receiveMany());
  await browserConnect("mqtt+ws://127.0.0.1:9001/sensors/page", { qos: 2, clientId: "page-1" });
}

// Calls both ways.
export async function calls(): Promise<void> {
  const statistics = await python.import("statistics", { threads: 4 });
  console.log(await statistics.mean([1, 2, 3])); // 2; StatisticsError -> RemoteError
  console.log(await statistics.call("mean", [1, 2, 3]));
  await statistics.callWith("quantiles", { data: [1, 2, 3, 4], n: 4 }, { timeout: 1000 });
  console.log(statistics.module, statistics.functions);
  await statistics.close();

  const [left, right] = memoryPair();
  const caller = new Peer(left);
  const served = new Peer(right);
  served.expose((n: number) => n * 2, { name: "double" });
  await Promise.all([caller.start(), served.start()]);
  const doubled: number = await caller.call("double", 21);
  await caller.callWith("double", [doubled], { timeout: 1000, signal: AbortSignal.timeout(500) });
  await caller.notify("tick", 1);
  await caller.close();

  await using peer = new Peer(spawn(["node", "worker.mjs"], { channelFd: true }));
  await peer.start();

  // Calls through an MQTT broker: servers on a share group split them, a caller waits 5 s at most.
  (await new Peer(await rpcListen("mqtt://127.0.0.1:1883/services/stats?share=stats")).start()).expose(Math.max);
  const stats = await new Peer(await rpcConnect("mqtt://127.0.0.1:1883/services/stats", { callTimeout: 5000 })).start();
  const highest: number = await stats.callWith("max", [1, 3, 2], { timeout: stats.callTimeout });
}

// Errors: one tree, `code` on the class and on each instance.
export function explain(error: unknown): string {
  if (error instanceof ChildExited) {
    const returncode: number | null = error.returncode;
    return `${error.code}: ${returncode} ${error.signal} ${error.stderrTail}`;
  }
  if (error instanceof RemoteError) return `${error.remoteType}: ${error.reason} ${error.rpcCode}`;
  if (error instanceof EncodeError) return `${error.path}: ${error.reason}`;
  if (error instanceof DecodeError) return `${error.line}:${error.column} ${error.excerpt}`;
  if (error instanceof TransportClosed || error instanceof CallTimeout) return error.code;
  if (error instanceof BothwaysError) return JSON.stringify(error.toJson());
  return String(error);
}
const codes: string[] = [BothwaysError.code, DecodeError.code, ChildExited.code];
console.log(codes);

// Telemetry: what a reading is, and a sender that keeps readings while its channel is down.
export async function telemetry(message: unknown): Promise<void> {
  const seqs = new Map<string, number>();
  try {
    const reading: Reading = toReading(message, { source: "tcp://127.0.0.1:9000", now: Date.now() / 1000, seqs });
    const field: "sensor" | "seq" | "t" | "celsius" = FIELDS[0];
    console.log(reading.sensor, reading.seq <= MAX_SEQ, reading.t, reading.celsius, reading[field]);
  } catch (error) {
    if (error instanceof InvalidReading) console.warn(error.reason, error.source, error.code);
  }
  const outbox = new Outbox({ capacity: 1000, window: 10_000 });
  const sender = new Sender("tcp://127.0.0.1:9000", { outbox, say: (text: string) => console.warn(text) });
  sender.add([{ sensor: "s1", seq: 1, t: Date.now() / 1000, celsius: 21.5 }]);
  const left: number = await sender.finish(2000);
  console.log(left, outbox.pending, outbox.dropped, sender.delivered, sender.failed, sender.gone, sender.to);
}
