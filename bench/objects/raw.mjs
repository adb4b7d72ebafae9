// The raw pipe bandwidth bench/objects.py compares the bytes transfers with: no protocol at all.
//
//   node raw.mjs write N   after a line on stdin, writes N bytes to stdout (1 MiB chunks), exits
//   node raw.mjs read N    says "ready\n", reads N bytes from stdin, then says "done\n"
import { writeSync } from "node:fs";

const [mode, countText] = process.argv.slice(2);
const count = Number(countText);

if (mode === "write") {
  const chunk = Buffer.alloc(1 << 20, 7);
  process.stdin.once("data", () => {
    let left = count;
    const more = () => {
      while (left > 0) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (!process.stdout.write(piece)) {
          process.stdout.once("drain", more);
          return;
        }
      }
      process.stdout.end();
      process.stdin.destroy();
    };
    more();
  });
} else {
  let got = 0;
  process.stdin.on("data", (chunk) => {
    got += chunk.length;
    if (got >= count) {
      writeSync(1, "done\n");
      process.exit(0);
    }
  });
  writeSync(1, "ready\n");
}
