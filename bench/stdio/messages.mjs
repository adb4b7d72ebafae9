// The benchmark's messages, made the same way in both languages (see messages.py).
// KIND: small (a reading), large (30,000 short readings, ~1.2 MB) or readings:N (N of them).
export function make(kind, count) {
  const out = [];
  const per = kind.startsWith('readings:') ? Number(kind.slice('readings:'.length)) : 30000;
  for (let i = 0; i < count; i++) {
    if (kind === 'small') {
      out.push({ sensor: `s${i % 8}`, seq: i, t: 1732470000.0 + i * 0.25, celsius: Math.round((-5 + ((i * 7.3) % 20)) * 100) / 100 });
    } else {
      const readings = [];
      for (let j = 0; j < per; j++) readings.push({ seq: j, celsius: -5 + ((j * 7.3) % 20) });
      out.push({ batch: i, readings });
    }
  }
  return out;
}
