// Objects, callbacks, streams and bytes (spec/PROTOCOL.md section 10): the sans-I/O core of
// js/src/objects.js (the shared vectors of spec/vectors/objects.json, Handles, the lender's
// functions, the RemoteObject proxy over a fake link), then two Peers over memoryPair(), and
// js/bin/host.mjs serving a class. Mirrors tests/unit/test_objects.py.
//
// The garbage-collection test needs `gc()`: it uses `--expose-gc` when node runs with it, else
// turns the flag on at run time (v8.setFlagsFromString), else releases explicitly.
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { setImmediate as tick, setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import v8 from "node:v8";
import vm from "node:vm";

import { HandleError, RemoteError } from "../src/errors.js";
import {
  FIRST_CREDIT,
  HANDLE_NOT_HELD,
  Handles,
  MARK,
  MAX_CREDIT,
  NDArray,
  OBJECT_METHODS,
  RELEASE_METHOD,
  Ref,
  RemoteObject,
  fromTree,
  incoming,
  kwargs,
  lenderFunctions,
  outgoing,
  ref,
  release,
  toTree,
  value,
} from "../src/objects.js";
import { Peer } from "../src/peer.js";
import { HELLO_METHOD, INVALID_PARAMS, hello, speaksBinary } from "../src/rpc.js";
import { memoryPair } from "../src/transports/base.js";
import { StdioChannel, spawn } from "../src/transports/stdio.js";
import { Binary } from "../src/wire.js";

const UNIT = Number(process.env.BOTHWAYS_TEST_TIMEOUT_FACTOR ?? "1");
const S = 1000 * UNIT; // one second, scaled
const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");
const HOST = join(ROOT, "js", "bin", "host.mjs");
const VECTORS = join(ROOT, "spec", "vectors", "objects.json");

/** @type {Record<string, any>} */
const TYPED = {
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

/** A borrow that records the markers it was given and stands for each by a small object. */
function recorder() {
  /** @type {any[]} */
  const markers = [];
  return {
    markers,
    borrow: (/** @type {any} */ marker) => {
      markers.push(marker);
      return { borrowed: marker.id };
    },
  };
}

/** The `gc()` of this process, or null. */
function collector() {
  if (typeof globalThis.gc === "function") return globalThis.gc;
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc");
  } catch {
    return null;
  }
}

// -- the shared vectors -------------------------------------------------------------------------

/**
 * The vector file, its integers beyond 2**53 read exactly ({"$big": "digits"}): JSON.parse
 * would round them.
 * @returns {any[]}
 */
function loadVectors() {
  const text = readFileSync(VECTORS, "utf8").replace(/(?<=[[,:\s])(-?\d{16,})(?=[\],\s])/g, '{"$big": "$1"}');
  return JSON.parse(text).cases;
}

/**
 * The vector's tagged value as JavaScript receives it: {"$bytes": hex} a Buffer, {"$array"} a
 * typed array (one dimension) or an NDArray; with `sending`, a 1-D bool or uint8 array is an
 * NDArray (a Uint8Array alone is sent as bytes).
 * @param {any} tagged
 * @param {boolean} sending
 * @returns {any}
 */
function untag(tagged, sending) {
  if (Array.isArray(tagged)) return tagged.map((item) => untag(item, sending));
  if (typeof tagged !== "object" || tagged === null) return tagged;
  if (Object.hasOwn(tagged, "$big")) return tagged.$big;
  if (Object.hasOwn(tagged, "$bytes")) return Buffer.from(tagged.$bytes, "hex");
  if (Object.hasOwn(tagged, "$array")) {
    const { dtype, shape, items } = tagged.$array;
    const type = TYPED[dtype];
    const wide = type === BigInt64Array || type === BigUint64Array;
    const data = type.from(items.map((/** @type {any} */ item) => (wide ? BigInt(item.$big ?? item) : Number(item))));
    const plainBytes = type === Uint8Array;
    return shape.length === 1 && !(sending && plainBytes) ? data : new NDArray(dtype, shape, data);
  }
  return Object.fromEntries(Object.entries(tagged).map(([key, item]) => [key, untag(item, sending)]));
}

/**
 * The vector's binary frames two ways: arrays of their own (as the Decoder makes them: arrays
 * are views of them) and views at odd offsets of one shared buffer (arrays are copies).
 * @param {string[] | undefined} hexes
 * @returns {(Uint8Array[] | undefined)[]}
 */
function framings(hexes) {
  if (hexes === undefined) return [undefined];
  const own = hexes.map((hex) => Uint8Array.from(Buffer.from(hex, "hex")));
  const shared = Buffer.from("ff" + hexes.join(""), "hex");
  let at = 1;
  const views = own.map((blob) => shared.subarray(at, (at += blob.length)));
  return [own, views];
}

describe("spec/vectors/objects.json", () => {
  for (const vector of loadVectors()) {
    test(vector.name, () => {
      const tree = untag(vector.tree, false); // (only $big tags in a tree: none today)
      const { borrow } = recorder();
      for (const blobs of framings(vector.blobs)) {
        if (vector.error !== undefined) {
          assert.throws(
            () => fromTree(tree, new Handles(), borrow, blobs),
            (error) => error instanceof HandleError && error.message === vector.error,
          );
        } else {
          assert.deepEqual(fromTree(tree, new Handles(), borrow, blobs), untag(vector.value, false));
        }
      }
      if (vector.error !== undefined) {
        return;
      }
      if (vector.blobs !== undefined) {
        // sent with frames, the value gives the tree and its frames back
        /** @type {Uint8Array[]} */
        const sent = [];
        const again = toTree(untag(vector.value, true), new Handles(), sent);
        assert.deepEqual(fromTree(again, new Handles(), borrow, sent), untag(vector.value, false));
      }
      if (vector.both) {
        assert.deepEqual(toTree(untag(vector.value, true), new Handles()), tree);
      }
    });
  }
});

// -- values -> trees ----------------------------------------------------------------------------

describe("toTree and outgoing", () => {
  test("plain JSON stays, untouched and uncopied", () => {
    const handles = new Handles();
    for (const plain of [null, 1, "a", true, [1, [2, { a: null }]], { a: { b: [1, "x"] } }, { d: new Date(0) }]) {
      assert.equal(outgoing(plain, handles), plain);
    }
    const nested = { a: { [MARK]: "ref" } }; // only the top level is ever looked at
    assert.equal(outgoing(nested, handles), nested);
    assert.equal(handles.size, 0);
  });

  test("a plain object with a $bothways member is escaped, at any depth in a tree", () => {
    const handles = new Handles();
    assert.deepEqual(outgoing({ [MARK]: "tree", value: 1 }, handles), {
      [MARK]: "tree",
      value: { [MARK]: "object", value: { [MARK]: "tree", value: 1 } },
    });
    assert.deepEqual(toTree([{ [MARK]: 1, f: null }], handles), [{ [MARK]: "object", value: { [MARK]: 1, f: null } }]);
  });

  test("functions, classes, instances, Maps and generators are lent; the class's methods go once", () => {
    const handles = new Handles();
    class Counter {
      constructor() {
        this.n = 0;
      }
      inc() {}
      _hidden() {}
      get total() {
        return this.n;
      }
    }
    class Special extends Counter {
      reset() {}
    }
    function* numbers() {
      yield 1;
    }
    const sent = outgoing([function add() {}, Counter, new Counter(), new Counter(), new Special(), new Map(), numbers()], handles);
    assert.equal(sent[MARK], "tree");
    assert.deepEqual(sent.value, [
      { [MARK]: "ref", id: 1, kind: "function", type: "add" },
      { [MARK]: "ref", id: 2, kind: "class", type: "Counter" },
      { [MARK]: "ref", id: 3, kind: "object", type: "Counter", class: 1, methods: ["inc"] },
      { [MARK]: "ref", id: 4, kind: "object", type: "Counter", class: 1 },
      { [MARK]: "ref", id: 5, kind: "object", type: "Special", class: 2, methods: ["inc", "reset"] },
      {
        [MARK]: "ref",
        id: 6,
        kind: "object",
        type: "Map",
        class: 3,
        // Map.prototype's own methods, as this Node version has them (Node 26 adds getOrInsert...)
        methods: Object.getOwnPropertyNames(Map.prototype)
          .filter((name) => name !== "constructor" && typeof Object.getOwnPropertyDescriptor(Map.prototype, name)?.value === "function")
          .sort(),
      },
      { [MARK]: "ref", id: 7, kind: "iterator", type: "Generator" },
    ]);
    assert.ok(sent.value[5].methods.includes("get") && sent.value[5].methods.includes("set"));
    assert.equal(handles.size, 7);
  });

  test("a dict of functions arrives with callable members; ref() lends JSON by reference", () => {
    const handles = new Handles();
    const settings = { a: 1 };
    const tree = toTree({ on: { data: () => {} }, settings: ref(settings) }, handles);
    assert.deepEqual(tree, {
      on: { data: { [MARK]: "ref", id: 1, kind: "function", type: "data" } },
      settings: { [MARK]: "ref", id: 2, kind: "object", type: "Object", class: 1, methods: [] },
    });
    assert.equal(handles.take(2), settings);
  });

  test("bytes and typed arrays are packed", () => {
    const handles = new Handles();
    const buffer = new ArrayBuffer(4);
    new Uint8Array(buffer).set([1, 2, 3, 4]);
    assert.deepEqual(
      toTree(
        [
          new Uint8Array([0, 1, 2, 255]),
          Buffer.from("hi"),
          buffer,
          new DataView(buffer, 1, 2),
          new Uint8Array(buffer, 2), // a view into a larger buffer: only its bytes
          new Uint8ClampedArray([7]),
          new Float64Array([1.5]),
          new BigInt64Array([-1n]),
          new NDArray("float32", [2, 1], new Float32Array([1, -0.5])),
        ],
        handles,
      ),
      [
        { [MARK]: "bytes", base64: "AAEC/w==" },
        { [MARK]: "bytes", base64: "aGk=" },
        { [MARK]: "bytes", base64: "AQIDBA==" },
        { [MARK]: "bytes", base64: "AgM=" },
        { [MARK]: "bytes", base64: "AwQ=" },
        { [MARK]: "array", dtype: "uint8", shape: [1], base64: "Bw==" },
        { [MARK]: "array", dtype: "float64", shape: [1], base64: "AAAAAAAA+D8=" },
        { [MARK]: "array", dtype: "int64", shape: [1], base64: "//////////8=" },
        { [MARK]: "array", dtype: "float32", shape: [2, 1], base64: "AACAPwAAAL8=" },
      ],
    );
    assert.equal(handles.size, 0);
  });

  test("NDArray checks what it is given", () => {
    assert.throws(() => new NDArray(/** @type {any} */ ("complex"), [1], new Float64Array(1)), TypeError);
    assert.throws(() => new NDArray("float64", [-1], new Float64Array(1)), TypeError);
    assert.throws(() => new NDArray("float64", [2], new Float32Array(2)), TypeError);
    assert.throws(() => new NDArray("float64", [2, 2], new Float64Array(3)), RangeError);
    assert.deepEqual(new NDArray("bool", [], new Uint8Array([1])).shape, []);
  });
});

// -- trees -> values ----------------------------------------------------------------------------

describe("fromTree and incoming", () => {
  test("every dtype round-trips, one dimension or more", () => {
    const handles = new Handles();
    const { borrow } = recorder();
    for (const [dtype, type] of Object.entries(TYPED)) {
      const wide = type === BigInt64Array || type === BigUint64Array;
      const items = [0, 1, 2, 3, 4, 5].map((n) => (wide ? BigInt(n) : n));
      const flat = type.from(items);
      const sent = dtype === "bool" || dtype === "uint8" ? new NDArray(/** @type {any} */ (dtype), [6], flat) : flat;
      assert.deepEqual(fromTree(toTree(sent, handles), handles, borrow), flat, dtype);
      for (const shape of [[2, 3], [3, 2, 1], [1, 6]]) {
        const nd = new NDArray(/** @type {any} */ (dtype), shape, type.from(items));
        assert.deepEqual(fromTree(toTree(nd, handles), handles, borrow), nd, `${dtype} ${shape}`);
      }
    }
    const scalar = new NDArray("float64", [], new Float64Array([2.5]));
    assert.deepEqual(fromTree(toTree(scalar, handles), handles, borrow), scalar);
  });

  test("received arrays have a buffer of their own (aligned)", () => {
    const arrays = fromTree(
      [
        { [MARK]: "bytes", base64: "AQ==" },
        { [MARK]: "array", dtype: "float64", shape: [1], base64: "AAAAAAAA+D8=" },
      ],
      new Handles(),
      recorder().borrow,
    );
    assert.ok(Buffer.isBuffer(arrays[0]));
    assert.equal(arrays[1].byteOffset, 0);
    assert.equal(arrays[1][0], 1.5);
  });

  test("refs are borrowed and their class remembered; yours gives our object back", () => {
    const handles = new Handles();
    const mine = { mine: true };
    const marker = handles.lend(mine);
    const { markers, borrow } = recorder();
    const tree = [
      { [MARK]: "ref", id: 4, kind: "object", type: "Frame", class: 9, methods: ["head"] },
      { [MARK]: "ref", id: 5, kind: "object", type: "Frame", class: 9 },
      { [MARK]: "yours", id: marker.id },
    ];
    assert.deepEqual(fromTree(tree, handles, borrow), [{ borrowed: 4 }, { borrowed: 5 }, mine]);
    assert.equal(markers.length, 2);
    assert.deepEqual(handles.classes.get(9), ["head"]);
    assert.deepEqual(tree[0], { [MARK]: "ref", id: 4, kind: "object", type: "Frame", class: 9, methods: ["head"] });
  });

  test("incoming unwraps a tree and leaves anything else as it is", () => {
    const handles = new Handles();
    const plain = { [MARK]: "bytes", base64: "AA==" }; // not a tree: never walked
    assert.equal(incoming(plain, handles, recorder().borrow), plain);
    assert.deepEqual(incoming({ [MARK]: "tree", value: [{ [MARK]: "bytes", base64: "AA==" }] }, handles, recorder().borrow), [
      Buffer.from([0]),
    ]);
    assert.throws(() => incoming({ [MARK]: "tree" }, handles, recorder().borrow), /^HandleError: \$\.value: /);
  });

  test("a __proto__ member stays a member", () => {
    const tree = JSON.parse('{"__proto__": {"x": 1}, "b": {"$bothways": "bytes", "base64": ""}}');
    const out = fromTree(tree, new Handles(), recorder().borrow);
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out, "__proto__")?.value, { x: 1 });
    const sent = /** @type {any} */ (toTree(out, new Handles()));
    assert.equal(Object.getPrototypeOf(sent), Object.prototype);
    assert.ok(Object.hasOwn(sent, "__proto__"));
  });
});

// -- Handles ------------------------------------------------------------------------------------

describe("Handles", () => {
  test("lend counts from 1, a new id for each lend; take, drop, clear, size", () => {
    const handles = new Handles();
    const f = () => 1;
    assert.equal(handles.lend(f).id, 1);
    assert.equal(handles.lend(f).id, 2);
    assert.equal(handles.take(1), f);
    assert.equal(handles.size, 2);
    handles.drop([1, 77, "x"]);
    assert.equal(handles.size, 1);
    assert.throws(
      () => handles.take(1),
      (error) =>
        error instanceof HandleError &&
        error.message === "handle 1 is not held here (released, or never lent)" &&
        /** @type {any} */ (error).rpcCode === HANDLE_NOT_HELD &&
        error.code === "HANDLE_ERROR",
    );
    handles.clear();
    assert.equal(handles.size, 0);
    assert.equal(handles.lend(f).id, 3); // ids are never reused
  });

  test("dropping (or clearing) an iterator closes it: its generator's finally runs", () => {
    const handles = new Handles();
    const closed = [];
    function* numbers() {
      try {
        yield 1;
        yield 2;
      } finally {
        closed.push("sync");
      }
    }
    async function* later() {
      try {
        yield 1;
      } finally {
        closed.push("async");
      }
    }
    const one = numbers();
    one.next();
    const two = later();
    const { id } = handles.lend(one);
    handles.lend(two);
    return two.next().then(async () => {
      handles.drop([id]);
      assert.deepEqual(closed, ["sync"]);
      handles.clear();
      await tick();
      assert.deepEqual(closed, ["sync", "async"]);
    });
  });

  test("released ids queue until taken", () => {
    const handles = new Handles();
    handles.released.push(3, 4);
    assert.deepEqual(handles.takeReleased(), [3, 4]);
    assert.deepEqual(handles.takeReleased(), []);
  });

  test("learnClass keeps what a class's first ref announced", () => {
    const handles = new Handles();
    assert.deepEqual(handles.learnClass({ class: 2, methods: ["a", "b"] }), ["a", "b"]);
    assert.deepEqual(handles.learnClass({ class: 2 }), ["a", "b"]);
    assert.equal(handles.learnClass({ class: 3 }), undefined);
    assert.equal(handles.learnClass({}), undefined);
  });
});

// -- the lender's functions ---------------------------------------------------------------------

describe("lenderFunctions", () => {
  class Point {
    constructor(x = 0, y = 0, options = undefined) {
      this.x = x;
      this.y = y;
      this.options = options;
    }
    norm() {
      return Math.hypot(this.x, this.y);
    }
    moved(dx, options = {}) {
      return new Point(this.x + dx, this.y, options);
    }
  }

  test("serves every request of section 10.4, and nothing else", () => {
    assert.deepEqual(Object.keys(lenderFunctions(new Handles())).sort(), [...OBJECT_METHODS].sort());
  });

  test("get, set, call, new", () => {
    const handles = new Handles();
    const serve = lenderFunctions(handles);
    const point = handles.lend(new Point(3, 4)).id;
    const cls = handles.lend(Point).id;
    const fn = handles.lend((/** @type {number} */ a, /** @type {number} */ b) => a - b).id;
    assert.equal(serve["$/get"](point, "x"), 3);
    const norm = /** @type {Function} */ (serve["$/get"](point, "norm"));
    assert.equal(norm(), 5); // bound to its object
    assert.equal(serve["$/set"](point, "x", 6), null);
    assert.equal(serve["$/call"](point, "norm", [], null), Math.hypot(6, 4));
    assert.deepEqual(serve["$/call"](point, "moved", [1], { tag: "k" }), new Point(7, 4, { tag: "k" }));
    assert.deepEqual(serve["$/call"](point, "moved", [1], {}), new Point(7, 4, {})); // empty: not passed
    assert.equal(serve["$/call"](fn, null, [5, 2], null), 3);
    assert.deepEqual(serve["$/call"](cls, null, [1, 2], null), new Point(1, 2)); // a class: new
    assert.deepEqual(serve["$/new"](cls, [1], { a: 1 }), new Point(1, { a: 1 })); // kwargs: one last argument
    assert.throws(() => serve["$/call"](point, "x", [], null), TypeError);
    assert.throws(() => serve["$/call"](point, "norm", "no", null), TypeError);
    assert.throws(() => serve["$/set"](point, "__proto__", {}), TypeError);
    assert.throws(() => serve["$/get"](99, "x"), HandleError);
  });

  test("item, len, repr, value", async () => {
    const handles = new Handles();
    const serve = lenderFunctions(handles);
    const map = handles.lend(new Map([["k", 1]])).id;
    const set = handles.lend(new Set([1, 2, 3])).id;
    const list = handles.lend([5, 6]).id;
    const point = handles.lend(new Point(1, 2)).id;
    const fn = handles.lend(() => {}).id;
    assert.equal(serve["$/item"](map, "k"), 1);
    assert.equal(serve["$/item"](list, 1), 6);
    assert.equal(serve["$/len"](map), 1);
    assert.equal(serve["$/len"](set), 3);
    assert.equal(serve["$/len"](list), 2);
    assert.throws(() => serve["$/len"](point), TypeError);
    assert.equal(await serve["$/repr"](point), inspect(new Point(1, 2)));
    assert.deepEqual(serve["$/value"](point), { x: 1, y: 2 });
    assert.deepEqual(serve["$/value"](list), [5, 6]);
    assert.throws(() => serve["$/value"](map), {
      name: "HandleError",
      message: `handle ${map} (Map) has no JSON value: $: a Map is not JSON`,
    });
    assert.throws(() => serve["$/value"](fn), HandleError);
  });

  test("iter and next: batches of n, done drops the handle", async () => {
    const handles = new Handles();
    const serve = lenderFunctions(handles);
    const list = handles.lend([1, 2, 3, 4, 5]).id;
    const made = serve["$/iter"](list);
    assert.ok(made instanceof Ref);
    const marker = /** @type {any} */ (toTree(made, handles));
    assert.equal(marker.kind, "iterator");
    assert.deepEqual(serve["$/next"](marker.id, 2), { items: [1, 2], done: false });
    assert.deepEqual(serve["$/next"](marker.id, 2), { items: [3, 4], done: false });
    assert.deepEqual(serve["$/next"](marker.id, 2), { items: [5], done: true });
    assert.throws(() => serve["$/next"](marker.id, 2), HandleError);
    assert.throws(() => serve["$/next"](list, 0), TypeError);

    async function* slow() {
      yield "a";
      await sleep(1);
      yield "b";
    }
    const stream = handles.lend(slow()).id;
    assert.deepEqual(await serve["$/next"](stream, 1), { items: ["a"], done: false });
    assert.deepEqual(await serve["$/next"](stream, 5), { items: ["b"], done: true });
    assert.throws(() => handles.take(stream), HandleError);
    const map = handles.lend(new Map([["k", 1]])).id;
    const entries = /** @type {any} */ (toTree(serve["$/iter"](map), handles));
    assert.deepEqual(serve["$/next"](entries.id, 10), { items: [["k", 1]], done: true });
  });
});

// -- the proxy ----------------------------------------------------------------------------------

/** A link that records the requests and answers each with `answer(method, params)`. */
function fakeLink(answer = (/** @type {string} */ _m, /** @type {unknown[]} */ _p) => null) {
  /** @type {[string, unknown[]][]} */
  const asked = [];
  let soon = 0;
  const link = {
    handles: new Handles(),
    asked,
    get soon() {
      return soon;
    },
    request: async (/** @type {string} */ method, /** @type {unknown[]} */ params) => {
      asked.push([method, params]);
      return answer(method, params);
    },
    releaseSoon: () => {
      soon++;
    },
  };
  return link;
}

describe("RemoteObject", () => {
  const marker = (id = 7, kind = "object", type = "DataFrame") => /** @type {any} */ ({ [MARK]: "ref", id, kind, type });

  test("members are one round trip each: call, get, apply, new", async () => {
    const link = fakeLink((method) => method);
    const h = /** @type {any} */ (new RemoteObject(link, marker()));
    assert.ok(h instanceof RemoteObject);
    assert.equal(await h.head(5), "$/call");
    assert.equal(await h.shape, "$/get");
    assert.equal(await h(1, kwargs({ a: 2 })), "$/call");
    assert.equal(await new h(3), "$/new");
    assert.equal(await h.head(kwargs({ n: 1 })), "$/call");
    assert.deepEqual(link.asked, [
      ["$/call", [7, "head", [5], null]],
      ["$/get", [7, "shape"]],
      ["$/call", [7, null, [1], { a: 2 }]],
      ["$/new", [7, [3], null]],
      ["$/call", [7, "head", [], { n: 1 }]],
    ]);
  });

  test("explicit forms, identity, local text; not a promise", async () => {
    const link = fakeLink();
    const h = /** @type {any} */ (new RemoteObject(link, marker(3, "object", "Frame")));
    assert.equal(h.then, undefined);
    assert.equal(await h, h);
    assert.deepEqual([h.$id, h.$kind, h.$type], [3, "object", "Frame"]);
    assert.equal(String(h), "[remote object Frame #3]");
    assert.equal(`${h}`, "[remote object Frame #3]");
    assert.equal(inspect(h), "[remote object Frame #3]");
    await h.$get("a");
    await h.$set("a", 1);
    await h.$item(0);
    await h.$len();
    await h.$repr();
    await value(h);
    assert.deepEqual(link.asked, [
      ["$/get", [3, "a"]],
      ["$/set", [3, "a", 1]],
      ["$/item", [3, 0]],
      ["$/len", [3]],
      ["$/repr", [3]],
      ["$/value", [3]],
    ]);
    assert.throws(() => {
      h.a = 1;
    }, TypeError);
    assert.equal(link.asked.length, 6);
  });

  test("release: queued for $/release once, then refused locally", async () => {
    const link = fakeLink();
    const h = /** @type {any} */ (new RemoteObject(link, marker(4)));
    release(h);
    release(h);
    assert.deepEqual(link.handles.takeReleased(), [4]);
    assert.equal(link.soon, 1);
    assert.equal(String(h), "[remote object DataFrame #4 (released)]");
    await assert.rejects(h.head(), { name: "HandleError", message: "handle 4 (DataFrame) was released" });
    await assert.rejects(value(h), HandleError);
    assert.throws(() => toTree([h], link.handles), HandleError);
    assert.equal(link.asked.length, 0);
    assert.throws(() => release({}), TypeError);
    const disposed = /** @type {any} */ (new RemoteObject(link, marker(5)));
    await disposed[Symbol.asyncDispose]();
    assert.deepEqual(link.handles.takeReleased(), [5]);
  });

  test("a proxy goes back as yours on its own connection, and is lent on to another", () => {
    const link = fakeLink();
    const h = new RemoteObject(link, marker(8, "function", "cb"));
    assert.deepEqual(toTree({ f: h }, link.handles), { f: { [MARK]: "yours", id: 8 } });
    const other = new Handles();
    assert.deepEqual(toTree(h, other), { [MARK]: "ref", id: 1, kind: "function", type: "cb" });
  });

  test("for await pulls $/iter then $/next with doubling credit; break releases", async () => {
    let served = 0;
    const link = fakeLink((method, params) => {
      if (method === "$/iter") return new RemoteObject(link, marker(20, "iterator", "Generator"));
      const n = /** @type {number} */ (params[1]);
      const items = Array.from({ length: n }, () => served++);
      return { items, done: false };
    });
    const h = new RemoteObject(link, marker(9, "object", "Frame"));
    let seen = 0;
    for await (const item of /** @type {any} */ (h)) {
      assert.equal(item, seen++);
      if (seen === FIRST_CREDIT + 2 * FIRST_CREDIT + 1) break;
    }
    assert.deepEqual(
      link.asked.map(([method, params]) => [method, params]),
      [
        ["$/iter", [9]],
        ["$/next", [20, FIRST_CREDIT]],
        ["$/next", [20, 2 * FIRST_CREDIT]],
        ["$/next", [20, 4 * FIRST_CREDIT]],
      ],
    );
    assert.deepEqual(link.handles.takeReleased(), [20]); // the iterator, not the frame
  });

  test("an iterator handle is pulled directly; done needs no release", async () => {
    let round = 0;
    const link = fakeLink((_method, params) => {
      round++;
      return round < 8 ? { items: [params[1]], done: false } : { items: [], done: true };
    });
    const h = new RemoteObject(link, marker(2, "iterator", "Generator"));
    const got = [];
    for await (const item of /** @type {any} */ (h)) got.push(item);
    assert.deepEqual(got, [64, 128, 256, 512, 1024, 2048, 4096]);
    assert.equal(Math.max(.../** @type {number[]} */ (got)), MAX_CREDIT);
    assert.deepEqual(link.handles.takeReleased(), []);
    await assert.rejects(/** @type {any} */ (h).next(), HandleError); // exhausted: the lender let go
  });
});

// -- two peers ----------------------------------------------------------------------------------

/**
 * Runs `body` with two started peers on a memory pair, closed afterwards.
 * @param {(a: Peer, b: Peer) => Promise<void>} body
 */
async function withPair(body) {
  const [left, right] = memoryPair();
  const a = await new Peer(left).start();
  const b = await new Peer(right).start();
  try {
    await body(a, b);
  } finally {
    await a.close();
    await b.close();
  }
}

/** Waits until `predicate()` holds or `ms` have passed; returns its last result. */
async function until(/** @type {() => boolean} */ predicate, /** @type {number} */ ms) {
  const deadline = Date.now() + ms;
  while (!predicate() && Date.now() < deadline) {
    await sleep(5);
  }
  return predicate();
}

class Account {
  constructor(balance = 0) {
    this.balance = balance;
  }
  deposit(amount) {
    this.balance += amount;
    return this.balance;
  }
  async statement(format = "short") {
    return `${format}: ${this.balance}`;
  }
}

describe("Peer to Peer", () => {
  test("a malformed tree in params is answered INVALID_PARAMS naming its path", async () => {
    const [raw, right] = memoryPair();
    const b = await new Peer(right).start();
    try {
      b.expose((/** @type {unknown} */ x) => x, { name: "same" });
      const params = { [MARK]: "tree", value: [{ [MARK]: "bytes", base64: "AAE" }] };
      await raw.send({ jsonrpc: "2.0", method: "same", params, id: 1 });
      assert.deepEqual(await raw.receive(), {
        jsonrpc: "2.0",
        error: { code: INVALID_PARAMS, message: "Invalid params: $[0].base64: invalid base64" },
        id: 1,
      });
      await raw.send({ jsonrpc: "2.0", method: "same", params: { [MARK]: "tree", value: [{ [MARK]: "yours", id: 5 }] }, id: 2 });
      assert.deepEqual(await raw.receive(), {
        jsonrpc: "2.0",
        error: { code: INVALID_PARAMS, message: "Invalid params: handle 5 is not held here (released, or never lent)" },
        id: 2,
      });
      await raw.send({ jsonrpc: "2.0", method: "same", params: [{ [MARK]: "tree", value: 1 }], id: 3 });
      assert.deepEqual(await raw.receive(), { jsonrpc: "2.0", result: { [MARK]: "tree", value: { [MARK]: "object", value: { [MARK]: "tree", value: 1 } } }, id: 3 });
    } finally {
      await raw.close();
      await b.close();
    }
  });

  test("a class instance is returned as a handle and its methods called", () =>
    withPair(async (a, b) => {
      b.expose((/** @type {number} */ n) => new Account(n), { name: "open" });
      b.expose(() => Account, { name: "accountClass" });
      const account = await a.call("open", 10);
      assert.ok(account instanceof RemoteObject);
      assert.equal(account.$type, "Account");
      assert.deepEqual(account.$methods, ["deposit", "statement"]);
      assert.equal(await account.deposit(5), 15);
      assert.equal(await account.balance, 15);
      assert.equal(await account.statement(kwargs({ long: true })), "[object Object]: 15");
      assert.deepEqual(await value(account), { balance: 15 });
      const Cls = await a.call("accountClass");
      const made = await new Cls(3);
      assert.equal(await made.deposit(1), 4);
      // the handle goes back as the object itself
      b.expose((/** @type {unknown} */ x) => x instanceof Account && x.balance, { name: "balanceOf" });
      assert.equal(await a.call("balanceOf", account), 15);
      await assert.rejects(account.nope(), (error) => error instanceof RemoteError && /nope/.test(error.message));
    }));

  test("a callback is called 1,000 times after the call returned", () =>
    withPair(async (a, b) => {
      b.expose(
        (/** @type {any} */ callback) => {
          (async () => {
            for (let i = 0; i < 1000; i++) {
              await callback(i);
            }
            await callback.done();
            release(callback);
          })();
          return "started";
        },
        { name: "subscribe" },
      );
      const got = [];
      let finished;
      const done = new Promise((resolve) => (finished = resolve));
      const callback = Object.assign((/** @type {number} */ i) => got.push(i), { done: () => finished() });
      assert.equal(await a.call("subscribe", callback), "started");
      await done;
      assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => i));
      assert.ok(await until(() => a.handles.size === 0, 5 * S), "the callback was released");
    }));

  test("a generator of 100,000 items streams; a break runs its finally", () =>
    withPair(async (a, b) => {
      const closed = [];
      b.expose(
        function* (/** @type {number} */ n) {
          try {
            for (let i = 0; i < n; i++) yield i;
          } finally {
            closed.push(n);
          }
        },
        { name: "count" },
      );
      let sum = 0;
      let count = 0;
      for await (const i of await a.call("count", 100_000)) {
        sum += i;
        count++;
      }
      assert.equal(count, 100_000);
      assert.equal(sum, (100_000 * 99_999) / 2);
      assert.deepEqual(closed, [100_000]);
      assert.equal(b.handles.size, 0);

      for await (const i of await a.call("count", 100_000)) {
        if (i === 1000) break;
      }
      assert.ok(await until(() => closed.length === 2, 5 * S), "the generator was closed");
      assert.equal(b.handles.size, 0);
    }));

  test("async iterables stream too ($/iter on an object)", () =>
    withPair(async (a, b) => {
      class Feed {
        async *[Symbol.asyncIterator]() {
          yield "x";
          await sleep(1);
          yield "y";
        }
      }
      b.expose(() => new Feed(), { name: "feed" });
      b.expose(() => new Map([["a", 1], ["b", 2]]), { name: "table" });
      const got = [];
      for await (const item of await a.call("feed")) got.push(item);
      assert.deepEqual(got, ["x", "y"]);
      const table = await a.call("table");
      assert.equal(await table.get("b"), 2);
      assert.equal(await table.$item("a"), 1);
      assert.equal(await table.$len(), 2);
      const entries = [];
      for await (const entry of table) entries.push(entry);
      assert.deepEqual(entries, [["a", 1], ["b", 2]]);
    }));

  test("bytes and a Float64Array cross both ways equal", () =>
    withPair(async (a, b) => {
      b.expose((/** @type {any} */ bytes, /** @type {any} */ floats, /** @type {any} */ grid) => {
        assert.ok(Buffer.isBuffer(bytes));
        assert.ok(floats instanceof Float64Array);
        assert.ok(grid instanceof NDArray);
        return { bytes, floats, grid, reversed: Buffer.from(bytes).reverse() };
      }, { name: "echo" });
      const bytes = new Uint8Array(1000).map((_, i) => i % 256);
      const floats = Float64Array.from({ length: 1000 }, (_, i) => i / 7);
      const grid = new NDArray("int32", [2, 3], new Int32Array([1, 2, 3, 4, 5, 6]));
      const back = await a.call("echo", bytes, floats, grid);
      assert.deepEqual(new Uint8Array(back.bytes), bytes);
      assert.deepEqual(back.floats, floats);
      assert.deepEqual(back.grid, grid);
      assert.deepEqual(new Uint8Array(back.reversed), bytes.slice().reverse());
    }));

  test("100,000 handles are made and let go of: the lender's table stays bounded", { timeout: 120 * S }, () =>
    withPair(async (a, b) => {
      class Item {
        constructor(i) {
          this.i = i;
        }
      }
      b.expose((/** @type {number} */ start, /** @type {number} */ n) => Array.from({ length: n }, (_, k) => new Item(start + k)), {
        name: "items",
      });
      const gc = collector();
      let most = 0;
      const batch = async (/** @type {number} */ start) => {
        const items = await a.call("items", start, 1000);
        assert.equal(items.length, 1000);
        if (gc === null) {
          for (const item of items) release(item);
        }
      };
      for (let start = 0; start < 100_000; start += 1000) {
        await batch(start);
        most = Math.max(most, b.handles.size);
        if (gc !== null && start % 10_000 === 0) {
          gc();
          await tick();
        }
      }
      const settled = async () => {
        for (let round = 0; round < 50 && b.handles.size > 0; round++) {
          gc?.();
          await sleep(10);
        }
      };
      await settled();
      assert.ok(most <= 30_000, `at most ${most} handles held at once`);
      assert.equal(b.handles.size, 0);
    }));

  test("requests on handles that are not held, malformed trees, and the end of the connection", () =>
    withPair(async (a, b) => {
      await assert.rejects(
        a.request("$/get", [12345, "x"]),
        (error) =>
          error instanceof RemoteError &&
          error.rpcCode === HANDLE_NOT_HELD &&
          error.remoteType === "HandleError" &&
          error.reason === "handle 12345 is not held here (released, or never lent)",
      );
      b.expose((/** @type {unknown} */ x) => x, { name: "same" });
      const bad = { [MARK]: "tree", value: [{ [MARK]: "bytes", base64: "AAE" }] };
      // sent by a Peer, an object that looks like a tree is escaped: it arrives as it was
      assert.deepEqual(await a.callWith("same", /** @type {any} */ (bad)), bad);
      const closed = [];
      b.expose(
        function* () {
          try {
            yield 1;
            yield 2;
          } finally {
            closed.push(true);
          }
        },
        { name: "gen" },
      );
      const gen = await a.call("gen");
      assert.equal(gen.$kind, "iterator");
      assert.equal(b.handles.size, 1);
      await a.close();
      await b.close();
      assert.equal(b.handles.size, 0);
      assert.equal(a.handles.size, 0);
      await assert.rejects(gen.next(), Error);
    }));

  test("$/release is sent once, batched, for many proxies", () =>
    withPair(async (a, b) => {
      b.expose(() => [() => 1, () => 2, () => 3], { name: "fns" });
      /** @type {unknown[]} */
      const notes = [];
      const released = b.handles.drop.bind(b.handles);
      b.handles.drop = (ids) => {
        notes.push([...ids]);
        released(ids);
      };
      const fns = await a.call("fns");
      assert.equal(await fns[0](), 1);
      for (const fn of fns) release(fn);
      assert.ok(await until(() => b.handles.size === 0, 5 * S));
      assert.deepEqual(notes, [[1, 2, 3]]);
      assert.equal(RELEASE_METHOD, "$/release");
    }));
});

// -- host.mjs -----------------------------------------------------------------------------------

describe("host.mjs", () => {
  test("serves exported classes: calling the name makes an instance (a handle)", { timeout: 30 * S }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "bothways-objects-"));
    const module = join(dir, "shapes.mjs");
    writeFileSync(
      module,
      [
        "export class Counter { constructor(n = 0) { this.n = n } inc(by = 1) { return (this.n += by) } }",
        "export async function each(items, callback) { const out = []; for (const x of items) out.push(await callback(x)); return out }",
        "export function* upTo(n) { for (let i = 0; i < n; i++) yield i }",
        "",
      ].join("\n"),
    );
    const child = spawn([process.execPath, HOST, module], { stderr: "keep", channelFd: true });
    const peer = await new Peer(child).start();
    try {
      assert.deepEqual(await peer.call("$/functions"), ["Counter", "each", "upTo"]);
      const counter = await peer.call("Counter", 5);
      assert.equal(counter.$type, "Counter");
      assert.equal(await counter.inc(2), 7);
      assert.equal(await counter.n, 7);
      assert.deepEqual(await peer.call("each", [1, 2], (/** @type {number} */ x) => x * 10), [10, 20]);
      const got = [];
      for await (const i of await peer.call("upTo", 3)) got.push(i);
      assert.deepEqual(got, [0, 1, 2]);
    } finally {
      await peer.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// -- binary frames (spec/PROTOCOL.md sections 2 and 10.2) --------------------------------------

/**
 * Records what `channel` writes (every `sendBytes` and `sendNow`-style write), as bytes.
 * @param {any} channel
 * @returns {Buffer[]}
 */
function spyWrites(channel) {
  /** @type {Buffer[]} */
  const writes = [];
  const record = (/** @type {string | Uint8Array} */ data) =>
    writes.push(typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.length));
  for (const key of [...Object.getOwnPropertySymbols(Object.getPrototypeOf(channel)), "sendBytes"]) {
    const original = channel[key];
    if (typeof original !== "function" || (typeof key === "symbol" && key.description !== "bothways.sendNow")) continue;
    channel[key] = (/** @type {string | Uint8Array} */ data) => {
      record(data);
      return original.call(channel, data);
    };
  }
  return writes;
}

/**
 * @param {number} size
 * @returns {Buffer} bytes of every value (no run of them spells "base64").
 */
function pattern(size) {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 7 + (i >> 10)) & 0xff;
  return out;
}

/**
 * Two stream channels over a real socket (a StdioChannel on each end, as a spawned module and
 * its parent have), taking binary frames.
 * @returns {Promise<{channels: [StdioChannel, StdioChannel], sockets: net.Socket[]}>} destroy
 *   the sockets at the end.
 */
async function socketPair() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const accepted = once(server, "connection");
  const client = net.connect(/** @type {net.AddressInfo} */ (server.address()).port, "127.0.0.1");
  const [socket] = await accepted;
  server.close();
  const options = { binary: true };
  return {
    channels: [
      new StdioChannel({ ...options, stdin: client, stdout: client }),
      new StdioChannel({ ...options, stdin: socket, stdout: socket }),
    ],
    sockets: [client, socket],
  };
}

describe("binary frames", () => {
  test("toTree and outgoing with blobs: bytes and arrays are frames (views), numbered in order", () => {
    const bytes = Buffer.from("abc");
    const floats = new Float64Array([1.5, -2]);
    const grid = new NDArray("int16", [2, 1], new Int16Array([3, 4]));
    /** @type {Uint8Array[]} */
    const blobs = [];
    const handles = new Handles();
    assert.deepEqual(toTree([bytes, { f: floats }, grid, new ArrayBuffer(2)], handles, blobs), [
      { [MARK]: "bytes", blob: 0 },
      { f: { [MARK]: "array", dtype: "float64", shape: [2], blob: 1 } },
      { [MARK]: "array", dtype: "int16", shape: [2, 1], blob: 2 },
      { [MARK]: "bytes", blob: 3 },
    ]);
    assert.equal(blobs.length, 4);
    assert.equal(blobs[0].buffer, bytes.buffer); // a view, not a copy
    assert.equal(blobs[1].buffer, floats.buffer);
    assert.deepEqual([...blobs[3]], [0, 0]);
    const more = [];
    assert.deepEqual(outgoing({ b: bytes }, handles, more), { [MARK]: "tree", value: { b: { [MARK]: "bytes", blob: 0 } } });
    assert.equal(outgoing([1, "plain"], handles, more).length, 2); // plain JSON: no tree, no frame
    assert.equal(more.length, 1);
    // without blobs: base64, as before
    assert.deepEqual(toTree(bytes, handles), { [MARK]: "bytes", base64: "YWJj" });
  });

  test("a frame that does not fill the array's shape is a HandleError naming its blob", () => {
    const tree = { [MARK]: "tree", value: [{ [MARK]: "array", dtype: "float64", shape: [2], blob: 0 }] };
    const { borrow } = recorder();
    assert.throws(() => incoming(tree, new Handles(), borrow, [new Uint8Array(15)]), {
      message: "$[0].blob: 15 bytes do not fill shape [2] of float64 (16 bytes)",
    });
    assert.throws(() => incoming(tree, new Handles(), borrow), {
      message: "$[0].blob: no binary frame 0 came with the message (it brought 0)",
    });
  });

  test("10 MB of bytes and a Float64Array both ways over a socket in frames, no base64", { timeout: 60 * S }, async () => {
    const { channels, sockets } = await socketPair();
    const [client, conn] = channels;
    const clientWrites = spyWrites(client);
    const serverWrites = spyWrites(conn);
    const a = await new Peer(client).start();
    const b = await new Peer(conn).start();
    a.binary = true;
    b.binary = true;
    try {
      b.expose((/** @type {Buffer} */ data, /** @type {Float64Array} */ floats) => {
        assert.ok(Buffer.isBuffer(data) && floats instanceof Float64Array);
        return { data, floats, sum: floats.reduce((x, y) => x + y, 0), size: data.length };
      }, { name: "echo" });
      const data = pattern(10_000_000);
      const floats = Float64Array.from({ length: 100_000 }, (_, i) => i / 4);
      const plain = await a.call("echo", Buffer.from("x"), new Float64Array(1)); // frames, small ones
      assert.equal(plain.size, 1);
      const result = await a.call("echo", data, floats);
      assert.equal(result.size, data.length);
      assert.equal(result.sum, floats.reduce((x, y) => x + y, 0));
      assert.ok(Buffer.isBuffer(result.data) && result.data.equals(data));
      assert.ok(result.floats instanceof Float64Array);
      assert.deepEqual(result.floats, floats);
      for (const [side, writes] of [["client", clientWrites], ["server", serverWrites]]) {
        const written = Buffer.concat(writes);
        assert.equal(written.indexOf("base64"), -1, `${side} wrote base64`);
        assert.ok(written.indexOf("#blob 10000000\n") >= 0, `${side} wrote no 10 MB frame`);
        assert.ok(written.indexOf("#blob 800000\n") >= 0, `${side} wrote no frame of the floats`);
        assert.ok(written.length < 10_000_000 + 800_000 + 2000, `${side} wrote ${written.length} bytes`);
        // each frame right before its message's line, in the same write as the line
        const big = writes.find((w) => w.indexOf("#blob 10000000\n") >= 0);
        assert.ok(big !== undefined && big.subarray(-1)[0] === 0x0a);
        assert.match(big.subarray(big.lastIndexOf("#blob 800000\n") + 13 + 800_000).toString(), /^\{.*"blob":1.*\}\n$/);
      }
      // sent while a write is under way: what the values held when they were sent
      const first = pattern(1_000_000);
      const second = pattern(1_000_000);
      const expected = Buffer.from(second);
      const answers = [a.call("echo", first, new Float64Array(1)), a.call("echo", second, new Float64Array(1))];
      second.fill(0);
      const [one, two] = await Promise.all(answers);
      assert.ok(one.data.equals(first) && two.data.equals(expected));
      // the flag off: base64 again
      a.binary = false;
      clientWrites.length = 0;
      await a.call("echo", Buffer.from("hello"), new Float64Array(1));
      assert.ok(Buffer.concat(clientWrites).indexOf("base64") >= 0);
    } finally {
      await a.close();
      await b.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  test("the answers of a batch share the frames before it, numbered on", { timeout: 30 * S }, async () => {
    const { channels, sockets } = await socketPair();
    const [raw, conn] = channels;
    const peer = await new Peer(conn).start();
    peer.binary = true;
    try {
      peer.expose((/** @type {number} */ n) => [Buffer.alloc(n, n), new Int32Array([n])], { name: "fill" });
      peer.expose((/** @type {unknown} */ _n) => "plain", { name: "plain" });
      await raw.send([1, "plain", 3].map((n, id) => ({ jsonrpc: "2.0", method: n === "plain" ? n : "fill", params: [n], id })));
      /** @type {Uint8Array[]} */
      const frames = [];
      let answers = await raw.receive();
      while (answers instanceof Binary) {
        frames.push(answers.data);
        answers = await raw.receive();
      }
      assert.deepEqual(frames.map((frame) => frame.length), [1, 4, 3, 4]);
      const { borrow } = recorder();
      const results = answers.map((/** @type {any} */ answer) => incoming(answer.result, new Handles(), borrow, frames));
      assert.deepEqual(results, [[Buffer.alloc(1, 1), new Int32Array([1])], "plain", [Buffer.alloc(3, 3), new Int32Array([3])]]);
    } finally {
      await peer.close();
      await raw.close();
      for (const socket of sockets) socket.destroy();
    }
  });

  test("a message channel carries no frames: binary changes nothing there", async () => {
    const [left, right] = memoryPair();
    const a = await new Peer(left).start();
    const b = await new Peer(right).start();
    a.binary = b.binary = true;
    try {
      b.expose((/** @type {Uint8Array} */ x) => x, { name: "same" });
      const back = await a.call("same", Buffer.from([1, 2, 3]));
      assert.deepEqual([...back], [1, 2, 3]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("host.mjs says it reads frames, and sends them only to a parent that said so too", { timeout: 30 * S }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "bothways-frames-"));
    const module = join(dir, "frames.mjs");
    writeFileSync(module, "export function twice(b) { return [b, new Float32Array([1.5, 2.5])] }\n");
    /** @param {Record<string, unknown>} ours the parent's hello */
    const session = async (ours) => {
      const child = spawn([process.execPath, HOST, module], { stderr: "keep", channelFd: true, binary: true });
      /** @type {unknown[]} */
      const seen = [];
      const deliverTo = child.deliverTo.bind(child);
      child.deliverTo = (onMessages, onEnd) =>
        deliverTo((values) => {
          seen.push(...values);
          onMessages(values);
        }, onEnd);
      const peer = await new Peer(child).start();
      try {
        const answer = await peer.callWith(HELLO_METHOD, ours);
        assert.deepEqual(Object.keys(answer), ["protocol", "version", "language", "binary", "functions"]);
        assert.equal(answer.binary, true);
        assert.equal(seen.length, 1); // the answer alone, no frame before it
        peer.binary = speaksBinary(ours) && speaksBinary(answer);
        const [bytes, floats] = await peer.call("twice", Buffer.from("payload"));
        assert.equal(bytes.toString(), "payload");
        assert.deepEqual(floats, new Float32Array([1.5, 2.5]));
        return seen.filter((value) => value instanceof Binary).length;
      } finally {
        await peer.close();
      }
    };
    try {
      assert.equal(await session(hello("0.1.0", "javascript")), 2);
      assert.equal(await session({ protocol: 1, version: "0.1.0", language: "javascript" }), 0);
      assert.equal(await session({ ...hello("0.1.0", "javascript"), binary: false }), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
