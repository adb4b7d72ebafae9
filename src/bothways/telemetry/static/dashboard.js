/**
 * The telemetry dashboard: a uPlot chart per sensor, the per-sensor table, the connection state
 * and a time range (served by bothways.telemetry.web).
 *
 * How the page stays whole: it connects to the live feed first (the URL comes from
 * /api/config), then loads the chosen range from /api/readings, so nothing stored in between is
 * missed; readings are kept once per (sensor, seq), so what arrives both ways counts once. When
 * the connection is lost (the server stopped), the state says "reconnecting…" and the page tries
 * again, asking /api/config each time (a restarted server's feed has a new port); once back, it
 * loads the range again to fill the gap.
 *
 * Plain ES module, no build step; uPlot is the global that uPlot.iife.min.js defines.
 */

import { connect } from "/bothways/browser.js";

const PAGE = 10_000; // readings per /api/readings request (the API's maximum)
const MAX_POINTS = 100_000; // readings loaded for one range at most
const REDRAW_MS = 1000; // charts are redrawn this often with no new reading (the axis moves on)
const TABLE_MS = 1000; // the table is refreshed at most this often while readings arrive
const RETRY_MS = [250, 500, 1000, 2000]; // waits between reconnection attempts
const FETCH_TIMEOUT_MS = 5000;
const HEIGHT = 220;
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"];

const stateEl = /** @type {HTMLElement} */ (document.getElementById("state"));
const rangeEl = /** @type {HTMLSelectElement} */ (document.getElementById("range"));
const noticeEl = /** @type {HTMLElement} */ (document.getElementById("notice"));
const chartsEl = /** @type {HTMLElement} */ (document.getElementById("charts"));
const emptyEl = /** @type {HTMLElement} */ (document.getElementById("empty"));
const tableBody = /** @type {HTMLElement} */ (document.querySelector("#sensors tbody"));

/** @type {any} uPlot's constructor, when its script loaded */
const UPlot = /** @type {any} */ (globalThis).uPlot;

let range = Number(rangeEl.value); // seconds shown, up to now
let tableWanted = true; // new readings came since the table was last refreshed
/** @type {AbortController | null} the range load under way */
let loading = null;

const now = () => Date.now() / 1000;

/**
 * The first index of sorted `values` whose value is greater than `x` (`orEqual`: not smaller).
 * @param {number[]} values
 * @param {number} x
 * @param {boolean} orEqual
 */
function bound(values, x, orEqual) {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (values[mid] < x || (!orEqual && values[mid] === x)) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * A sensor's colour: the same on every page load (FNV-1a of its name picks it).
 * @param {string} name
 */
function colour(name) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(name)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return COLOURS[hash % COLOURS.length];
}

/** One sensor's readings in the range, in time order, and its chart. */
class Series {
  /** @param {string} name */
  constructor(name) {
    this.name = name;
    /** @type {number[]} */ this.t = [];
    /** @type {number[]} */ this.c = [];
    /** @type {number[]} */ this.seq = [];
    this.seqs = new Set();
    this.dirty = true;
    this.drawn = 0; // points at the last redraw
    this.figure = document.createElement("figure");
    this.figure.dataset.sensor = name;
    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.textContent = name;
    this.value = document.createElement("span");
    this.value.className = "value";
    caption.append(title, this.value);
    const box = document.createElement("div");
    this.figure.append(caption, box);
    const after = [...chartsEl.children].find((el) => /** @type {HTMLElement} */ (el).dataset.sensor > name);
    chartsEl.insertBefore(this.figure, after ?? null);
    this.plot = null;
    if (UPlot) {
      this.plot = new UPlot(
        {
          width: Math.max(box.clientWidth, 200),
          height: HEIGHT,
          scales: { x: { time: true, range: () => [now() - range, now()] } },
          series: [{}, { label: "°C", stroke: colour(name), width: 1.5 }],
          axes: [{}, { size: 50 }],
        },
        [[], []],
        box,
      );
    }
  }

  /**
   * Adds a reading unless it is there already.
   * @param {{seq: number, t: number, celsius: number}} reading
   */
  add({ seq, t, celsius }) {
    if (this.seqs.has(seq) || typeof t !== "number" || typeof celsius !== "number") return;
    this.seqs.add(seq);
    const end = this.t.length;
    const at = end > 0 && this.t[end - 1] > t ? bound(this.t, t, false) : end;
    this.t.splice(at, 0, t);
    this.c.splice(at, 0, celsius);
    this.seq.splice(at, 0, seq);
    this.dirty = true;
  }

  /** Drops everything (a new range is loading). */
  clear() {
    this.t = [];
    this.c = [];
    this.seq = [];
    this.seqs.clear();
    this.dirty = true;
  }

  /** Drops the readings older than the range, then redraws. */
  draw() {
    const cut = bound(this.t, now() - range, true);
    if (cut > 0) {
      for (const seq of this.seq.splice(0, cut)) this.seqs.delete(seq);
      this.t.splice(0, cut);
      this.c.splice(0, cut);
      this.dirty = true;
    }
    const last = this.c.length > 0 ? this.c[this.c.length - 1] : null;
    this.value.textContent = last === null ? "" : `${last.toFixed(1)} °C`;
    this.figure.dataset.points = String(this.t.length);
    this.figure.hidden = this.t.length === 0; // a sensor silent in this range: its row is enough
    // Redrawn even when no reading came: the time axis moves on.
    this.plot?.setData([this.t, this.c]);
    this.drawn = this.t.length;
    this.dirty = false;
  }

  /** @returns {number} the points the chart has drawn (at its last redraw). */
  get points() {
    return this.drawn ?? 0;
  }
}

/** @type {Map<string, Series>} */
const series = new Map();

let redrawing = false; // a redraw is planned for the next frame

/** @param {unknown} message a reading from the feed or the API */
function take(message) {
  if (Array.isArray(message)) {
    message.forEach(take);
    return;
  }
  const reading = /** @type {any} */ (message);
  if (reading === null || typeof reading !== "object" || typeof reading.sensor !== "string") return;
  let one = series.get(reading.sensor);
  if (one === undefined) {
    one = new Series(reading.sensor);
    series.set(reading.sensor, one);
  }
  one.add(reading);
  tableWanted = true;
  if (!redrawing) {
    redrawing = true; // new readings are drawn at the next frame, all of them at once
    requestAnimationFrame(() => {
      redrawing = false;
      redraw();
    });
  }
}


function redraw() {
  let points = 0;
  for (const one of series.values()) {
    one.draw();
    points += one.t.length;
  }
  emptyEl.hidden = points > 0;
}

/**
 * @param {string} kind connecting, connected, reconnecting or offline.
 * @param {string} text
 * @param {string} [why] shown as the element's tooltip.
 */
function setState(kind, text, why = "") {
  stateEl.dataset.state = kind;
  stateEl.textContent = text;
  stateEl.title = why;
}

const NO_UPLOT = UPlot ? "" : "The charts need uPlot, which this server does not have (in a checkout: cd js && npm ci).";

/** @param {string} text shown above the table, after the uPlot warning if there is one */
function notice(text) {
  noticeEl.textContent = [NO_UPLOT, text].filter(Boolean).join(" ");
  noticeEl.hidden = noticeEl.textContent === "";
}

/**
 * GETs JSON; rejects on a network error, an HTTP error or after FETCH_TIMEOUT_MS.
 * @param {string} url
 * @param {AbortSignal} [signal]
 */
async function getJson(url, signal) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer from ${url}`)), FETCH_TIMEOUT_MS);
  const stop = () => controller.abort(signal?.reason);
  signal?.addEventListener("abort", stop, { once: true });
  try {
    const response = await fetch(url, { signal: controller.signal, headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}: ${body?.error?.message ?? ""}`);
    return body;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", stop);
  }
}

/**
 * Loads the range from /api/readings, page by page (a load for an older range is abandoned).
 * @returns {Promise<void>} rejects when the server cannot be reached.
 */
async function load() {
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  const params = new URLSearchParams({ since: String(now() - range), limit: String(PAGE) });
  let loaded = 0;
  let next = null;
  try {
    do {
      if (next !== null) params.set("cursor", String(next));
      const page = await getJson(`/api/readings?${params}`, controller.signal);
      page.readings.forEach(take);
      loaded += page.readings.length;
      next = page.next;
    } while (next !== null && loaded < MAX_POINTS);
  } catch (error) {
    if (controller.signal.aborted) return; // a newer load took over
    throw error;
  } finally {
    if (loading === controller) loading = null;
  }
  notice(next === null ? "" : `Showing the first ${loaded} readings of this range only.`);
  redraw();
  tableWanted = true;
}

async function refreshTable() {
  const { sensors } = await getJson("/api/sensors");
  const rows = sensors.map((/** @type {any} */ s) => {
    const row = document.createElement("tr");
    row.dataset.sensor = s.sensor;
    const seen = new Date(s.last_seen * 1000);
    const cells = [
      s.sensor,
      String(s.count),
      s.last.toFixed(1),
      s.min.toFixed(1),
      s.mean.toFixed(1),
      s.max.toFixed(1),
      seen.toLocaleTimeString(),
    ];
    for (const [i, text] of cells.entries()) {
      const cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) cell.scope = "row";
      cell.className = ["sensor", "count", "last", "min", "mean", "max", "seen"][i];
      cell.textContent = text;
      if (i === 6) cell.title = seen.toString();
      row.append(cell);
    }
    return row;
  });
  tableBody.replaceChildren(...rows);
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follows the live feed for as long as the page is open, reconnecting whenever it is lost. */
async function follow() {
  let loaded = false;
  for (let attempt = 0; ; attempt++) {
    let channel = null;
    let why = "";
    try {
      const config = await getJson("/api/config");
      if (!config.feed) {
        setState("offline", "no live feed", "this server runs without one: reload the page for news");
        await load();
        return;
      }
      channel = await connect(config.feed, { timeout: FETCH_TIMEOUT_MS });
      attempt = 0;
      setState("connected", "connected", config.feed);
      await load(); // what was stored before (or while we were away); the feed brings the rest
      loaded = true;
      for await (const message of channel) take(message);
      why = "the server closed the live feed";
    } catch (error) {
      why = error instanceof Error ? error.message : String(error);
    } finally {
      channel?.close().catch(() => {}); // nothing was sent: nothing to confirm
    }
    setState("reconnecting", "reconnecting…", why);
    if (!loaded) {
      loaded = true; // a page opened while the feed is away still shows what is stored
      load().catch(() => {});
    }
    await sleep(RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
  }
}

rangeEl.addEventListener("change", () => {
  range = Number(rangeEl.value);
  for (const one of series.values()) one.clear();
  redraw();
  load().catch((error) => notice(`Could not load the range: ${error.message}`));
});

window.addEventListener("resize", () => {
  for (const one of series.values()) {
    const box = /** @type {HTMLElement} */ (one.figure.lastElementChild);
    one.plot?.setSize({ width: Math.max(box.clientWidth, 200), height: HEIGHT });
  }
});

setInterval(redraw, REDRAW_MS);
setInterval(() => {
  if (!tableWanted) return;
  tableWanted = false;
  refreshTable().catch(() => {
    tableWanted = true; // try again at the next tick
  });
}, TABLE_MS);

notice("");

/** For tests and the curious: what the page holds. */
globalThis.dashboard = {
  /** @returns {Record<string, number>} points per sensor, as the charts hold them */
  points: () => Object.fromEntries([...series].map(([name, one]) => [name, one.points])),
  state: () => stateEl.dataset.state,
};

follow();
