// The benchmark's messages, made the same way in both languages (see messages.py).
export function make(kind, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    if (kind === 'small') {
      out.push({ sensor: `s${i % 8}`, seq: i, t: 1732470000.0 + i * 0.25, celsius: Math.round((-5 + ((i * 7.3) % 20)) * 100) / 100 });
    } else {
      const readings = [];
      for (let j = 0; j < 30000; j++) readings.push({ seq: j, celsius: -5 + ((j * 7.3) % 20) });
      out.push({ batch: i, readings });
    }
  }
  return out;
}
