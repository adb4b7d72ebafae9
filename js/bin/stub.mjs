#!/usr/bin/env node
/**
 * Print a `.pyi` stub of what Python's `node.require(PATH)` gives: `node js/bin/stub.mjs PATH`
 * (what `bothways types node PATH` runs). The mirror of `bothways types python MODULE`.
 *
 * Rules:
 * - The module is imported (a path, resolved against the working directory), and what
 *   js/bin/host.mjs serves is described: its exported functions and classes (not names starting
 *   with "_"), the function and class members of a default export object, a default export
 *   function as "default". Anything the module prints while loading goes to stderr.
 * - Parameter names come from each function's own source (`Function.prototype.toString`, read
 *   by a small reader, never evaluated); types and descriptions from the JSDoc comment right
 *   before it in the module's file (`@param {type} name`, `[name]` or a default for an optional
 *   one, `@returns {type}`, `@yields {type}`, `@type {type}` on a field): a small reader, good
 *   for common JSDoc, not a TypeScript parser. A type it does not know is `Any`.
 * - In Python the module is a `bothways.node.JsModule`: the stub's `Module` subclasses it, each
 *   function a method taking its arguments by position (and `timeout=`), its result what the
 *   call gives once done (`Promise<T>` is `T`: the blocking proxy waits). Each class is a
 *   `bothways.objects.RemoteObject` whose methods are typed; calling the class's name on the
 *   module makes one.
 * - Exit codes: 0, 1 when the module cannot be loaded (the error is on stderr), 2 for bad usage.
 */

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Names `JsModule` and `RemoteObject` keep for themselves: such exports are left out. */
const HANDLE_NAMES = new Set(["close", "functions", "path"]);
const PYTHON_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except " +
    "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield")
    .split(" "),
);
/** Names the stub imports: a class by one of these names gets its Python name with a "_". */
const STUB_NAMES = new Set(["Any", "Callable", "Iterable", "Iterator", "JsModule", "Module", "RemoteObject"]);
const PYTHON_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TYPED_ARRAYS = new Set([
  "Int8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
]);

/**
 * @typedef {object} Param
 * @property {string} name the name in the source (`argN` for a pattern such as `{a, b}`).
 * @property {boolean} optional it has a default value.
 * @property {boolean} rest a rest parameter (`...values`).
 */

/**
 * @typedef {object} Doc
 * @property {string} text the description.
 * @property {Map<string, {type: string, optional: boolean}>} params `@param` tags by name.
 * @property {string | undefined} returns the `@returns` type.
 * @property {string | undefined} yields the `@yields` type.
 */

/**
 * Where the string, template or comment starting at `i` ends; `i` itself when none starts there.
 * @param {string} source
 * @param {number} i
 * @returns {number}
 */
function skip(source, i) {
  const c = source[i];
  if (c === "/" && source[i + 1] === "/") {
    const end = source.indexOf("\n", i);
    return end === -1 ? source.length : end;
  }
  if (c === "/" && source[i + 1] === "*") {
    const end = source.indexOf("*/", i + 2);
    return end === -1 ? source.length : end + 2;
  }
  if (c === '"' || c === "'" || c === "`") {
    let j = i + 1;
    while (j < source.length && source[j] !== c) {
      j += source[j] === "\\" ? 2 : 1;
    }
    return j + 1;
  }
  return i;
}

/**
 * The parameters of a function's source, as written: `(a, b = 1, ...rest)`, `x => x`, a method
 * `add(n = 1) {...}`, a class's `constructor(...)`. Null when there is no list to read.
 * @param {string} source `Function.prototype.toString` of it, or the text from its name on.
 * @returns {Param[] | null}
 */
function parameters(source) {
  const bare = /^(?:async\s*)?([A-Za-z_$][\w$]*)\s*=>/.exec(source);
  if (bare !== null) {
    return [{ name: bare[1], optional: false, rest: false }];
  }
  let i = 0;
  while (i < source.length && source[i] !== "(") {
    const next = skip(source, i);
    i = next === i ? i + 1 : next;
  }
  /** @type {string[]} */
  const raw = [];
  let current = "";
  let depth = 0;
  for (i += 1; i < source.length; i += 1) {
    const next = skip(source, i);
    if (next !== i) {
      current += source.slice(i, next);
      i = next - 1;
      continue;
    }
    const c = source[i];
    if ("([{".includes(c)) {
      depth += 1;
    } else if (")]}".includes(c)) {
      if (depth === 0) {
        if (current.trim() !== "") raw.push(current.trim());
        return raw.map((text, index) => {
          const rest = text.startsWith("...");
          const name = /^(?:\.\.\.)?([A-Za-z_$][\w$]*)\s*(=|$)/.exec(text);
          return {
            name: name === null ? `arg${index}` : name[1],
            optional: name === null ? /=/.test(text) : name[2] === "=",
            rest,
          };
        });
      }
      depth -= 1;
    } else if (c === "," && depth === 0) {
      raw.push(current.trim());
      current = "";
      continue;
    }
    current += c;
  }
  return null;
}

/**
 * The text inside the braces starting at `text[start]` (`{Array<{a: number}>}`), and where it ends.
 * @param {string} text
 * @param {number} start
 * @returns {[string, number]}
 */
function braced(text, start) {
  let depth = 0;
  for (let i = start; i < text.length; i += 1) {
    if (text[i] === "{") depth += 1;
    if (text[i] === "}" && --depth === 0) return [text.slice(start + 1, i).trim(), i + 1];
  }
  return [text.slice(start + 1).trim(), text.length];
}

/**
 * Reads a JSDoc comment's body (without `/**` and `*\/`).
 * @param {string} body
 * @returns {Doc}
 */
function readDoc(body) {
  const text = body
    .split("\n")
    .map((line) => line.replace(/^\s*\*?\s?/, ""))
    .join("\n");
  const at = text.search(/(^|\n)\s*@/);
  /** @type {Doc} */
  const doc = { text: (at === -1 ? text : text.slice(0, at)).trim(), params: new Map(), returns: undefined, yields: undefined };
  for (const match of text.matchAll(/@(param|arg|argument|returns?|yields?|type)\b\s*/g)) {
    const from = /** @type {number} */ (match.index) + match[0].length;
    const [type, after] = text[from] === "{" ? braced(text, from) : ["", from];
    const tag = match[1];
    if (tag === "returns" || tag === "return") {
      doc.returns ??= type;
    } else if (tag === "yields" || tag === "yield") {
      doc.yields ??= type;
    } else if (tag === "type") {
      doc.returns ??= type; // a field's type (`@type` before `this.x = ...`)
    } else {
      const name = /^\s*(\[)?\s*([\w$]+)/.exec(text.slice(after));
      if (name !== null && !doc.params.has(name[2])) {
        doc.params.set(name[2], { type, optional: name[1] === "[" || type.endsWith("=") });
      }
    }
  }
  return doc;
}

/** The JSDoc comment that ends right before `index` (with `export`, `const x =`... between). */
const DOC_BEFORE =
  /\/\*\*((?:[^*]|\*(?!\/))*)\*\/\s*(?:(?:export|default|async|static|const|let|var|[\w$]+\s*[=:])\s*)*$/;

/**
 * The JSDoc right before the text at `index` of `source`; an empty one when there is none.
 * @param {string} source
 * @param {number} index
 * @returns {Doc}
 */
function docBefore(source, index) {
  const match = index < 0 ? null : DOC_BEFORE.exec(source.slice(Math.max(0, index - 8000), index));
  return readDoc(match === null ? "" : match[1]);
}

/**
 * Splits a type at the top-level `sep`: `A | B<C | D>` -> `A`, `B<C | D>`.
 * @param {string} type
 * @param {string} sep
 * @returns {string[]}
 */
function splitTop(type, sep) {
  const parts = [];
  let depth = 0;
  let current = "";
  for (const c of type) {
    if ("<([{".includes(c)) depth += 1;
    if (">)]}".includes(c)) depth -= 1;
    if (c === sep && depth === 0) {
      parts.push(current.trim());
      current = "";
    } else {
      current += c;
    }
  }
  parts.push(current.trim());
  return parts;
}

/**
 * The Python type of a JSDoc type; `inward` when Python sends the value (a parameter).
 * @param {string | undefined} type
 * @param {Map<string, string>} classes the module's classes: JavaScript name -> stub name.
 * @param {boolean} inward
 * @returns {string}
 */
function pythonType(type, classes, inward = false) {
  let t = (type ?? "").trim().replace(/=$/, "").replace(/^\.\.\./, "");
  if (t === "" || t === "*" || t === "?") return "Any";
  if (t.startsWith("(") && t.endsWith(")") && splitTop(t.slice(1, -1), "|").length >= 1 && !/=>/.test(t)) {
    t = t.slice(1, -1).trim();
  }
  if (splitTop(t.replace(/=>/g, "\u0000"), "\u0000").length > 1 || /^function\s*\(/.test(t)) {
    return "Callable[..., Any]";
  }
  const union = splitTop(t, "|");
  if (union.length > 1) {
    const members = [...new Set(union.map((part) => pythonType(part, classes, inward)))];
    return members.includes("Any") ? "Any" : members.join(" | ");
  }
  if (t.startsWith("?")) return `${pythonType(t.slice(1), classes, inward)} | None`.replace("Any | None", "Any");
  if (t.startsWith("!")) return pythonType(t.slice(1), classes, inward);
  if (t.endsWith("[]")) return `list[${pythonType(t.slice(0, -2), classes, inward)}]`;
  const generic = /^([\w$.]+?)\.?<(.*)>$/s.exec(t);
  if (generic !== null) {
    const [name, args] = [generic[1], splitTop(generic[2], ",")];
    const last = args[args.length - 1];
    if (name === "Array" || name === "ReadonlyArray") return `list[${pythonType(args[0], classes, inward)}]`;
    if (name === "Promise" || name === "PromiseLike") return pythonType(args[0], classes, inward);
    if (name === "Record" || name === "Object") return `dict[str, ${pythonType(last, classes, inward)}]`;
    if (/^(Async)?(Iterable|Iterator|IterableIterator|Generator)$/.test(name)) {
      return `${inward ? "Iterable" : "Iterator"}[${pythonType(args[0], classes, inward)}]`;
    }
    return "Any";
  }
  if (/^(["']).*\1$/.test(t)) return "str";
  if (/^-?\d/.test(t)) return "float";
  if (t.startsWith("{")) return "dict[str, Any]";
  const plain = {
    number: "float",
    string: "str",
    String: "str",
    boolean: "bool",
    true: "bool",
    false: "bool",
    null: "None",
    undefined: "None",
    void: "None",
    Date: "str", // it crosses as ISO 8601 text (spec/PROTOCOL.md 3)
    object: "dict[str, Any]",
    Object: "dict[str, Any]",
    Record: "dict[str, Any]",
    Array: "list[Any]",
    Uint8Array: "bytes",
    Buffer: "bytes",
    ArrayBuffer: "bytes",
    DataView: "bytes",
    Function: "Callable[..., Any]",
    function: "Callable[..., Any]",
  };
  if (Object.hasOwn(plain, t)) return plain[/** @type {keyof typeof plain} */ (t)];
  if (TYPED_ARRAYS.has(t)) return "Any"; // a numpy array, or a memoryview when numpy is absent
  if (/^(Async)?(Iterable|Iterator|IterableIterator|Generator)$/.test(t)) return inward ? "Iterable[Any]" : "Iterator[Any]";
  return classes.get(t) ?? "Any";
}

/**
 * A Python identifier for a JavaScript parameter name.
 * @param {string} name
 * @param {Set<string>} taken the names already used in the same list.
 * @returns {string}
 */
function pythonParameter(name, taken) {
  let out = PYTHON_NAME.test(name) ? name : name.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(\d)/, "_$1");
  if (PYTHON_KEYWORDS.has(out) || out === "self" || out === "timeout") out += "_";
  while (taken.has(out)) out += "_";
  taken.add(out);
  return out;
}

/**
 * A Python docstring (indented), or nothing.
 * @param {string} text
 * @param {string} indent
 * @returns {string[]}
 */
function docstring(text, indent) {
  if (text === "") return [];
  const lines = text.replace(/\\/g, "\\\\").replace(/"""/g, '\\"\\"\\"').split("\n");
  if (lines.length === 1) return [`${indent}"""${lines[0]}"""`];
  return [`${indent}"""${lines[0]}`, ...lines.slice(1).map((line) => (line ? indent + line : "")), `${indent}"""`];
}

/**
 * One `def`: `def add(self, a: float, b: float = ..., /, *, timeout: float | None = None) -> float:`.
 * @param {string} name
 * @param {Param[] | null} params null: unknown, `*args: Any`.
 * @param {Doc} doc
 * @param {string} result the Python type of the result.
 * @param {Map<string, string>} classes
 * @param {{timeout: boolean, indent: string}} options `timeout`: the module's functions take one.
 * @returns {string[]}
 */
function def(name, params, doc, result, classes, { timeout, indent }) {
  const parts = ["self"];
  const taken = new Set(["self"]);
  let optional = false;
  let rest = false;
  for (const param of params ?? [{ name: "args", optional: false, rest: true }]) {
    const tag = doc.params.get(param.name);
    const type = pythonType(tag?.type, classes, true);
    const python = pythonParameter(param.name, taken);
    if (param.rest) {
      if (parts.length > 1) parts.push("/");
      // `@param {...number} values` or `@param {number[]} values`: the type of one item
      parts.push(`*${python}: ${tag?.type.startsWith("...") ? type : type.replace(/^list\[(.*)\]$/, "$1")}`);
      rest = true;
      break;
    }
    optional ||= param.optional || tag?.optional === true;
    parts.push(`${python}: ${type}${optional ? " = ..." : ""}`);
  }
  if (!rest && parts.length > 1) parts.push("/"); // positional only: calls send no names
  if (timeout) parts.push(...(rest ? [] : ["*"]), "timeout: float | None = None");
  const lines = docstring(doc.text, `${indent}    `);
  const head = `${indent}def ${name}(${parts.join(", ")}) -> ${result}:`;
  return lines.length === 0 ? [`${head} ...`] : [head, ...lines, `${indent}    ...`];
}

/**
 * @param {unknown} value
 * @returns {value is Function} a class (`class X {}`).
 */
function isClass(value) {
  return typeof value === "function" && /^class[\s{]/.test(Function.prototype.toString.call(value));
}

/**
 * What js/bin/host.mjs serves, by name: exported functions and classes, a default object's, a
 * default function.
 * @param {Record<string, unknown>} namespace
 * @returns {Map<string, Function>}
 */
function servedExports(namespace) {
  /** @type {Map<string, Function>} */
  const served = new Map();
  const fallback = namespace.default;
  if (typeof fallback === "object" && fallback !== null) {
    for (const [key, value] of Object.entries(fallback)) {
      if (!key.startsWith("_") && typeof value === "function") served.set(key, value);
    }
  } else if (typeof fallback === "function") {
    served.set("default", fallback);
  }
  for (const [key, value] of Object.entries(namespace)) {
    if (key !== "default" && !key.startsWith("_") && typeof value === "function") served.set(key, value);
  }
  return served;
}

/**
 * The JSDoc and the result type of a function: its own source found in `source` (the module's
 * file), the comment before it.
 * @param {Function} fn
 * @param {string} source
 * @param {number} [from] where to look from (inside its class).
 * @returns {{doc: Doc, params: Param[] | null, generator: boolean}}
 */
function describe(fn, source, from = 0) {
  const text = Function.prototype.toString.call(fn);
  const doc = docBefore(source, source.indexOf(text, from));
  const generator = /^(Async)?GeneratorFunction$/.test(fn.constructor.name);
  return { doc, params: /\{\s*\[native code\]\s*\}\s*$/.test(text) ? null : parameters(text), generator };
}

/**
 * The Python result type of a described function.
 * @param {{doc: Doc, generator: boolean}} described
 * @param {Map<string, string>} classes
 * @returns {string}
 */
function resultType({ doc, generator }, classes) {
  if (generator && (doc.returns === undefined || doc.yields !== undefined)) {
    return `Iterator[${pythonType(doc.yields, classes)}]`;
  }
  return doc.returns === undefined ? "Any" : pythonType(doc.returns, classes);
}

/**
 * A class's constructor: its parameters and JSDoc (an inherited one when it has none).
 * @param {Function} cls
 * @param {string} source
 * @returns {{doc: Doc, params: Param[]}}
 */
function constructorOf(cls, source) {
  for (let c = cls; isClass(c); c = Object.getPrototypeOf(c)) {
    const text = Function.prototype.toString.call(c);
    const at = text.search(/(^|[\s;}{])constructor\s*\(/);
    if (at !== -1) {
      const start = text.indexOf("constructor", at);
      const where = source.indexOf(text);
      return {
        doc: docBefore(source, where === -1 ? -1 : where + start),
        params: parameters(text.slice(start)) ?? [],
      };
    }
  }
  return { doc: readDoc(""), params: [] };
}

/**
 * The public members of a class's instances: methods (own and inherited) and getters, by name.
 * @param {Function} cls
 * @returns {Map<string, {method?: Function, getter?: Function}>}
 */
function members(cls) {
  /** @type {Map<string, {method?: Function, getter?: Function}>} */
  const found = new Map();
  for (let proto = cls.prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === "constructor" || name.startsWith("_") || found.has(name)) continue;
      const descriptor = /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(proto, name));
      if (typeof descriptor.value === "function") found.set(name, { method: descriptor.value });
      else if (descriptor.get) found.set(name, { getter: descriptor.get });
    }
  }
  return found;
}

/**
 * The fields the constructor sets (`this.count = start`), with a `@type` when it has one.
 * @param {Function} cls
 * @returns {Map<string, string | undefined>}
 */
function fields(cls) {
  /** @type {Map<string, string | undefined>} */
  const found = new Map();
  const text = Function.prototype.toString.call(cls);
  const pattern = /(?:\/\*\*((?:[^*]|\*(?!\/))*)\*\/\s*)?this\.([A-Za-z_$][\w$]*)\s*=(?![=>])/g;
  for (const match of text.matchAll(pattern)) {
    if (!match[2].startsWith("_") && !found.has(match[2])) {
      found.set(match[2], match[1] === undefined ? undefined : readDoc(match[1]).returns);
    }
  }
  return found;
}

/**
 * The `.pyi` stub of the module at `path`.
 * @param {string} path
 * @returns {Promise<string>}
 */
async function stub(path) {
  const url = pathToFileURL(resolve(process.cwd(), path));
  const source = readFileSync(fileURLToPath(url), "utf8");
  const namespace = await import(url.href);
  const served = servedExports(namespace);
  /** @type {Map<string, string>} */
  const classes = new Map();
  for (const [name, value] of served) {
    if (isClass(value) && PYTHON_NAME.test(name)) {
      const python = STUB_NAMES.has(value.name) || PYTHON_KEYWORDS.has(value.name) ? `${value.name}_` : value.name;
      classes.set(value.name, PYTHON_NAME.test(python) ? `_${python}` : "Any"); // the alias (below)
    }
  }
  const out = [
    `# What \`node.require(${JSON.stringify(path)})\` gives (bothways.node): made by`,
    `# \`bothways types node ${path}\` from the module's JSDoc.`,
    `#     m = typing.cast("Module", node.require(${JSON.stringify(path)}))`,
    "from collections.abc import Callable, Iterable, Iterator",
    "from typing import Any",
    "",
    "from bothways.node import JsModule",
    "from bothways.objects import RemoteObject",
  ];
  const skipped = [];
  const done = new Set();
  for (const [name, value] of served) {
    if (!isClass(value) || done.has(value) || !PYTHON_NAME.test(name)) continue;
    done.add(value);
    const alias = /** @type {string} */ (classes.get(value.name));
    const python = alias.slice(1);
    const text = Function.prototype.toString.call(value);
    const at = source.indexOf(text);
    const body = [];
    const own = members(value);
    for (const [field, type] of fields(value)) {
      if (!own.has(field) && PYTHON_NAME.test(field) && !PYTHON_KEYWORDS.has(field)) {
        body.push(`    ${field}: ${pythonType(type, classes)}`);
      }
    }
    for (const [member, { method, getter }] of own) {
      if (!PYTHON_NAME.test(member) || PYTHON_KEYWORDS.has(member)) continue;
      if (getter) {
        const doc = describe(getter, source, Math.max(at, 0)).doc;
        body.push(`    ${member}: ${pythonType(doc.returns, classes)}`, ...docstring(doc.text, "    "));
      } else if (method) {
        const described = describe(method, source, Math.max(at, 0));
        body.push(...def(member, described.params, described.doc, resultType(described, classes), classes, { timeout: false, indent: "    " }));
      }
    }
    const doc = docBefore(source, at);
    out.push("", "", `class ${python}(RemoteObject):`, ...docstring(doc.text, "    "));
    out.push(...(body.length > 0 ? body : ["    pass"]));
    out.push("", "", `${alias} = ${python}  # (the name Module's methods use: theirs hide the class)`);
  }
  out.push("", "", "class Module(JsModule):");
  const moduleDoc = /^\s*(?:#!.*\n\s*)?\/\*\*((?:[^*]|\*(?!\/))*)\*\//.exec(source);
  out.push(...docstring(moduleDoc === null ? "" : readDoc(moduleDoc[1]).text, "    "));
  for (const [name, value] of [...served].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!PYTHON_NAME.test(name) || PYTHON_KEYWORDS.has(name) || HANDLE_NAMES.has(name)) {
      skipped.push(name);
      continue;
    }
    if (isClass(value)) {
      const { doc, params } = constructorOf(value, source);
      const classDoc = docBefore(source, source.indexOf(Function.prototype.toString.call(value)));
      const text = [classDoc.text, doc.text].filter(Boolean).join("\n\n");
      const made = /** @type {string} */ (classes.get(value.name));
      out.push(...def(name, params, { ...doc, text }, made, classes, { timeout: true, indent: "    " }));
    } else {
      const described = describe(value, source);
      out.push(...def(name, described.params, described.doc, resultType(described, classes), classes, { timeout: true, indent: "    " }));
    }
  }
  out.push("    def __enter__(self) -> Module: ...");
  if (skipped.length > 0) {
    out.splice(3, 0, `# Left out (not Python attribute names, or names the handle keeps): ${skipped.join(", ")}`);
  }
  return `${out.join("\n")}\n`;
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 1) {
    process.stderr.write("usage: node stub.mjs PATH_TO_MODULE.js\n");
    return 2;
  }
  // The stub is our stdout: what the module logs while loading goes to stderr.
  const write = process.stdout.write.bind(process.stdout);
  for (const key of ["log", "info", "debug"]) {
    /** @type {any} */ (console)[key] = console.error;
  }
  let text;
  try {
    text = await stub(args[0]);
  } catch (error) {
    process.stderr.write(`stub.mjs: cannot read ${args[0]}: ${error instanceof Error ? error.stack : error}\n`);
    return 1;
  }
  await new Promise((done) => write(text, done));
  return 0;
}

process.exit(await main());
