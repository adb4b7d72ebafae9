// The load benchmark's clients: node generator.mjs PORT CLIENTS MESSAGES
// Opens CLIENTS plain TCP connections to 127.0.0.1:PORT at once; once all are connected, each
// writes MESSAGES NDJSON lines {"c": i, "seq": j} in one write and ends; prints the times (ms):
// {"connect": all connected, "done": every connection closed by the server after reading all}.
import net from "node:net";
import { performance } from "node:perf_hooks";

const [port, clients, messages] = process.argv.slice(2).map(Number);
const start = performance.now();
const sockets = await Promise.all(
  Array.from(
    { length: clients },
    (_, c) =>
      new Promise((resolve, reject) => {
        const socket = net.connect({ host: "127.0.0.1", port }, () => resolve(socket));
        socket.setNoDelay(true);
        socket.on("error", reject);
        socket.c = c;
      }),
  ),
);
const connected = performance.now();
await Promise.all(
  sockets.map(
    (socket) =>
      new Promise((resolve) => {
        socket.on("close", resolve);
        socket.resume(); // read (and drop) whatever the server says, up to its FIN
        let lines = "";
        for (let seq = 0; seq < messages; seq++) lines += `{"c":${socket.c},"seq":${seq}}\n`;
        socket.end(lines);
      }),
  ),
);
const done = performance.now();
console.log(JSON.stringify({ connect: connected - start, done: done - start }));
