/**
 * The other direction the tutorial mentions: a Node.js web server that Python talks to.
 *
 *     node examples/tutorial/node-server.js [--port 3000]      (0 picks a free port)
 *
 * GET  /hello           -> {"greeting":"Hello from Node.js!"}
 * POST /hello  (JSON)   -> {"received": <the value>}, and the value is kept
 * GET  /hello/received  -> the values POSTed so far (the last 100)
 *
 * What usually goes wrong here: `JSON.parse` on each "data" chunk (a body may come in several),
 * or on the whole body without a try, so one malformed request crashes the server. Here the whole
 * body is read (up to a limit: 413), checked for a JSON content type (415), and parsed with
 * bothways' decode, so a bad body gets a 400 with a JSON error naming the line and column. The
 * server listens on 127.0.0.1 only and prints its URL.
 */

import http from "node:http";
import { DecodeError, decode, encode } from "../../js/src/index.js";
import { flags as readFlags } from "./flags.js";

const LIMIT = 1024 * 1024; // bytes of JSON per POST
const received = [];

const flags = readFlags("The tutorial's Node.js web server: GET and POST JSON at /hello.", {
  port: { type: "string", default: "3000", help: "the port on 127.0.0.1 (default: 3000; 0 picks a free one)" },
});

function reply(response, status, value) {
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(encode(value));
}

// The whole body, or null when it is over LIMIT (read to the end all the same, so that the
// client gets our 413 instead of a connection reset while it is still sending).
async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size <= LIMIT) chunks.push(chunk);
  }
  return size <= LIMIT ? Buffer.concat(chunks) : null;
}

async function handle(request, response) {
  const error = (status, code, message, details = {}) =>
    reply(response, status, { error: { code, message, ...details } });
  const route = `${request.method} ${request.url}`;
  if (route === "GET /hello") {
    return reply(response, 200, { greeting: "Hello from Node.js!" });
  }
  if (route === "GET /hello/received") {
    return reply(response, 200, received);
  }
  if (route !== "POST /hello") {
    return error(404, "NOT_FOUND", `no route for ${route}`);
  }
  const body = await readBody(request);
  const type = request.headers["content-type"] ?? "";
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
    return error(415, "UNSUPPORTED_MEDIA_TYPE", `send Content-Type: application/json (got ${type || "none"})`);
  }
  if (body === null) {
    return error(413, "PAYLOAD_TOO_LARGE", `the body is over the limit of ${LIMIT} bytes`, { limit: LIMIT });
  }
  let value;
  try {
    value = decode(body);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return reply(response, 400, { error: err.toJson() }); // {code, message, line, column, excerpt}
  }
  console.log("POST /hello:", encode(value).trimEnd());
  received.push(value);
  received.splice(0, received.length - 100);
  return reply(response, 200, { received: value });
}

const server = http.createServer((request, response) => {
  handle(request, response).catch((err) => {
    console.error(`${request.method} ${request.url}:`, err); // e.g. the client hung up mid-body
    response.destroy();
  });
});

server.listen(Number(flags.port), "127.0.0.1", () => {
  console.log(`Listening on http://127.0.0.1:${server.address().port}/hello`);
});
