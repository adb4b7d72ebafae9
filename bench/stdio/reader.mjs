// Benchmark reader on the Node side: spawns the Python writer and times receiving everything.
//   node reader.mjs MODE KIND COUNT PYTHON     prints {"seconds", "messages", "bytes"}
// MODE: ours (bothways spawn + for await), raw (count bytes), pyshell (python-shell JSON mode),
// codec (no process: bare JSON.parse over the pre-split lines, for the codec-bound rate).
import { spawn as rawSpawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { encode } from '../../js/src/index.js';
import { spawn } from '../../js/src/transports/stdio.js';
import { make } from './messages.mjs';

const [mode, kind, count, python] = [process.argv[2], process.argv[3], Number(process.argv[4]), process.argv[5]];
const writer = fileURLToPath(new URL('./writer.py', import.meta.url));
// The clock starts at the first byte or message: the writer's start-up and the making of its
// messages are not timed, only the stream.
let started = null;
const tick = () => { started ??= process.hrtime.bigint(); };
let messages = 0;
let bytes = 0;

if (mode === 'ours' || mode === 'ours_many') {
  const child = spawn([python, writer, mode, kind, String(count)]);
  for await (const message of child) {
    tick();
    messages += message === undefined ? 0 : 1;
  }
} else if (mode === 'raw') {
  const child = rawSpawn(python, [writer, 'raw', kind, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  for await (const chunk of child.stdout) {
    tick();
    bytes += chunk.length;
  }
  messages = count;
} else if (mode === 'pyshell') {
  // python-shell is a dev dependency of js/: resolve it from there
  const { PythonShell } = createRequire(new URL('../../js/package.json', import.meta.url))('python-shell');
  await new Promise((resolve, reject) => {
    const shell = new PythonShell(writer, { mode: 'json', pythonPath: python, args: ['pyshell', kind, String(count)] });
    shell.on('message', () => { tick(); messages += 1; });
    shell.end((err) => (err ? reject(err) : resolve()));
  });
} else if (mode === 'codec') {
  const lines = make(kind, count).map((v) => encode(v).slice(0, -1));
  const t0 = process.hrtime.bigint();
  for (const line of lines) {
    JSON.parse(line);
    messages += 1;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ seconds, messages, bytes }) + '\n');
  process.exit(0);
} else if (mode === 'encode') {
  const values = make(kind, count);
  const t0 = process.hrtime.bigint();
  for (const v of values) {
    JSON.stringify(v);
    messages += 1;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ seconds, messages, bytes }) + '\n');
  process.exit(0);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
if (messages !== count) throw new Error(`expected ${count} messages, got ${messages}`);
process.stdout.write(JSON.stringify({ seconds, messages, bytes }) + '\n');
