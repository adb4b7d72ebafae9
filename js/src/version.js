/**
 * This package's version, read from its package.json (Node only: the browser core does not need
 * it). The same string as Python's `bothways.__version__` (tests/unit/test_version.py checks).
 * @module bothways/version
 */

import { readFileSync } from "node:fs";

/** The bothways version of this package, e.g. `"0.1.0"`. */
export const VERSION = /** @type {{ version: string }} */ (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
).version;
