// bench/telemetry.py's probe in the dashboard: installed before the page's own scripts (with
// Playwright's add_init_script), it only watches, and changes nothing the page does.
//
// - Arrived: every WebSocket the page opens gets one more "message" listener, added in its
//   constructor and so run before the page's own handler: it notes when each frame came.
// - Drawn: the global uPlot (uPlot.iife.min.js assigns it; a setter here catches it) is wrapped
//   so that each chart gets one more `draw` hook. When the watched sensor's chart draws, it holds
//   `u.data[0].length` points; the next animation frame's callback stamps the points that are
//   new (that frame's paint shows them). `window.dashboard.points()` cannot tell: the page hands
//   uPlot its own arrays, which grow as readings arrive, before any draw.
// The n-th point of a sensor is its n-th reading in time order, which is the order the feed sends
// them. Times are epoch milliseconds (performance.timeOrigin + performance.now()).
(() => {
  const clock = () => performance.timeOrigin + performance.now();
  const arrivals = []; // [when, the frame's text]
  const drawn = []; // drawn[n]: when the watched sensor's point n was first on screen
  let watched = null;
  let onChart = 0; // the watched sensor's points in its chart's last draw

  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (watched !== null) arrivals.push([clock(), event.data]);
      });
    }
  };

  const drew = (u) => {
    if (watched !== null && u.root.closest("figure")?.dataset.sensor === watched) {
      onChart = Math.max(onChart, u.data[0].length);
    }
  };
  let Real;
  function Probed(opts, data, target) {
    const hooks = { ...(opts.hooks ?? {}) };
    hooks.draw = [...(hooks.draw ?? []), drew];
    return new Real({ ...opts, hooks }, data, target);
  }
  Object.defineProperty(window, "uPlot", {
    configurable: true,
    get: () => (Real ? Probed : undefined),
    set(value) {
      Real = value;
      Object.setPrototypeOf(Probed, value); // its static helpers
      Probed.prototype = value.prototype;
    },
  });

  const frame = () => {
    const now = clock();
    while (drawn.length < onChart) drawn.push(now);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);

  window.probe = {
    clock,
    /** @param {string} sensor the sensor whose readings are timed from now on */
    watch(sensor) {
      watched = sensor;
    },
    drawn: () => drawn.length,
    charting: () => Real !== undefined,
    /** @returns {{readings: number[][], drawn: number[]}} [t, arrived] per reading, in order */
    result() {
      const readings = [];
      for (const [at, text] of arrivals) {
        for (const line of String(text).split("\n")) {
          if (!line.trim()) continue;
          const reading = JSON.parse(line);
          if (reading.sensor === watched) readings.push([reading.t * 1000, at]);
        }
      }
      return { readings, drawn };
    },
  };
})();
