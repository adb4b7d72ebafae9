// A Mosquitto broker of the test's own, on free 127.0.0.1 ports in a temporary folder: the mirror
// of tests/broker.py (node --test lists this file too; it holds no tests).
//
// `await Broker.start({ users })` runs Debian's `mosquitto` with an MQTT listener and a WebSocket
// listener, persistence in the folder (so a restart keeps sessions), and, given `users`, a
// password file (`mosquitto_passwd -b`) with anonymous logins refused. `stop()` ends the process
// it started (by its pid) and `start()` again reuses the ports; `close()` stops it and removes the
// folder. A missing mosquitto skips the tests (`MISSING`), but fails them in CI.
import { execFileSync, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
export const IN_CI = ["1", "true", "yes"].includes((process.env.CI ?? "").toLowerCase());

/**
 * Where a program is: on PATH, or in /usr/sbin or /usr/bin (Debian puts mosquitto in sbin).
 * @param {string} name
 * @returns {string | null}
 */
export function programPath(name) {
  const folders = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/sbin", "/usr/bin"];
  for (const folder of folders) {
    const path = join(folder, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Why the broker tests cannot run here (a string for `{ skip }`), or false. In CI a missing tool
 * is a failure, not a skip: then this is false, and `Broker.start` throws.
 */
export const MISSING =
  !IN_CI && programPath("mosquitto") === null
    ? "'mosquitto' is not installed (make setup installs Debian's mosquitto)"
    : false;

/**
 * @param {string} name
 * @returns {string}
 */
function need(name) {
  const path = programPath(name);
  if (path === null) {
    throw new Error(`${JSON.stringify(name)} is not installed (make setup installs Debian's mosquitto)` +
      (IN_CI ? " - in CI a missing tool is a failure, not a skip" : ""));
  }
  return path;
}

/**
 * A free TCP port of 127.0.0.1 (bound, read, released).
 * @returns {Promise<number>}
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}

/**
 * Whether something accepts connections on 127.0.0.1:`port`.
 * @param {number} port
 * @returns {Promise<boolean>}
 */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A running mosquitto: `port` (MQTT), `wsPort` (MQTT over WebSocket). */
export class Broker {
  /** @type {import("node:child_process").ChildProcess | null} */
  process = null;

  /**
   * Made by `Broker.start`.
   * @param {string} folder
   * @param {number} port
   * @param {number} wsPort
   */
  constructor(folder, port, wsPort) {
    this.folder = folder;
    this.port = port;
    this.wsPort = wsPort;
    this.config = join(folder, "mosquitto.conf");
    this.program = need("mosquitto");
  }

  /**
   * Writes the configuration in a fresh temporary folder and starts the broker.
   * @param {{users?: Record<string, string>}} [options] logins; without, anonymous ones.
   * @returns {Promise<Broker>}
   */
  static async start({ users } = {}) {
    need("mosquitto");
    const folder = mkdtempSync(join(tmpdir(), "bothways-mosquitto-"));
    const broker = new Broker(folder, await freePort(), await freePort());
    const lines = [
      "per_listener_settings false",
      `listener ${broker.port} 127.0.0.1`,
      "protocol mqtt",
      `listener ${broker.wsPort} 127.0.0.1`,
      "protocol websockets",
      "persistence true",
      `persistence_location ${folder}/`,
      `log_dest file ${folder}/mosquitto.log`,
      "max_queued_messages 100000",
    ];
    if (process.getuid?.() === 0) lines.push("user root"); // (else it becomes "mosquitto", who cannot read the folder)
    if (users) {
      const passwords = join(folder, "passwords");
      writeFileSync(passwords, "");
      for (const [user, password] of Object.entries(users)) {
        execFileSync(need("mosquitto_passwd"), ["-b", passwords, user, password]);
      }
      lines.push("allow_anonymous false", `password_file ${passwords}`);
    } else {
      lines.push("allow_anonymous true");
    }
    writeFileSync(broker.config, lines.join("\n") + "\n");
    try {
      await broker.start();
    } catch (error) {
      rmSync(folder, { recursive: true, force: true });
      throw error;
    }
    return broker;
  }

  /**
   * An mqtt URL of this broker (the WebSocket port for mqtt+ws).
   * @param {string} topic
   * @param {string} [scheme]
   * @returns {string}
   */
  url(topic, scheme = "mqtt") {
    const port = scheme.startsWith("mqtt+ws") ? this.wsPort : this.port;
    return `${scheme}://127.0.0.1:${port}/${topic}`;
  }

  /**
   * Runs mosquitto; resolves once both listeners accept connections (10 s at most).
   * @returns {Promise<void>}
   */
  async start() {
    const child = spawn(this.program, ["-c", this.config], { stdio: ["ignore", "ignore", "ignore"] });
    this.process = child;
    let exited = false;
    child.once("exit", () => (exited = true));
    child.once("error", () => (exited = true));
    const deadline = performance.now() + 10_000 * UNIT;
    for (const port of [this.port, this.wsPort]) {
      while (!(await accepts(port))) {
        if (exited || performance.now() > deadline) {
          const log = join(this.folder, "mosquitto.log");
          const text = existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : "";
          await this.stop();
          throw new Error(`mosquitto did not start: ${text}`);
        }
        await delay(20);
      }
    }
  }

  /**
   * Ends the process this started (SIGTERM, then SIGKILL after 10 s), by its pid.
   * @returns {Promise<void>}
   */
  async stop() {
    const child = this.process;
    this.process = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000 * UNIT);
    await gone;
    clearTimeout(timer);
  }

  /**
   * Stops the broker and removes its folder.
   * @returns {Promise<void>}
   */
  async close() {
    await this.stop();
    rmSync(this.folder, { recursive: true, force: true });
  }
}
