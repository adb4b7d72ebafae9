// Copies bothways' Python host and the modules it imports from ../src/bothways into ./python,
// so that the npm package reaches Python with nothing installed into the interpreter
// (python.js puts ./python first on the child's PYTHONPATH). Run by `npm pack` (prepack), and
// with --clean after it (postpack), so that no stale copy stays in the checkout.
// The list is the host's import closure; the artefact tests run the packed host on an
// interpreter without bothways, so a module missing here fails them.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const js = dirname(dirname(fileURLToPath(import.meta.url)));
const from = join(js, "..", "src", "bothways");
const to = join(js, "python", "bothways");
const MODULES = [
  "__init__.py",
  "_version.py",
  "channels.py",
  "errors.py",
  "host.py",
  "objects.py",
  "peer.py",
  "py.typed",
  "rpc.py",
  "urls.py",
  "wire.py",
  "transports/__init__.py",
  "transports/base.py",
  "transports/stdio.py",
];

rmSync(join(js, "python"), { recursive: true, force: true });
rmSync(join(js, "LICENSE"), { force: true });
if (process.argv.includes("--clean")) process.exit(0); // postpack: the checkout uses ../src
for (const name of MODULES) {
  mkdirSync(dirname(join(to, name)), { recursive: true });
  cpSync(join(from, name), join(to, name));
}
console.error(`bundle-python: ${MODULES.length} files into ${to}`);
cpSync(join(js, "..", "LICENSE"), join(js, "LICENSE")); // npm takes the license from the package's root
