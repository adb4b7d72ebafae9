// The load benchmark's Node listeners: node listener.mjs KIND TOTAL
// KIND "bothways": bothways' listen("tcp://127.0.0.1:0"); "bare": a bare net server that counts
// the newlines it reads (backlog 4096 too). Prints the port, then "done" once TOTAL messages came.
import net from "node:net";

import { listen } from "../../js/src/index.js";

const [kind, total] = [process.argv[2], Number(process.argv[3])];
let count = 0;
const finish = () => {
  console.log("done");
  process.exit(0);
};
if (kind === "bare") {
  const server = net.createServer((socket) => {
    socket.on("data", (chunk) => {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) count++;
      if (count >= total) finish();
    });
    socket.on("end", () => socket.end());
    socket.on("error", () => {});
  });
  server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, () => console.log(server.address().port));
} else {
  const listener = await listen("tcp://127.0.0.1:0");
  console.log(listener.url.split(":").at(-1));
  for await (const _ of listener) {
    if (++count >= total) finish();
  }
}
