#!/usr/bin/env node
/**
 * `bothways-listen`: the Node.js listener of the telemetry app. Readings from any number of
 * sources at once, validated, printed one NDJSON line each on stdout, or forwarded (`--to URL`).
 * Python's `bothways listen` (src/bothways/telemetry/listen.py) takes the same sources and stores
 * them in SQLite instead.
 *
 *     bothways-listen [--to URL] SOURCE [SOURCE ...]
 *
 * - A SOURCE is a channel URL to listen on (`tcp://127.0.0.1:9000`, `ws://127.0.0.1:8765/x`,
 *   `fifo:/path`, `file:/path`, `stdio:` for our own stdin) or, when it is not a URL, a command
 *   whose stdout is the stream, as one argument (`"python3 sensor.py --interval 1"`): split into
 *   words as a POSIX shell would (quotes, backslashes), never run by a shell, started with
 *   bothways' `spawn` (its own process group, its stderr shown with its name, reaped).
 * - Every message goes through `toReading` (js/src/telemetry.js) with `source` = the source as
 *   given (a token's value hidden): that names the sensor of bare numbers. An invalid reading or
 *   a line that is not JSON is reported on stderr with the source and the reason (five a second
 *   per source at most, the rest counted), never printed, never fatal.
 * - What each source does is said on stderr: `bothways-listen: tcp://127.0.0.1:0: listening on
 *   tcp://127.0.0.1:40123` (the real port), `... started (pid 123)`, `... ended`.
 * - `--to URL`: any channel (or `http://host:port/api/readings`), through a Sender: batches
 *   (`sendMany`), kept and sent again while that channel is down.
 * - It ends when every source has ended (children exited, stdin closed), or at SIGINT/SIGTERM:
 *   listeners are closed, children get SIGTERM (a bothways sensor then sends what it holds and
 *   exits; its last readings are still read), `GRACE` s later what is left is killed and reaped,
 *   and what is held is delivered (2 s at most). Last on stderr: `bothways-listen: stopped: N
 *   readings, M invalid, K bad lines`. Exit status: 0; 1 when a source failed (or none could be
 *   opened) and we were not stopped, or the readings could not be forwarded; 2 for bad usage.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { TRANSPORTS, listen } from "../src/channels.js";
import { ChildExited, TransportClosed } from "../src/errors.js";
import { FINAL_WAIT, InvalidReading, Sender, toReading } from "../src/telemetry.js";
import { spawn } from "../src/transports/stdio.js";
import { parse } from "../src/urls.js";

const PROGRAM = "bothways-listen";
const GRACE = 3000; // ms the sources are given to finish after the stop
const CHILD_GRACE = 1000; // ms between a child's SIGTERM and its SIGKILL, when closing it
const STOP_WAIT = 2000; // ms to deliver what is held after SIGINT/SIGTERM
const REPORTS_PER_SECOND = 5; // problems shown per source and second; the rest are counted

const HELP = `usage: ${PROGRAM} [--help] [--to URL] SOURCE [SOURCE ...]

Prints the readings of any number of sources (listened on, or commands run), validated, one
NDJSON line each; or forwards them to a channel.

positional arguments:
  SOURCE      a URL to listen on (tcp://127.0.0.1:9000, ws://127.0.0.1:8765/path, fifo:/path,
              file:/path, stdio:) or a command whose stdout is read (quote it:
              'python3 sensor.py --interval 1')

options:
  --help      show this help message and exit
  --to URL    forward the readings there (tcp://, ws://, fifo:, file:,
              http://host:port/api/readings) instead of printing them
`;

/**
 * Exits 2 with the usage and `message` on stderr, as argparse does.
 * @param {string} message
 * @returns {never}
 */
function usageError(message) {
  process.stderr.write(`${HELP.slice(0, HELP.indexOf("\n"))}\n${PROGRAM}: error: ${message}\n`);
  process.exit(2);
}

/** @param {string} text a line for stderr. */
function say(text) {
  process.stderr.write(`${PROGRAM}: ${text}\n`);
}

/**
 * Splits a command into words as a POSIX shell (and Python's `shlex.split`) does: whitespace
 * between words; 'single quotes' keep everything; "double quotes" keep everything but the
 * escapes \\, \", \$, \` and a backslash-newline; outside quotes a backslash keeps the next
 * character. Nothing is expanded: no shell runs it.
 * @param {string} text
 * @returns {string[]}
 * @throws {SyntaxError} a quote is not closed, or a backslash ends the text.
 */
function splitCommand(text) {
  const words = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      continue;
    }
    inWord = true;
    if (ch === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new SyntaxError("no closing quotation");
      word += text.slice(i + 1, end);
      i = end;
    } else if (ch === '"') {
      for (i++; ; i++) {
        if (i >= text.length) throw new SyntaxError("no closing quotation");
        const c = text[i];
        if (c === '"') break;
        if (c === "\\" && i + 1 < text.length && '\\"$`\n'.includes(text[i + 1])) {
          i++;
          if (text[i] !== "\n") word += text[i];
        } else {
          word += c;
        }
      }
    } else if (ch === "\\") {
      if (i + 1 >= text.length) throw new SyntaxError("no escaped character");
      i++;
      if (text[i] !== "\n") word += text[i];
    } else {
      word += ch;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * One source of readings: a channel URL listened on, or a command spawned.
 */
class Source {
  /** @type {import("../src/transports/base.js").Channel | null} */
  channel = null;
  /** @type {import("../src/transports/stdio.js").Child | null} */
  child = null;
  readings = 0;
  invalid = 0;
  badLines = 0;
  /** Why it failed (when it did). @type {string | null} */
  failed = null;
  #second = 0;
  #reported = 0;

  /**
   * @param {string} text as given.
   * @throws {Error} it cannot be a source (http, an unbalanced quote, an empty command).
   */
  constructor(text) {
    /** @type {string} */
    this.text = text;
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text)?.[1].toLowerCase() ?? null;
    /** @type {boolean} */
    this.isUrl = scheme !== null && (Object.hasOwn(TRANSPORTS, scheme) || scheme === "http" || scheme === "https");
    /** The source as given (a token's value hidden): printed, and the sensor of its bare numbers. */
    this.name = this.isUrl ? text.replace(/([?&]token=)[^&#]*/g, "$1***") : text;
    /** @type {string[]} */
    this.argv = [];
    /** @type {import("../src/urls.js").Address | null} */
    this.address = null;
    if (!this.isUrl) {
      this.argv = splitCommand(text);
      if (this.argv.length === 0) throw new Error("an empty command");
    } else if (scheme === "http" || scheme === "https") {
      throw new Error(`${this.name}: HTTP is the web app's: POST readings to \`bothways serve\` instead`);
    } else {
      this.address = parse(text); // a bad URL fails here, before anything starts
    }
  }

  /**
   * Listens or spawns.
   * @param {(error: import("../src/errors.js").DecodeError) => void} onError
   * @returns {Promise<string>} what to say about it (`listening on tcp://...`).
   */
  async open(onError) {
    if (!this.isUrl) {
      const child = spawn(this.argv, { onError, grace: CHILD_GRACE });
      this.channel = this.child = child;
      return child.pid === null ? "could not be started" : `started (pid ${child.pid})`;
    }
    const address = /** @type {import("../src/urls.js").Address} */ (this.address);
    const listener = await listen(address, { onError });
    this.channel = listener;
    switch (address.scheme) {
      case "file":
        return `${address.options("listen").follow === false ? "reading" : "following"} ${address.path}`;
      case "fifo":
        return `reading the FIFO ${address.path}`;
      case "stdio":
        return "reading stdin";
      default:
        return `listening on ${listener.url || this.name}`;
    }
  }

  /**
   * Asks the source to finish: a child gets SIGTERM (it may send what it holds and exit: it is
   * read to the end), a listener is closed.
   */
  interrupt() {
    if (this.child !== null) {
      const pid = this.child.pid;
      if (this.child.returncode === null && pid !== null) {
        try {
          process.kill(-pid, "SIGTERM"); // the child leads its own process group
        } catch {
          // gone already
        }
      }
      return;
    }
    this.channel?.close().catch(() => {});
  }

  /**
   * Whether to show one more problem now (`REPORTS_PER_SECOND` at most).
   * @returns {boolean}
   */
  mayReport() {
    const second = Math.floor(performance.now() / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#reported = 0;
    }
    return ++this.#reported <= REPORTS_PER_SECOND;
  }
}

/**
 * The flags and sources, checked (`--help` and bad usage exit here).
 * @param {string[]} argv
 */
function readFlags(argv) {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { help: { type: "boolean", default: false }, to: { type: "string" } },
    }));
  } catch (error) {
    usageError(/** @type {Error} */ (error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (positionals.length === 0) {
    usageError("the following arguments are required: SOURCE");
  }
  const sources = positionals.map((text) => {
    try {
      return new Source(text);
    } catch (error) {
      return usageError(`${text}: ${/** @type {Error} */ (error).message}`);
    }
  });
  return { to: values.to || "stdio:", sources };
}

async function main() {
  const flags = readFlags(process.argv.slice(2));
  let sender;
  try {
    sender = new Sender(flags.to, { say });
  } catch (error) {
    usageError(`argument --to: ${/** @type {Error} */ (error).message}`);
  }
  let stopping = false;
  let signalled = false;
  let finishing = false; // every source has ended: what is held is being delivered

  /**
   * Reads `source` until it ends; its readings go to the sender.
   * @param {Source} source
   */
  const read = async (source) => {
    /** @type {Map<string, number>} the last seq given to the source's bare numbers */
    const seqs = new Map();
    const channel = /** @type {import("../src/transports/base.js").Channel} */ (source.channel);
    let reason = "ended";
    try {
      for (;;) {
        const values = await channel.receiveMany();
        const now = Date.now() / 1000;
        const readings = [];
        for (const value of values) {
          try {
            readings.push(toReading(value, { source: source.name, now, seqs }));
          } catch (error) {
            if (!(error instanceof InvalidReading)) throw error;
            source.invalid++;
            if (source.mayReport()) say(`invalid reading from ${source.name}: ${error.reason}`);
          }
        }
        source.readings += readings.length;
        if (readings.length > 0) sender.add(readings);
      }
    } catch (error) {
      if (stopping) {
        reason = "stopped";
      } else if (error instanceof TransportClosed) {
        reason = "ended";
      } else {
        source.failed = error instanceof Error ? error.message : String(error);
        const tail = error instanceof ChildExited ? error.stderrTail.trim().split("\n").at(-1) : "";
        reason = `failed: ${error instanceof ChildExited ? error.message.split("\n")[0] : source.failed}`;
        if (tail) reason += ` (${tail})`;
      }
    } finally {
      await channel.close().catch(() => {});
    }
    say(`${source.name}: ${reason}`);
  };

  /** @type {Source[]} */
  const opened = [];
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const source of opened) source.interrupt();
    // What has not ended within GRACE is closed: children killed (and reaped).
    sleep(GRACE, undefined, { ref: false }).then(() => {
      for (const source of opened) source.channel?.close().catch(() => {});
    });
  };
  for (const name of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
    process.on(name, () => {
      if (signalled) process.exit(0); // a second signal: at once
      signalled = true;
      stop();
      if (finishing) sender.finish(STOP_WAIT); // (else: once the sources have ended)
    });
  }
  sender.done.then(stop); // forwarding failed for good, or our stdout is gone: stop listening

  for (const source of flags.sources) {
    if (stopping) break;
    const onError = (/** @type {import("../src/errors.js").DecodeError} */ error) => {
      source.badLines++;
      if (source.mayReport()) say(`${source.name}: ${error.code}: ${error.message}`);
    };
    try {
      say(`${source.name}: ${await source.open(onError)}`);
      opened.push(source);
      if (stopping) source.interrupt(); // (a signal came while it opened)
    } catch (error) {
      source.failed = error instanceof Error ? error.message : String(error);
      say(`${source.name}: cannot open: ${source.failed}`);
    }
  }
  if (opened.length === 0) {
    say("no source could be opened");
    return signalled ? 0 : 1;
  }

  await Promise.all(opened.map(read));
  finishing = true;
  const left = await sender.finish(signalled ? STOP_WAIT : FINAL_WAIT);
  let code = signalled || !flags.sources.some((s) => s.failed !== null) ? 0 : 1;
  if (sender.failed !== null) {
    code = 1;
  } else if (left > 0 && !sender.gone) {
    say(`${left} readings could not be delivered to ${flags.to}`);
    if (!signalled) code = 1;
  }
  const total = (/** @type {"readings" | "invalid" | "badLines"} */ key) =>
    flags.sources.reduce((sum, s) => sum + s[key], 0);
  const why = signalled ? "stopped" : sender.failed !== null || sender.gone ? "output gone" : "every source ended";
  say(`${why}: ${total("readings")} readings, ${total("invalid")} invalid, ${total("badLines")} bad lines`);
  return code;
}

process.exitCode = await main();
process.exit();
