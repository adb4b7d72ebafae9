/**
 * Objects, callbacks, streams and bytes across a connection (spec/PROTOCOL.md section 10).
 * Mirrors `src/bothways/objects.py` name for name (camelCase here).
 *
 * What JSON cannot hold crosses as a *marker* (an object with a `"$bothways"` member) inside a
 * *tree* (a call's params or result wrapped as `{"$bothways": "tree", "value": ...}`): an object
 * lent by reference, the receiver's own object given back, bytes, a typed array.
 *
 * - `Handles`: one per connection. The objects this side lends (by id), what it learned of the
 *   other side's classes, and the borrowed ids waiting to be released.
 * - `outgoing(value, handles, blobs)` / `toTree`: a value about to be sent, with what cannot be
 *   JSON lent or packed; `incoming(value, handles, borrow, blobs)` / `fromTree`: the reverse,
 *   `borrow` making the proxy of each object the other side lends. `blobs` is for a channel that
 *   carries binary frames (spec/PROTOCOL.md section 2): bytes and arrays go there, not base64.
 * - `lenderFunctions(handles)`: what serves `$/get`, `$/call`, `$/next`... on the objects this side
 *   lends; the Peer exposes them like any function.
 * - `RemoteObject`: the proxy of an object the other side lends. It asks through a *link* (the
 *   Peer: `handles`, `request(method, params)`, `releaseSoon()`) and never does I/O itself.
 *
 * Rules
 * -----
 * - No I/O, no clock, no `node:*` import: this module loads in a browser. `$/repr` uses
 *   `util.inspect` when it runs in Node (reached through `process.getBuiltinModule`, else a lazy
 *   import), `String()` elsewhere; base64 uses `Buffer` when there is one.
 * - Plain calls pay one cheap check: `outgoing` walks a value only to see that it is plain JSON
 *   (no function, no class instance, no bytes...), `incoming` looks at the top level only.
 * - A tree is never changed in place: `fromTree` builds new arrays and objects.
 *
 * @module bothways/objects
 */

import { HandleError } from "./errors.js";

export { HandleError };

/** The member that makes an object a marker. */
export const MARK = "$bothways";
/** The JSON-RPC error code of a request naming a handle this side does not hold. */
export const HANDLE_NOT_HELD = -32001;
/** The notification whose params are the ids the borrower lets go of. */
export const RELEASE_METHOD = "$/release";
/** The requests on handles (section 10.4), served by `lenderFunctions`. */
export const OBJECT_METHODS = Object.freeze([
  "$/get",
  "$/set",
  "$/call",
  "$/new",
  "$/item",
  "$/len",
  "$/repr",
  "$/value",
  "$/iter",
  "$/next",
  "$/handles",
]);
/**
 * The line limit between a parent and the module it spawned (256 MiB): both ends are the
 * user's own, and bytes and arrays travel in one line each (base64) or in binary frames (as
 * long as a line); a JavaScript string holds at most 2**29 - 24 characters.
 */
export const CALL_MAX_LINE = 256 * 1024 * 1024;

/** Items asked for in a stream's first pull... */
export const FIRST_CREDIT = 64;
/** ...doubling up to this many while the consumer keeps up. */
export const MAX_CREDIT = 4096;

const TREE = "tree";
const KINDS = ["function", "class", "object", "iterator"];
/** Deeper than this, a value is left as it is: the encoder rejects it with its own message. */
const MAX_DEPTH = 1024;

// Node >= 20.4 and current browsers define it; older runtimes get a registered stand-in.
/** @type {typeof Symbol.asyncDispose} */
const asyncDispose = Symbol.asyncDispose ?? Symbol.for("Symbol.asyncDispose");
/** What Node's `util.inspect` calls (it inspects a Proxy's target, so it lives there). */
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

/**
 * @typedef {"bool" | "int8" | "uint8" | "int16" | "uint16" | "int32" | "uint32" | "int64" |
 *   "uint64" | "float32" | "float64"} Dtype
 */

/**
 * @typedef {Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array |
 *   Uint32Array | BigInt64Array | BigUint64Array | Float32Array | Float64Array} TypedArray
 */

/** @type {Record<Dtype, {new (buffer: ArrayBuffer): TypedArray, BYTES_PER_ELEMENT: number}>} */
const DTYPES = {
  bool: Uint8Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  float32: Float32Array,
  float64: Float64Array,
};
const DTYPE_NAMES = Object.keys(DTYPES).join(", ");

/** The dtype of each typed array that crosses as `array` (Uint8Array and DataView are bytes). */
const DTYPE_OF = new Map([
  [Int8Array, "int8"],
  [Uint8ClampedArray, "uint8"],
  [Int16Array, "int16"],
  [Uint16Array, "uint16"],
  [Int32Array, "int32"],
  [Uint32Array, "uint32"],
  [BigInt64Array, "int64"],
  [BigUint64Array, "uint64"],
  [Float32Array, "float32"],
  [Float64Array, "float64"],
]);

/** The wire is little-endian; a big-endian host swaps the items of multi-byte arrays. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// -- small values -----------------------------------------------------------------------------

/**
 * A value to lend by reference even though it is JSON: `ref(settings)` (the other side gets a
 * proxy it can change in place, not a copy).
 */
export class Ref {
  /**
   * @param {unknown} value
   * @param {string} [kind] the kind to lend it as (default: what the value is).
   */
  constructor(value, kind = undefined) {
    /** @type {unknown} */
    this.value = value;
    /** @type {string | undefined} */
    this.kind = kind;
  }
}

/**
 * Marks `value` to be lent by reference (the other side gets a proxy, not a copy).
 * @param {unknown} value
 * @returns {Ref}
 */
export function ref(value) {
  return new Ref(value);
}

/** Keyword arguments for the last argument of a proxy call: `h.head(kwargs({ n: 5 }))`. */
export class Kwargs {
  /**
   * @param {Record<string, unknown>} values
   */
  constructor(values) {
    /** @type {Record<string, unknown>} */
    this.values = values;
  }
}

/**
 * The last argument of a call on a remote object, sent as keyword arguments (Python's `**kwargs`;
 * a JavaScript callee gets them as one last argument): `await df.head(kwargs({ n: 5 }))`.
 * @param {Record<string, unknown>} values
 * @returns {Kwargs}
 * @throws {TypeError} `values` is not an object.
 */
export function kwargs(values) {
  if (typeof values !== "object" || values === null || Array.isArray(values)) {
    throw new TypeError("kwargs() takes an object of keyword arguments");
  }
  return new Kwargs(values);
}

/**
 * An n-dimensional array: a typed array (`data`, C order) and its `shape`. What an `array`
 * marker of more (or fewer) than one dimension becomes here, and how to send one.
 */
export class NDArray {
  /**
   * @param {Dtype} dtype one of `bool`, `int8`, `uint8`, `int16`, `uint16`, `int32`, `uint32`,
   *   `int64`, `uint64`, `float32`, `float64`.
   * @param {number[]} shape the size of each dimension.
   * @param {TypedArray} data the items, C order: a typed array of the dtype (`Uint8Array` for
   *   `bool`, `BigInt64Array` / `BigUint64Array` for the 64-bit integers).
   * @throws {TypeError} an unknown dtype, a shape that is not a list of sizes, or `data` of
   *   another type.
   * @throws {RangeError} `data` does not have the shape's number of items.
   */
  constructor(dtype, shape, data) {
    const type = Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
    if (type === undefined) {
      throw new TypeError(`unknown dtype ${JSON.stringify(dtype)} (expected one of ${DTYPE_NAMES})`);
    }
    if (!isShape(shape)) {
      throw new TypeError("shape must be an array of non-negative integers");
    }
    if (!(data instanceof type)) {
      throw new TypeError(`${dtype} data must be a ${type.name}`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (data.length !== count) {
      throw new RangeError(`${data.length} items do not fill shape [${shape.join(", ")}] (${count} items)`);
    }
    /** @type {Dtype} */
    this.dtype = dtype;
    /** @type {number[]} */
    this.shape = [...shape];
    /** @type {TypedArray} */
    this.data = data;
  }
}

/**
 * @param {unknown} shape
 * @returns {shape is number[]}
 */
function isShape(shape) {
  return Array.isArray(shape) && shape.every((n) => Number.isInteger(n) && n >= 0);
}

// -- handles ----------------------------------------------------------------------------------

/**
 * The ref marker of a lent object.
 * @typedef {object} RefMarker
 * @property {"ref"} $bothways
 * @property {number} id the handle, new for each lend.
 * @property {string} kind `function`, `class`, `object` or `iterator`.
 * @property {string} type the class or function name.
 * @property {number} [class] the object's class among those lent on this connection.
 * @property {string[]} [methods] the class's callable members, with its first ref only.
 */

/** One lent object. */
class Lent {
  /**
   * @param {unknown} value
   * @param {string} kind
   */
  constructor(value, kind) {
    this.value = value;
    this.kind = kind;
  }
}

/**
 * The objects this side lends on one connection (by id), what it learned of the other side's
 * classes, and the borrowed ids waiting to be released.
 */
export class Handles {
  /** @type {Map<number, Lent>} */
  #objects = new Map();
  #nextId = 1;
  /** @type {WeakMap<object, number>} our classes (prototypes) -> their number here */
  #classIds = new WeakMap();
  #classCount = 0;

  constructor() {
    /**
     * The other side's classes (their number) -> their method names, as its refs announced them.
     * @type {Map<number, readonly string[]>}
     */
    this.classes = new Map();
    /**
     * Borrowed ids to send in the next `$/release` (explicit releases and collected proxies).
     * @type {number[]}
     */
    this.released = [];
  }

  /**
   * How many objects are lent now.
   * @returns {number}
   */
  get size() {
    return this.#objects.size;
  }

  /**
   * Keeps `value` under a new id (counting from 1); returns its `ref` marker. The first object
   * of a class (prototype) lent on this connection carries the class's method names.
   * @param {unknown} value
   * @param {string} [kind] `function`, `class`, `object` or `iterator` (default: what it is).
   * @returns {RefMarker}
   */
  lend(value, kind = undefined) {
    const id = this.#nextId++;
    const remote = typeof value === "function" ? STATES.get(value) : undefined;
    const lentKind = kind ?? remote?.kind ?? kindOf(value);
    this.#objects.set(id, new Lent(value, lentKind));
    /** @type {RefMarker} */
    const marker = { [MARK]: "ref", id, kind: lentKind, type: remote?.type ?? typeName(value, lentKind) };
    if (lentKind === "object" && remote === undefined) {
      const proto = typeof value === "object" && value !== null ? Object.getPrototypeOf(value) : null;
      if (proto !== null) {
        const number = this.#classIds.get(proto);
        if (number === undefined) {
          marker.class = ++this.#classCount;
          this.#classIds.set(proto, marker.class);
          marker.methods = methodsOf(proto);
        } else {
          marker.class = number;
        }
      }
    }
    return marker;
  }

  /**
   * The object lent under `id`.
   * @param {unknown} id
   * @returns {any}
   * @throws {HandleError} it is not held (released, or never lent); its `rpcCode` is
   *   HANDLE_NOT_HELD.
   */
  take(id) {
    const lent = this.#objects.get(/** @type {number} */ (id));
    if (lent === undefined) {
      throw notHeld(id);
    }
    return lent.value;
  }

  /**
   * Lets go of the objects lent under `ids` (unknown ids are ignored); iterators are closed with
   * `return()`, so a generator's `finally` runs.
   * @param {Iterable<unknown>} ids
   */
  drop(ids) {
    for (const id of ids) {
      const lent = this.#objects.get(/** @type {number} */ (id));
      if (lent !== undefined) {
        this.#objects.delete(/** @type {number} */ (id));
        if (lent.kind === "iterator") {
          close(lent.value);
        }
      }
    }
  }

  /** Lets go of everything (the connection ended), as `drop`; forgets the other side's classes. */
  clear() {
    const ids = [...this.#objects.keys()];
    this.drop(ids);
    this.classes.clear();
    this.released.length = 0;
  }

  /**
   * Remembers the methods a ref announces for its class; returns the class's methods when known.
   * @param {{class?: unknown, methods?: unknown}} marker a valid ref marker.
   * @returns {readonly string[] | undefined}
   */
  learnClass(marker) {
    const number = marker.class;
    if (typeof number !== "number") {
      return undefined;
    }
    if (Array.isArray(marker.methods)) {
      this.classes.set(number, Object.freeze([...marker.methods]));
    }
    return this.classes.get(number);
  }

  /**
   * The borrowed ids queued for release since the last call (send them in one `$/release`).
   * @returns {number[]}
   */
  takeReleased() {
    const ids = this.released;
    this.released = [];
    return ids;
  }
}

/**
 * @param {unknown} id
 * @returns {HandleError}
 */
function notHeld(id) {
  const error = new HandleError(`handle ${String(id)} is not held here (released, or never lent)`);
  /** @type {any} */ (error).rpcCode = HANDLE_NOT_HELD;
  return error;
}

/**
 * Closes an iterator that is let go of (its generator's `finally` runs); errors are dropped.
 * @param {any} iterator
 */
function close(iterator) {
  try {
    const closing = typeof iterator?.return === "function" ? iterator.return() : undefined;
    if (isThenable(closing)) {
      Promise.resolve(closing).catch(() => {});
    }
  } catch {
    // a generator that throws from its finally: nobody to tell
  }
}

/** @type {WeakMap<Function, boolean>} */
const classes = new WeakMap();

/**
 * Whether `fn` is a class (`class X {}`), which must be called with `new`.
 * @param {unknown} fn
 * @returns {boolean}
 */
function isClass(fn) {
  if (typeof fn !== "function" || STATES.has(fn)) {
    return false;
  }
  let answer = classes.get(fn);
  if (answer === undefined) {
    try {
      answer = /^class[\s{]/.test(Function.prototype.toString.call(fn));
    } catch {
      answer = false;
    }
    classes.set(fn, answer);
  }
  return answer;
}

/**
 * @param {unknown} value
 * @returns {string} `function`, `class`, `object` or `iterator`.
 */
function kindOf(value) {
  if (typeof value === "function") {
    return isClass(value) ? "class" : "function";
  }
  const object = /** @type {any} */ (value);
  if (
    typeof object === "object" &&
    object !== null &&
    typeof object.next === "function" &&
    (Symbol.iterator in object || Symbol.asyncIterator in object)
  ) {
    return "iterator";
  }
  return "object";
}

/**
 * The class or function name of a lent value.
 * @param {unknown} value
 * @param {string} kind
 * @returns {string}
 */
function typeName(value, kind) {
  try {
    if (kind === "function" || kind === "class") {
      const name = /** @type {Function} */ (value).name;
      return typeof name === "string" && name !== "" ? name.replace(/^(bound )+/, "") : "anonymous";
    }
    const object = /** @type {any} */ (value);
    const name = Object.getPrototypeOf(object)?.constructor?.name;
    if (typeof name === "string" && name !== "") {
      return name;
    }
    const tag = object[Symbol.toStringTag];
    return typeof tag === "string" ? tag : "Object";
  } catch {
    return "Object";
  }
}

/**
 * The sorted names of the callable members along a prototype chain (up to `Object.prototype`),
 * without `constructor` and `_`-prefixed names. Accessors are not read.
 * @param {object} proto
 * @returns {string[]}
 */
function methodsOf(proto) {
  const names = new Set();
  for (let p = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name === "constructor" || name.startsWith("_")) continue;
      const descriptor = Object.getOwnPropertyDescriptor(p, name);
      if (typeof descriptor?.value === "function") {
        names.add(name);
      }
    }
  }
  return [...names].sort();
}

// -- values -> trees --------------------------------------------------------------------------

/**
 * Whether `value` crosses as it is (plain JSON, or what the encoder writes itself, such as a
 * Date), with nothing to lend or pack anywhere inside.
 * @param {unknown} value
 * @param {number} depth
 * @returns {boolean}
 */
function isPlain(value, depth) {
  if (typeof value !== "object") {
    return typeof value !== "function";
  }
  if (value === null || depth > MAX_DEPTH) {
    return true;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === "object" ? item !== null && !isPlain(item, depth + 1) : typeof item === "function") {
        return false;
      }
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    const object = /** @type {Record<string, unknown>} */ (value);
    for (const key in object) {
      const item = object[key];
      if (typeof item === "object" ? item !== null && !isPlain(item, depth + 1) : typeof item === "function") {
        return false;
      }
    }
    return true;
  }
  return (
    typeof (/** @type {any} */ (value).toJSON) === "function" &&
    !ArrayBuffer.isView(value) &&
    !(value instanceof NDArray)
  );
}

/**
 * `value` as JSON with markers (section 10.2): functions, classes, class instances, Maps, Sets,
 * generators and iterators are lent through `handles` (`ref`); a proxy of the other side's object
 * goes back as `yours`; bytes and typed arrays are packed; a plain object that has a `"$bothways"`
 * member is escaped (`object`). Plain JSON and objects with `toJSON` (Date) stay as they are.
 * @param {unknown} value
 * @param {Handles} handles
 * @param {Uint8Array[]} [blobs] given (a channel that carries binary frames), bytes and arrays
 *   are appended there and marked with their number (`"blob": k`) instead of carrying base64.
 *   The arrays are views of the value's own memory: send them before it changes.
 * @returns {unknown}
 * @throws {HandleError} a proxy of this connection that was released.
 */
export function toTree(value, handles, blobs = undefined) {
  return tree(value, handles, 0, blobs);
}

/**
 * @param {unknown} value
 * @param {Handles} handles
 * @param {number} depth
 * @param {Uint8Array[] | undefined} blobs
 * @returns {unknown}
 */
function tree(value, handles, depth, blobs) {
  if (typeof value !== "object") {
    return typeof value === "function" ? lentFunction(value, handles) : value;
  }
  if (value === null || depth > MAX_DEPTH) {
    return value;
  }
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      out[i] = tree(value[i], handles, depth + 1, blobs);
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    const object = /** @type {Record<string, unknown>} */ (value);
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const key of Object.keys(object)) {
      put(out, key, tree(object[key], handles, depth + 1, blobs));
    }
    return Object.hasOwn(object, MARK) ? { [MARK]: "object", value: out } : out;
  }
  if (value instanceof Ref) {
    return handles.lend(value.value, value.kind);
  }
  if (value instanceof Kwargs) {
    return tree(value.values, handles, depth, blobs);
  }
  if (value instanceof Uint8Array || value instanceof DataView) {
    return packed({ [MARK]: "bytes" }, value, blobs);
  }
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && value instanceof SharedArrayBuffer)) {
    return packed({ [MARK]: "bytes" }, new Uint8Array(value), blobs);
  }
  if (ArrayBuffer.isView(value)) {
    const dtype = DTYPE_OF.get(/** @type {any} */ (value.constructor));
    if (dtype !== undefined) {
      const array = /** @type {TypedArray} */ (value);
      return arrayMarker(dtype, [array.length], array, blobs);
    }
  } else if (value instanceof NDArray) {
    return arrayMarker(value.dtype, value.shape, value.data, blobs);
  } else if (typeof (/** @type {any} */ (value).toJSON) === "function") {
    return value; // a Date...: the encoder writes it
  }
  return handles.lend(value);
}

/**
 * @param {Function} fn
 * @param {Handles} handles
 * @returns {unknown}
 */
function lentFunction(fn, handles) {
  const state = STATES.get(fn);
  if (state !== undefined && state.link.handles === handles) {
    if (state.released) {
      throw releasedError(state);
    }
    return { [MARK]: "yours", id: state.id };
  }
  return handles.lend(fn); // (a proxy of another connection is lent on: calls are forwarded)
}

/**
 * @param {string} dtype
 * @param {number[]} shape
 * @param {ArrayBufferView} data
 * @param {Uint8Array[] | undefined} blobs
 * @returns {Record<string, unknown>} `{"$bothways": "array", dtype, shape, base64 | blob}`
 */
function arrayMarker(dtype, shape, data, blobs) {
  let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!LITTLE_ENDIAN) {
    bytes = swapped(bytes, DTYPES[/** @type {Dtype} */ (dtype)].BYTES_PER_ELEMENT);
  }
  return packed({ [MARK]: "array", dtype, shape: [...shape] }, bytes, blobs);
}

/**
 * `marker` with `data` in it: in a binary frame (`"blob": k`, the frame appended to `blobs`)
 * when there are frames, else as base64. Mirror of Python's `_packed`.
 * @param {Record<string, unknown>} marker
 * @param {ArrayBufferView} data
 * @param {Uint8Array[] | undefined} blobs
 * @returns {Record<string, unknown>}
 */
function packed(marker, data, blobs) {
  if (blobs === undefined) {
    marker.base64 = toBase64(data);
  } else {
    marker.blob = blobs.length;
    blobs.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return marker;
}

/**
 * Sets `out[key]`, also for `"__proto__"` (an own member, not the prototype).
 * @param {Record<string, unknown>} out
 * @param {string} key
 * @param {unknown} value
 */
function put(out, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    out[key] = value;
  }
}

/**
 * The params or result to send: `value` itself when it is plain JSON with no `"$bothways"` member
 * at the top (one quick walk, no copy), else `{"$bothways": "tree", "value": toTree(value)}`.
 * @param {unknown} value
 * @param {Handles} handles
 * @param {Uint8Array[]} [blobs] as for `toTree`: the binary frames to send right before the
 *   message (a channel that carries them), filled in order.
 * @returns {unknown}
 * @throws {HandleError} a proxy of this connection that was released.
 */
export function outgoing(value, handles, blobs = undefined) {
  if (typeof value !== "object" || value === null) {
    return typeof value === "function" ? { [MARK]: TREE, value: toTree(value, handles, blobs) } : value;
  }
  if (isPlain(value, 0) && !(Object.hasOwn(value, MARK) && !Array.isArray(value))) {
    return value;
  }
  return { [MARK]: TREE, value: toTree(value, handles, blobs) };
}

// -- trees -> values --------------------------------------------------------------------------

/**
 * Makes the proxy of an object the other side lends (the Peer binds it to itself).
 * @callback Borrow
 * @param {RefMarker} marker a valid ref marker.
 * @returns {unknown}
 */

/** A malformed marker: `where` is the path inside the marker, the walk prefixes its own. */
class Bad extends Error {
  /**
   * @param {string} where
   * @param {string} reason
   */
  constructor(where, reason) {
    super(reason);
    this.where = where;
    this.reason = reason;
  }
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * The path of `keys` as wire.js names places (`$.key`, `$["a b"]`, `$[3]`).
 * @param {(string | number)[]} keys
 * @returns {string}
 */
function pathOf(keys) {
  let path = "$";
  for (const key of keys) {
    if (typeof key === "number") {
      path += `[${key}]`;
    } else {
      path += IDENT.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
    }
  }
  return path;
}

/**
 * The value a tree stands for: `ref` markers become proxies (`borrow(marker)`), `yours` markers
 * our own objects (`handles.take`), `bytes` a Buffer (Node) or Uint8Array, `array` a typed array
 * (one dimension) or an NDArray, `object` escapes the object. Builds new arrays and objects.
 * @param {unknown} value
 * @param {Handles} handles
 * @param {Borrow} borrow
 * @param {Uint8Array[]} [blobs] the binary frames that came with the message (what `"blob": k`
 *   markers name). Bytes from a frame are a view of it (a Buffer in Node), not a copy.
 * @returns {any}
 * @throws {HandleError} a malformed marker (the message starts with its path: `$[1].base64: ...`),
 *   a frame number without its frame, or a `yours` marker naming an object this side does not
 *   hold.
 */
export function fromTree(value, handles, borrow, blobs = undefined) {
  /** @type {(string | number)[]} */
  const keys = [];
  try {
    return revive(value, handles, borrow, keys, blobs);
  } catch (error) {
    if (error instanceof Bad) {
      throw new HandleError(`${pathOf(keys)}${error.where}: ${error.reason}`);
    }
    throw error;
  }
}

/**
 * @param {unknown} value
 * @param {Handles} handles
 * @param {Borrow} borrow
 * @param {(string | number)[]} keys the path so far (left as it is where a Bad is thrown)
 * @param {Uint8Array[] | undefined} blobs
 * @returns {any}
 */
function revive(value, handles, borrow, keys, blobs) {
  if (typeof value !== "object" || value === null) {
    return value;
  }
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === "object" && item !== null) {
        keys.push(i);
        out[i] = revive(item, handles, borrow, keys, blobs);
        keys.pop();
      } else {
        out[i] = item;
      }
    }
    return out;
  }
  const object = /** @type {Record<string, unknown>} */ (value);
  if (!Object.hasOwn(object, MARK)) {
    return members(object, handles, borrow, keys, blobs);
  }
  const kind = object[MARK];
  switch (kind) {
    case "ref":
      return borrowed(object, handles, borrow);
    case "yours":
      if (!Number.isInteger(object.id)) {
        throw new Bad(".id", "expected an integer");
      }
      return handles.take(object.id);
    case "bytes":
      return Object.hasOwn(object, "blob") ? asBuffer(frameOf(object, blobs)) : bytesOf(object);
    case "array":
      return arrayOf(object, blobs);
    case "object": {
      const inner = object.value;
      if (typeof inner !== "object" || inner === null || Array.isArray(inner)) {
        throw new Bad(".value", "expected an object");
      }
      keys.push("value");
      const out = members(/** @type {Record<string, unknown>} */ (inner), handles, borrow, keys, blobs);
      keys.pop();
      return out;
    }
    default:
      throw new Bad(`.${MARK}`, `unknown marker kind ${shown(kind)}`);
  }
}

/**
 * @param {Record<string, unknown>} object
 * @param {Handles} handles
 * @param {Borrow} borrow
 * @param {(string | number)[]} keys
 * @param {Uint8Array[] | undefined} blobs
 * @returns {Record<string, unknown>}
 */
function members(object, handles, borrow, keys, blobs) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const key of Object.keys(object)) {
    const item = object[key];
    if (typeof item === "object" && item !== null) {
      keys.push(key);
      put(out, key, revive(item, handles, borrow, keys, blobs));
      keys.pop();
    } else {
      put(out, key, item);
    }
  }
  return out;
}

/**
 * How a bad member reads in a message: as JSON (a missing one as `null`).
 * @param {unknown} value
 * @returns {string}
 */
function shown(value) {
  return JSON.stringify(value) ?? "null";
}

/**
 * @param {Record<string, unknown>} marker
 * @param {Handles} handles
 * @param {Borrow} borrow
 * @returns {unknown}
 */
function borrowed(marker, handles, borrow) {
  const id = marker.id;
  if (!Number.isInteger(id) || /** @type {number} */ (id) < 1) {
    throw new Bad(".id", "expected a positive integer");
  }
  if (!KINDS.includes(/** @type {string} */ (marker.kind))) {
    throw new Bad(".kind", `expected one of ${KINDS.join(", ")}`);
  }
  if (typeof marker.type !== "string") {
    throw new Bad(".type", "expected a string");
  }
  const number = marker.class;
  if (number !== undefined && number !== null) {
    if (!Number.isInteger(number)) {
      throw new Bad(".class", "expected an integer");
    }
    const listed = marker.methods;
    if (listed !== undefined && listed !== null) {
      if (!Array.isArray(listed) || !listed.every((name) => typeof name === "string")) {
        throw new Bad(".methods", "expected a list of names");
      }
    }
    handles.learnClass(marker);
  }
  return borrow(/** @type {RefMarker} */ (/** @type {unknown} */ (marker)));
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** The most dimensions an array's shape may have: numpy's limit, and Python's memoryview's. */
const MAX_DIMENSIONS = 64;

/**
 * @param {Record<string, unknown>} marker
 * @returns {Uint8Array}
 */
function bytesOf(marker) {
  const text = marker.base64;
  if (typeof text !== "string") {
    throw new Bad(".base64", "expected a base64 string");
  }
  if (text.length % 4 !== 0 || !BASE64.test(text)) {
    throw new Bad(".base64", "invalid base64");
  }
  return fromBase64(text);
}

/**
 * The binary frame a marker names (`"blob": k`).
 * @param {Record<string, unknown>} marker
 * @param {Uint8Array[] | undefined} blobs
 * @returns {Uint8Array}
 */
function frameOf(marker, blobs) {
  const index = marker.blob;
  if (!Number.isInteger(index) || /** @type {number} */ (index) < 0) {
    throw new Bad(".blob", "expected a frame number");
  }
  const brought = blobs === undefined ? 0 : blobs.length;
  if (/** @type {number} */ (index) >= brought) {
    throw new Bad(".blob", `no binary frame ${index} came with the message (it brought ${brought})`);
  }
  return /** @type {Uint8Array[]} */ (blobs)[/** @type {number} */ (index)];
}

/**
 * @param {Uint8Array} bytes
 * @returns {Uint8Array} the same memory as a Buffer in Node (bytes from base64 are one too).
 */
function asBuffer(bytes) {
  return NodeBuffer === undefined || bytes instanceof NodeBuffer
    ? bytes
    : NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * @param {Record<string, unknown>} marker
 * @param {Uint8Array[] | undefined} blobs
 * @returns {TypedArray | NDArray}
 */
function arrayOf(marker, blobs) {
  const dtype = marker.dtype;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPES, dtype)) {
    throw new Bad(".dtype", `unknown dtype ${shown(dtype)} (expected one of ${DTYPE_NAMES})`);
  }
  const shape = marker.shape;
  if (!isShape(shape)) {
    throw new Bad(".shape", "expected a list of non-negative integers");
  }
  if (shape.length > MAX_DIMENSIONS) {
    throw new Bad(".shape", `at most ${MAX_DIMENSIONS} dimensions, got ${shape.length}`);
  }
  const framed = Object.hasOwn(marker, "blob");
  const bytes = framed ? frameOf(marker, blobs) : bytesOf(marker);
  const type = DTYPES[/** @type {Dtype} */ (dtype)];
  const expected = shape.reduce((a, b) => a * b, 1) * type.BYTES_PER_ELEMENT;
  if (bytes.length !== expected) {
    throw new Bad(
      framed ? ".blob" : ".base64",
      `${bytes.length} bytes do not fill shape ${JSON.stringify(shape)} of ${dtype} (${expected} bytes)`,
    );
  }
  if (framed && LITTLE_ENDIAN && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    // a frame as the decoder makes it, a buffer of its own: the array is a view of it, no copy
    const data = new type(/** @type {ArrayBuffer} */ (bytes.buffer));
    return shape.length === 1 ? data : new NDArray(/** @type {Dtype} */ (dtype), shape, data);
  }
  // a buffer of its own, aligned for the item size (Node's small Buffers share a pool)
  let own = new Uint8Array(expected);
  own.set(bytes);
  if (!LITTLE_ENDIAN) {
    own = swapped(own, type.BYTES_PER_ELEMENT);
  }
  const data = new type(own.buffer);
  return shape.length === 1 ? data : new NDArray(/** @type {Dtype} */ (dtype), shape, data);
}

/**
 * A copy of `bytes` with each item of `size` bytes reversed (big-endian hosts only).
 * @param {Uint8Array} bytes
 * @param {number} size
 * @returns {Uint8Array}
 */
function swapped(bytes, size) {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let j = 0; j < size; j++) {
      out[i + j] = bytes[i + size - 1 - j];
    }
  }
  return out;
}

/**
 * A received params or result: the value of its tree when it is one (one check at the top),
 * else the value itself.
 * @param {unknown} value
 * @param {Handles} handles
 * @param {Borrow} borrow
 * @param {Uint8Array[]} [blobs] the binary frames that came right before the message.
 * @returns {any}
 * @throws {HandleError} as `fromTree`; also a tree without its `value`.
 */
export function incoming(value, handles, borrow, blobs = undefined) {
  if (typeof value === "object" && value !== null && /** @type {any} */ (value)[MARK] === TREE) {
    if (!Object.hasOwn(value, "value")) {
      throw new HandleError("$.value: a tree needs its value");
    }
    return fromTree(/** @type {any} */ (value).value, handles, borrow, blobs);
  }
  return value;
}

// -- base64 -----------------------------------------------------------------------------------

/** Node's Buffer when there is one (never imported: the module loads in browsers). */
const NodeBuffer = /** @type {any} */ (globalThis).Buffer;

/**
 * @param {ArrayBufferView} view
 * @returns {string}
 */
function toBase64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  if (NodeBuffer !== undefined) {
    return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  }
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * @param {string} text valid base64.
 * @returns {Uint8Array} a Buffer in Node.
 */
function fromBase64(text) {
  if (NodeBuffer !== undefined) {
    return NodeBuffer.from(text, "base64");
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

// -- serving the objects we lend ----------------------------------------------------------------

/**
 * The functions serving section 10.4's requests on `handles`' objects, by method name
 * (`$/get`... `$/next`); the Peer exposes them like any function. A callee given keyword
 * arguments gets them as one last argument.
 * @param {Handles} handles
 * @returns {Record<string, (...args: any[]) => unknown>}
 */
export function lenderFunctions(handles) {
  /**
   * @param {unknown} id
   * @param {unknown} name
   * @returns {[any, string]}
   */
  const named = (id, name) => {
    const target = handles.take(id);
    if (typeof name !== "string" && typeof name !== "number") {
      throw new TypeError(`a member name must be a string, not ${JSON.stringify(name) ?? typeof name}`);
    }
    return [target, String(name)];
  };

  /**
   * @param {unknown} id
   * @param {unknown} name
   * @returns {unknown}
   */
  function get(id, name) {
    const [target, key] = named(id, name);
    const member = target[key];
    // a method is lent bound to its object, as Python's bound methods are
    return typeof member === "function" && !isClass(member) && !STATES.has(member) ? member.bind(target) : member;
  }

  /**
   * @param {unknown} id
   * @param {unknown} name
   * @param {unknown} value
   * @returns {null}
   */
  function set(id, name, value) {
    const [target, key] = named(id, name);
    if (key === "__proto__") {
      throw new TypeError("'__proto__' cannot be set");
    }
    target[key] = value;
    return null;
  }

  /**
   * @param {unknown} id
   * @param {unknown} name
   * @param {unknown} args
   * @param {unknown} [kwargs]
   * @returns {unknown}
   */
  function call(id, name, args, kwargs = null) {
    const target = handles.take(id);
    const all = argumentsOf(args, kwargs);
    if (name === null || name === undefined) {
      if (typeof target !== "function") {
        throw new TypeError(`${typeName(target, kindOf(target))} object is not callable`);
      }
      return isClass(target) ? Reflect.construct(target, all) : Reflect.apply(target, undefined, all);
    }
    const [, key] = named(id, name);
    const member = target[key];
    if (typeof member !== "function") {
      throw new TypeError(`${typeName(target, kindOf(target))}.${key} is not a function`);
    }
    return isClass(member) ? Reflect.construct(member, all) : Reflect.apply(member, target, all);
  }

  /**
   * @param {unknown} id
   * @param {unknown} args
   * @param {unknown} [kwargs]
   * @returns {unknown}
   */
  function construct(id, args, kwargs = null) {
    const target = handles.take(id);
    if (typeof target !== "function") {
      throw new TypeError(`${typeName(target, kindOf(target))} object is not a class`);
    }
    return Reflect.construct(target, argumentsOf(args, kwargs));
  }

  /**
   * @param {unknown} id
   * @param {unknown} key
   * @returns {unknown}
   */
  function item(id, key) {
    const target = handles.take(id);
    return target instanceof Map ? target.get(key) : target[/** @type {any} */ (key)];
  }

  /**
   * @param {unknown} id
   * @returns {number}
   */
  function length(id) {
    const target = handles.take(id);
    const size = target instanceof Map || target instanceof Set ? target.size : target?.length;
    if (typeof size !== "number") {
      throw new TypeError(`${typeName(target, kindOf(target))} object has no length`);
    }
    return size;
  }

  /**
   * @param {unknown} id
   * @returns {Promise<string>}
   */
  async function repr(id) {
    const target = handles.take(id);
    const util = await nodeUtil();
    return util === null ? String(target) : util.inspect(target);
  }

  /**
   * @param {unknown} id
   * @returns {unknown}
   */
  function value(id) {
    const target = handles.take(id);
    try {
      return jsonCopy(target, "$", 0);
    } catch (error) {
      if (error instanceof Bad) {
        const type = typeName(target, kindOf(target));
        throw new HandleError(`handle ${id} (${type}) has no JSON value: ${error.where}: ${error.reason}`);
      }
      throw error;
    }
  }

  /**
   * @param {unknown} id
   * @returns {Ref}
   */
  function iter(id) {
    const target = handles.take(id);
    const make = target?.[Symbol.asyncIterator] ?? target?.[Symbol.iterator];
    if (typeof make !== "function") {
      throw new TypeError(`${typeName(target, kindOf(target))} object is not iterable`);
    }
    return new Ref(make.call(target), "iterator");
  }

  /**
   * @param {unknown} id
   * @param {unknown} n
   * @returns {{items: unknown[], done: boolean} | Promise<{items: unknown[], done: boolean}>}
   */
  function next(id, n) {
    if (!Number.isInteger(n) || /** @type {number} */ (n) < 1) {
      throw new TypeError(`$/next wants a positive number of items, not ${JSON.stringify(n)}`);
    }
    const iterator = handles.take(id);
    if (typeof iterator?.next !== "function") {
      throw new TypeError(`${typeName(iterator, kindOf(iterator))} object is not an iterator`);
    }
    /** @type {unknown[]} */
    const items = [];
    for (let i = 0; i < /** @type {number} */ (n); i++) {
      const step = iterator.next();
      if (isThenable(step)) {
        return pullAsync(id, iterator, /** @type {number} */ (n), items, step);
      }
      if (step.done) {
        handles.drop([id]);
        return { items, done: true };
      }
      items.push(step.value);
    }
    return { items, done: false };
  }

  /**
   * The rest of a `$/next` on an async iterator.
   * @param {unknown} id
   * @param {any} iterator
   * @param {number} n
   * @param {unknown[]} items
   * @param {PromiseLike<IteratorResult<unknown>>} first the step under way.
   * @returns {Promise<{items: unknown[], done: boolean}>}
   */
  async function pullAsync(id, iterator, n, items, first) {
    let step = await first;
    for (;;) {
      if (step.done) {
        handles.drop([id]);
        return { items, done: true };
      }
      items.push(step.value);
      if (items.length >= n) {
        return { items, done: false };
      }
      step = await iterator.next();
    }
  }

  return {
    "$/get": get,
    "$/set": set,
    "$/call": call,
    "$/new": construct,
    "$/item": item,
    "$/len": length,
    "$/repr": repr,
    "$/value": value,
    "$/iter": iter,
    "$/next": next,
    "$/handles": () => handles.size,
  };
}

/**
 * The arguments of a call: `args`, then `kwargs` as one last argument when it has any member.
 * @param {unknown} args
 * @param {unknown} kwargs
 * @returns {unknown[]}
 */
function argumentsOf(args, kwargs) {
  if (!Array.isArray(args)) {
    throw new TypeError("the arguments of a call must be an array");
  }
  if (kwargs === null || kwargs === undefined) {
    return args;
  }
  if (typeof kwargs !== "object" || Array.isArray(kwargs)) {
    throw new TypeError("the keyword arguments of a call must be an object or null");
  }
  return Object.keys(kwargs).length === 0 ? args : [...args, kwargs];
}

/** @type {Promise<any> | null} */
let utilModule = null;

/**
 * Node's `util` module when running in Node, else null.
 * @returns {Promise<any>}
 */
function nodeUtil() {
  if (utilModule === null) {
    const process = /** @type {any} */ (globalThis).process;
    if (typeof process?.getBuiltinModule === "function") {
      utilModule = Promise.resolve(process.getBuiltinModule("node:util"));
    } else if (typeof process?.versions?.node === "string") {
      const specifier = "node:util"; // (a variable: bundlers for browsers leave it alone)
      utilModule = import(specifier).catch(() => null);
    } else {
      utilModule = Promise.resolve(null);
    }
  }
  return utilModule;
}

/**
 * A JSON copy of `value`: `toJSON` is used, class instances give their own members; what JSON
 * would drop or change (functions, Maps, Sets, bytes, iterators, BigInt...) is a Bad.
 * @param {unknown} value
 * @param {string} path
 * @param {number} depth
 * @returns {unknown}
 */
function jsonCopy(value, path, depth) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) ? value : null;
    case "object":
      break;
    default:
      throw new Bad(path, `a ${typeof value} is not JSON`);
  }
  if (value === null) {
    return null;
  }
  if (depth > MAX_DEPTH) {
    throw new Bad(path, `nesting deeper than ${MAX_DEPTH} arrays/objects`);
  }
  const object = /** @type {any} */ (value);
  if (Array.isArray(object)) {
    return object.map((item, i) => jsonCopy(item, `${path}[${i}]`, depth + 1));
  }
  if (
    object instanceof Map ||
    object instanceof Set ||
    object instanceof WeakMap ||
    object instanceof WeakSet ||
    object instanceof ArrayBuffer ||
    ArrayBuffer.isView(object) ||
    object instanceof NDArray ||
    isThenable(object) ||
    kindOf(object) === "iterator"
  ) {
    throw new Bad(path, `a ${typeName(object, "object")} is not JSON`);
  }
  if (typeof object.toJSON === "function") {
    return jsonCopy(object.toJSON(), path, depth + 1);
  }
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const key of Object.keys(object)) {
    const item = object[key];
    if (item !== undefined) {
      put(out, key, jsonCopy(item, pathOf([key]).replace("$", path), depth + 1));
    }
  }
  return out;
}

/**
 * @param {unknown} value
 * @returns {value is PromiseLike<any>}
 */
function isThenable(value) {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (/** @type {any} */ (value).then) === "function"
  );
}

// -- proxies ----------------------------------------------------------------------------------

/**
 * What a proxy asks through: the Peer of one connection.
 * @typedef {object} Link
 * @property {Handles} handles
 * @property {(method: string, params: unknown[]) => Promise<any>} request sends a request; the
 *   answer's value, revived.
 * @property {() => void} releaseSoon ids were queued in `handles.released`: send them soon.
 */

/** What a proxy knows of its object. */
class State {
  /**
   * @param {Link} link
   * @param {RefMarker} marker
   */
  constructor(link, marker) {
    /** @type {Link} */
    this.link = link;
    /** @type {number} */
    this.id = marker.id;
    /** @type {string} */
    this.kind = marker.kind;
    /** @type {string} */
    this.type = marker.type;
    /** @type {readonly string[] | undefined} */
    this.methods = typeof marker.class === "number" ? link.handles.classes.get(marker.class) : undefined;
    this.released = false;
  }
}

/** proxy (and its target) -> its state @type {WeakMap<Function, State>} */
const STATES = new WeakMap();

/** Collected proxies: their ids are queued for `$/release`. */
const REGISTRY =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry((/** @type {{link: Link, id: number}} */ held) => {
        held.link.handles.released.push(held.id);
        held.link.releaseSoon();
      })
    : null;

/**
 * @param {State} state
 * @returns {string}
 */
function localText(state) {
  return `[remote ${state.kind} ${state.type} #${state.id}${state.released ? " (released)" : ""}]`;
}

/**
 * @param {State} state
 * @returns {HandleError}
 */
function releasedError(state) {
  return new HandleError(`handle ${state.id} (${state.type}) was released`);
}

/**
 * A request on the handle; rejects at once with HandleError when the proxy was released.
 * @param {State} state
 * @param {string} method
 * @param {unknown[]} rest the params after the id.
 * @returns {Promise<any>}
 */
function ask(state, method, rest) {
  if (state.released) {
    return Promise.reject(releasedError(state));
  }
  return state.link.request(method, [state.id, ...rest]);
}

/**
 * `[args, kwargs]` of a call: a trailing `kwargs(...)` argument is taken out.
 * @param {unknown[]} args
 * @returns {[unknown[], Record<string, unknown> | null]}
 */
function splitKwargs(args) {
  const last = args[args.length - 1];
  return last instanceof Kwargs ? [args.slice(0, -1), last.values] : [args, null];
}

/**
 * Lets go of the handle: queued for `$/release`, then refused locally.
 * @param {State} state
 */
function releaseState(state) {
  if (!state.released) {
    state.released = true;
    REGISTRY?.unregister(state);
    state.link.handles.released.push(state.id);
    state.link.releaseSoon();
  }
}

/**
 * The lender dropped the handle itself (an exhausted iterator): nothing to release.
 * @param {State} state
 */
function forgetState(state) {
  state.released = true;
  REGISTRY?.unregister(state);
}

/** @type {ProxyHandler<Function>} */
const HANDLER = {
  get(target, key, receiver) {
    const state = /** @type {State} */ (STATES.get(target));
    if (typeof key === "symbol") {
      if (key === Symbol.asyncIterator) {
        return () => new Pull(state, receiver);
      }
      if (key === asyncDispose) {
        return () => {
          releaseState(state);
          return Promise.resolve();
        };
      }
      if (key === INSPECT) {
        return () => localText(state);
      }
      if (key === Symbol.toStringTag) {
        return "RemoteObject";
      }
      return undefined;
    }
    switch (key) {
      case "then": // a handle is not a promise: `await h` gives h
      case "toJSON":
        return undefined;
      case "toString":
        return () => localText(state);
      case "$id":
        return state.id;
      case "$kind":
        return state.kind;
      case "$type":
        return state.type;
      case "$methods":
        return state.methods;
      case "$get":
        return (/** @type {string} */ name) => ask(state, "$/get", [name]);
      case "$set":
        return (/** @type {string} */ name, /** @type {unknown} */ value) => ask(state, "$/set", [name, value]);
      case "$item":
        return (/** @type {unknown} */ itemKey) => ask(state, "$/item", [itemKey]);
      case "$len":
        return () => ask(state, "$/len", []);
      case "$repr":
        return () => ask(state, "$/repr", []);
      case "apply": // a remote function used as a JavaScript one (an EventEmitter's listener...)
      case "call":
      case "bind":
        if (state.kind === "function" || state.kind === "class") {
          return Function.prototype[key].bind(receiver);
        }
        return member(state, key, receiver);
      default:
        return member(state, key, receiver);
    }
  },
  set(_target, key) {
    throw new TypeError(`set a remote object's member with 'await h.$set(${JSON.stringify(String(key))}, value)'`);
  },
  apply(target, _this, args) {
    const state = /** @type {State} */ (STATES.get(target));
    const [positional, named] = splitKwargs(args);
    return ask(state, "$/call", [null, positional, named]);
  },
  construct(target, args) {
    const state = /** @type {State} */ (STATES.get(target));
    const [positional, named] = splitKwargs(args);
    return ask(state, "$/new", [positional, named]);
  },
  getPrototypeOf() {
    return RemoteObject.prototype;
  },
};

/**
 * `h.name`: a function that calls the remote method (`$/call`), and a thenable that reads the
 * attribute (`$/get`): either costs one round trip.
 * @param {State} state
 * @param {string} name
 * @param {unknown} proxy kept alive while the member is (a collected proxy is released).
 * @returns {Function}
 */
function member(state, name, proxy) {
  /** @param {unknown[]} args */
  const fn = (...args) => {
    void proxy;
    const [positional, named] = splitKwargs(args);
    return ask(state, "$/call", [name, positional, named]);
  };
  /** @type {any} */ (fn).then = (/** @type {any} */ ok, /** @type {any} */ fail) =>
    ask(state, "$/get", [name]).then(ok, fail);
  return fn;
}

/**
 * A proxy of an object the other side lends (made by the Peer when a `ref` marker arrives):
 * `await h.name(...args)` calls a method, `await h.name` reads a member, `await h(...args)` calls
 * the object, `await new H(...args)` makes an instance, `for await (const x of h)` pulls a
 * stream, `await using h = ...` or `release(h)` lets go of it. `h.$id`, `h.$kind`, `h.$type`;
 * `h.$get(name)`, `h.$set(name, value)`, `h.$item(key)`, `h.$len()`, `h.$repr()`; `value(h)`.
 * `String(h)` is a local text (`[remote object DataFrame #7]`), with no round trip; `h.then` is
 * undefined (a handle is not a promise). `h instanceof RemoteObject` holds.
 */
export class RemoteObject {
  /**
   * @param {Link} link what it asks through.
   * @param {RefMarker} marker the `ref` marker it stands for.
   * @returns {any} the proxy.
   */
  constructor(link, marker) {
    const target = function () {};
    const state = new State(link, marker);
    /** @type {any} */ (target)[INSPECT] = () => localText(state); // util.inspect reads the target
    const proxy = new Proxy(target, HANDLER);
    STATES.set(target, state);
    STATES.set(proxy, state);
    REGISTRY?.register(proxy, { link, id: state.id }, state);
    return proxy;
  }
}

/**
 * The state of a proxy.
 * @param {unknown} proxy
 * @param {string} what the function, for the message.
 * @returns {State}
 * @throws {TypeError} it is not a remote object.
 */
function stateOf(proxy, what) {
  const state = typeof proxy === "function" ? STATES.get(proxy) : undefined;
  if (state === undefined) {
    throw new TypeError(`${what}() takes a remote object, not ${proxy === null ? "null" : typeof proxy}`);
  }
  return state;
}

/**
 * Lets go of a remote object now (it is also let go of when garbage collected): the lender is
 * told in the next `$/release`, and later uses of the proxy throw HandleError at once.
 * @param {unknown} proxy
 * @throws {TypeError} it is not a remote object.
 */
export function release(proxy) {
  releaseState(stateOf(proxy, "release"));
}

/**
 * The remote object as a JSON value (a copy), asked with `$/value`.
 * @param {unknown} proxy
 * @returns {Promise<any>}
 * @throws {TypeError} it is not a remote object.
 * @throws {import("./errors.js").RemoteError} it has no JSON form (`remoteType` HandleError).
 */
export function value(proxy) {
  return ask(stateOf(proxy, "value"), "$/value", []);
}

/**
 * `for await (const x of h)`: the iterator handle (asked for with `$/iter` unless the proxy is
 * one), pulled with `$/next` in batches of 64 doubling to 4096; `return()` (a `break`) releases it.
 * @implements {AsyncIterator<any>}
 */
class Pull {
  /** @type {unknown[]} */
  #items = [];
  #index = 0;
  #credit = FIRST_CREDIT;
  #done = false;
  /** @type {State | null} the iterator handle's state */
  #iterator = null;
  /** @type {unknown} the iterator proxy, kept alive while pulling */
  #proxy = null;
  #source;

  /**
   * @param {State} source
   * @param {unknown} proxy the source proxy.
   */
  constructor(source, proxy) {
    this.#source = source;
    this.#proxy = proxy; // (until $/iter answers: the source)
    if (source.kind === "iterator") {
      this.#iterator = source;
    }
  }

  /**
   * The proxy being pulled (kept alive by this object, so that it is not collected and released
   * while the loop runs).
   * @returns {unknown}
   */
  get proxy() {
    return this.#proxy;
  }

  /** @returns {Promise<IteratorResult<any>>} */
  async next() {
    while (this.#index >= this.#items.length) {
      if (this.#done) {
        return { value: undefined, done: true };
      }
      await this.#pull();
    }
    const item = this.#items[this.#index];
    this.#items[this.#index++] = undefined; // (not kept alive by the batch)
    return { value: item, done: false };
  }

  async #pull() {
    if (this.#iterator === null) {
      const proxy = await ask(this.#source, "$/iter", []);
      const state = typeof proxy === "function" ? STATES.get(proxy) : undefined;
      if (state === undefined) {
        throw new HandleError(`$/iter on handle ${this.#source.id} did not answer an iterator handle`);
      }
      this.#iterator = state;
      this.#proxy = proxy;
    }
    const iterator = this.#iterator;
    if (iterator.released) {
      this.#done = true;
      return;
    }
    const answer = await ask(iterator, "$/next", [this.#credit]);
    if (typeof answer !== "object" || answer === null || !Array.isArray(answer.items)) {
      throw new HandleError(`$/next answered ${JSON.stringify(answer)}, not {items, done}`);
    }
    this.#items = answer.items;
    this.#index = 0;
    this.#done = answer.done === true;
    this.#credit = Math.min(this.#credit * 2, MAX_CREDIT);
    if (this.#done) {
      forgetState(iterator); // the lender dropped it
    }
  }

  /**
   * Stops early (`break`): releases the iterator, which closes the lender's generator.
   * @param {unknown} [result]
   * @returns {Promise<IteratorResult<any>>}
   */
  async return(result = undefined) {
    if (!this.#done) {
      this.#done = true;
      if (this.#iterator !== null) {
        releaseState(this.#iterator);
      }
    }
    this.#items = [];
    this.#index = 0;
    this.#proxy = null;
    return { value: result, done: true };
  }

  /** @returns {Pull} */
  [Symbol.asyncIterator]() {
    return this;
  }
}
