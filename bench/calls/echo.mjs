// Raw pipe ping-pong (no JSON-RPC): for each line read, write the same answer line back.
const answer = Buffer.from(`${process.argv[2]}\n`);

process.stdin.on("data", (chunk) => {
  let lines = 0;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
    lines++;
  }
  if (lines === 1) {
    process.stdout.write(answer);
  } else if (lines > 1) {
    process.stdout.write(Buffer.concat(Array(lines).fill(answer)));
  }
});
