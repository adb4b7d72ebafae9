// The start-up benchmark's Node side: python.import("statistics") -> mean([1, 2, 3]) -> close,
// beside python-shell's runString doing the same call, interleaved; prints the times (ms) as JSON.
//     node node_side.mjs PYTHON ROUNDS
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

import { python } from "../../js/src/python.js";

const requireFromJs = createRequire(new URL("../../js/package.json", import.meta.url));
const [interpreter, rounds] = [process.argv[2], Number(process.argv[3])];

async function bothways() {
  const m = await python.import("statistics", { python: interpreter });
  const mean = await m.mean([1, 2, 3]);
  await m.close();
  return mean;
}

let PythonShell = null;
try {
  ({ PythonShell } = requireFromJs("python-shell"));
} catch {
  // reported as missing
}
const code = "import json, statistics; print(json.dumps(statistics.mean([1, 2, 3])))";
async function pyshell() {
  const [mean] = await PythonShell.runString(code, { mode: "json", pythonPath: interpreter });
  return mean;
}

const ways = { bothways, ...(PythonShell ? { pyshell } : {}) };
const times = Object.fromEntries(Object.keys(ways).map((name) => [name, []]));
for (let round = 0; round < rounds + 1; round++) {
  for (const [name, way] of Object.entries(ways)) {
    const start = performance.now();
    const mean = await way();
    const took = performance.now() - start;
    if (mean !== 2) throw new Error(`${name}: mean gave ${mean}`);
    if (round > 0) times[name].push(took); // round 0 warms the disk cache
  }
}
console.log(JSON.stringify({ times, missing: PythonShell ? [] : ["python-shell (npm)"] }));
