/* LabelPortal chart helpers on plotly.js: one look for every dashboard, charts that resize, and an empty-state
   message instead of a blank box. Pages draw with LPCharts.draw(element or id, traces, layout). */
(function (global) {
  "use strict";
  const t = (s) => (global.gettext ? global.gettext(s) : s);

  const COLORS = {
    accent: "#2f5bd3", ok: "#1f7a3f", err: "#b3261e", warn: "#e0a100", muted: "#8a93a6",
    series: ["#2f5bd3", "#1f9e89", "#e0a100", "#b3261e", "#7b4fc4", "#5b6577"],
  };
  const STATUS_COLORS = {
    new: "#c9ced9", open: "#8fb3ff", in_progress: "#2f5bd3", in_review: "#7b4fc4", rework: "#e0a100",
    on_hold: "#f2c94c", accepted: "#1f7a3f", cancelled: "#8a93a6",
  };
  const CONFIG = {
    displaylogo: false, responsive: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"],
  };
  const BASE_LAYOUT = {
    margin: { l: 56, r: 24, t: 12, b: 44 },
    font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1d2330" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    hovermode: "x unified", showlegend: true,
    legend: { orientation: "h", x: 0, y: 1.12 },
    xaxis: { gridcolor: "#e6e9f2", zeroline: false }, yaxis: { gridcolor: "#e6e9f2", zeroline: false, rangemode: "tozero" },
  };

  function merge(base, extra) {
    const out = Array.isArray(base) ? base.slice() : Object.assign({}, base);
    Object.keys(extra || {}).forEach((key) => {
      const value = extra[key];
      out[key] = value && typeof value === "object" && !Array.isArray(value) && base[key] && typeof base[key] === "object"
        ? merge(base[key], value) : value;
    });
    return out;
  }

  function element(target) {
    return typeof target === "string" ? document.getElementById(target) : target;
  }

  /* Draw traces into the element; the element keeps data-drawn="true" once plotly has rendered. */
  function draw(target, traces, layout) {
    const el = element(target);
    if (!el) return null;
    if (!global.Plotly) {
      empty(el, t("The chart library did not load; the table below has the figures."));
      return null;
    }
    // A fresh copy each time: plotly writes into the layout it is given (axis types, ranges), and a shared
    // default would carry one chart's axes into the next.
    const base = JSON.parse(JSON.stringify(BASE_LAYOUT));
    global.Plotly.newPlot(el, traces, merge(base, layout || {}), CONFIG).then(() => {
      el.dataset.drawn = "true";
    });
    return el;
  }

  function empty(target, message) {
    const el = element(target);
    if (!el) return;
    el.classList.add("chart-empty");
    el.textContent = message || t("No data yet for this chart.");
    el.dataset.drawn = "empty";
  }

  function percent(value) {
    return value === null || value === undefined ? "—" : `${(100 * value).toFixed(1)} %`;
  }

  /* Text that people typed (names, error types) goes into SVG labels and hovers, where plotly reads a few HTML
     tags (links, styles): escape it. */
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  /* A horizontal line across the plot at y (a gate threshold), with a label at its right end. */
  function hline(y, color, label, yref) {
    return {
      shape: { type: "line", xref: "paper", x0: 0, x1: 1, yref: yref || "y", y0: y, y1: y,
               line: { color, width: 1.5, dash: "dash" } },
      annotation: { xref: "paper", x: 1, xanchor: "right", yref: yref || "y", y, yanchor: "bottom",
                    text: label, showarrow: false, font: { size: 11, color } },
    };
  }

  global.LPCharts = { t, draw, empty, merge, percent, hline, esc, COLORS, STATUS_COLORS };
})(window);
