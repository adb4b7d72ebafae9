// Benchmark writer: sends COUNT messages of KIND to stdout, the way MODE does it.
//   node writer.mjs MODE KIND COUNT      MODE: ours (stdio().send per message) | ours_many | raw
import { encode } from '../../js/src/index.js';
import { stdio } from '../../js/src/transports/stdio.js';
import { make } from './messages.mjs';

const [mode, kind, count] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const values = make(kind, count);
if (mode === 'ours') {
  const channel = stdio();
  for (const value of values) await channel.send(value);
  await channel.close();
} else if (mode === 'ours_many') { // the batch API: one write per 1000 messages
  const channel = stdio();
  for (let i = 0; i < values.length; i += 1000) await channel.sendMany(values.slice(i, i + 1000));
  await channel.close();
} else if (mode === 'raw') {
  const data = Buffer.from(values.map((v) => encode(v)).join(''));
  for (let i = 0; i < data.length; i += 65536) {
    if (!process.stdout.write(data.subarray(i, i + 65536))) await new Promise((r) => process.stdout.once('drain', r));
  }
} else {
  throw new Error(`unknown mode ${mode}`);
}
