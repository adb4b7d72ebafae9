// Wrong uses of the public API. types.test.js runs `tsc --noEmit` on this file against freshly
// generated declarations: it must fail, with an error on every line marked `// wrong:` and on no
// other line. Nothing here is ever run.
import { Decoder, encode, listen, connect, notAnExport } from "bothways"; // wrong: no such export
import { ChildExited } from "bothways/errors";
import { Peer } from "bothways/peer";
import { python } from "bothways/python";
import { spawn, stdio } from "bothways/stdio";
import { Inbox } from "bothways/nowhere"; // wrong: not a subpath of the package

export async function misuse(): Promise<void> {
  encode(); // wrong: the value is required
  encode({ a: 1 }, { strict: "yes" }); // wrong: strict is a boolean
  new Decoder().feed(42); // wrong: bytes or a string
  new Decoder({ maxLine: "16 MiB" }); // wrong: a number
  const line: number = encode(1); // wrong: encode gives a string
  await listen("tcp://127.0.0.1:9000", { timeout: "10s" }); // wrong: milliseconds, a number
  await listen("tcp://127.0.0.1:9000", { tokn: "s3cret" }); // wrong: no such option
  await connect(9000); // wrong: a URL string or an Address
  spawn(["python3", "worker.py"], { stderr: "drop" }); // wrong: "forward", "keep" or a function
  spawn(["python3"], { channelFd: 3 }); // wrong: a boolean
  stdio({ maxLine: null }); // wrong: a number
  await python.import(); // wrong: the module name is required
  new Peer(); // wrong: a channel is required
  const code: number = new ChildExited("x", { returncode: 1 }).code; // wrong: a string
  console.log(notAnExport, Inbox, line, code);
}
