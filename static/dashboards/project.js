/* The project dashboard's charts, drawn from the figures the page embeds (#dashboard-data). */
(function (global) {
  "use strict";
  const C = global.LPCharts;
  const t = C.t;
  const source = document.getElementById("dashboard-data");
  if (!C || !source) return;
  const data = JSON.parse(source.textContent);
  const STATUS_NAMES = {
    new: t("New"), open: t("Open"), in_progress: t("In progress"), in_review: t("In review"), rework: t("Rework"),
    on_hold: t("On hold"), accepted: t("Accepted"), cancelled: t("Cancelled"),
  };
  const WEEKDAYS = [t("Mon"), t("Tue"), t("Wed"), t("Thu"), t("Fri"), t("Sat"), t("Sun")];
  const METRIC_NAMES = {
    agreement: t("Agreement"), gold_accuracy: t("Gold accuracy"), acceptance_rate: t("Acceptance rate"),
    rework_rate: t("Rework rate"), sanity_pass_rate: t("Sanity pass rate"),
  };
  const METRIC_COLORS = {
    agreement: C.COLORS.series[0], gold_accuracy: C.COLORS.series[1], acceptance_rate: C.COLORS.series[2],
    rework_rate: C.COLORS.series[3], sanity_pass_rate: C.COLORS.series[4],
  };

  function statusBar() {
    const byStatus = data.progress.by_status || {};
    const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
    if (!total) return C.empty("chart-status", t("No tasks in this selection yet."));
    const order = ["accepted", "in_review", "rework", "in_progress", "on_hold", "open", "new", "cancelled"];
    const traces = order.filter((s) => byStatus[s]).map((s) => ({
      type: "bar", orientation: "h", name: STATUS_NAMES[s] || s, y: [""], x: [byStatus[s]],
      marker: { color: C.STATUS_COLORS[s] }, text: [`${(100 * byStatus[s] / total).toFixed(1)} %`],
      textposition: "inside", insidetextanchor: "middle",
      hovertemplate: `${STATUS_NAMES[s] || s}: %{x} (%{text})<extra></extra>`,
    }));
    C.draw("chart-status", traces, {
      barmode: "stack", height: 130, hovermode: "closest", margin: { l: 8, r: 8, t: 36, b: 24 },
      xaxis: { range: [0, total], showgrid: false }, yaxis: { showticklabels: false, rangemode: "normal" },
    });
  }

  function burndown() {
    const rows = data.burndown || [];
    if (!rows.length) return C.empty("chart-burndown", t("No daily history yet in this date range."));
    const traces = [{
      type: "scatter", mode: "lines+markers", name: t("Remaining tasks"), x: rows.map((r) => r.date),
      y: rows.map((r) => r.remaining_tasks), line: { color: C.COLORS.accent, width: 2.5 },
      hovertemplate: `%{x}: %{y} ${t("remaining")}<extra></extra>`,
    }];
    const progress = data.progress;
    const last = rows[rows.length - 1];
    const range = progress.eta_range || {};
    const forecast = (end, name, dash, width) => ({
      type: "scatter", mode: "lines", name, x: [last.date, end], y: [progress.remaining, 0],
      line: { color: C.COLORS.ok, dash, width }, hovertemplate: `%{x}: %{y:.0f}<extra>${name}</extra>`,
    });
    if (progress.eta && progress.remaining > 0) {
      traces.push(forecast(progress.eta, t("Forecast to the ETA"), "dash", 2));
      if (range.date_early && range.date_early !== progress.eta) traces.push(forecast(range.date_early, t("Early"), "dot", 1));
      if (range.date_late && range.date_late !== progress.eta) traces.push(forecast(range.date_late, t("Late"), "dot", 1));
    }
    C.draw("chart-burndown", traces, { height: 300, xaxis: { type: "date" }, yaxis: { title: { text: t("Tasks") } } });
  }

  function throughputDay() {
    const rows = data.throughput.per_day || [];
    if (!rows.length) return C.empty("chart-throughput-day", t("No submissions in this date range."));
    C.draw("chart-throughput-day", [{
      type: "bar", name: t("Submissions"), x: rows.map((r) => r.date), y: rows.map((r) => r.submitted),
      marker: { color: C.COLORS.accent }, hovertemplate: `%{x}: %{y}<extra></extra>`,
    }], { height: 280, showlegend: false, xaxis: { type: "date" } });
  }

  function throughputHour() {
    const rows = data.throughput.per_hour || [];
    if (!rows.length) return C.empty("chart-throughput-hour", t("No submissions in the last 48 hours."));
    C.draw("chart-throughput-hour", [{
      type: "bar", name: t("Submissions"), x: rows.map((r) => r.hour), y: rows.map((r) => r.submitted),
      marker: { color: C.COLORS.series[1] }, hovertemplate: `%{x|%a %H:00}: %{y}<extra></extra>`,
    }], { height: 280, showlegend: false, xaxis: { type: "date" } });
  }

  function heatmap() {
    const map = data.throughput.heatmap;
    const cells = map && map.submitted;
    if (!cells || !cells.some((row) => row.some((n) => n > 0))) {
      return C.empty("chart-heatmap", t("No submissions in the last four weeks."));
    }
    C.draw("chart-heatmap", [{
      type: "heatmap", z: cells, x: map.hours.map((h) => `${String(h).padStart(2, "0")}:00`), y: WEEKDAYS,
      colorscale: "YlOrRd", reversescale: true,  // pale when quiet, deep red when busy xgap: 2, ygap: 2,
      colorbar: { title: { text: t("Submissions"), side: "right" }, thickness: 12 },
      hovertemplate: `%{y} %{x}: %{z}<extra></extra>`,
    }], { height: 300, hovermode: "closest", showlegend: false, margin: { l: 48 },
          yaxis: { autorange: "reversed", rangemode: "normal" }, xaxis: { tickangle: 0, dtick: 2 } });
  }

  function review() {
    const latency = data.review.latency_per_day || [];
    const backlog = (data.burndown || []).filter((r) => r.review_backlog !== null && r.review_backlog !== undefined);
    if (!latency.length && !backlog.length) return C.empty("chart-review", t("No reviews in this date range."));
    C.draw("chart-review", [
      { type: "bar", name: t("Reviews decided"), x: latency.map((r) => r.date), y: latency.map((r) => r.decided),
        marker: { color: C.COLORS.series[4] }, opacity: 0.8 },
      { type: "scatter", mode: "lines+markers", name: t("Backlog (end of day)"), x: backlog.map((r) => r.date),
        y: backlog.map((r) => r.review_backlog), line: { color: C.COLORS.warn, width: 2 } },
      { type: "scatter", mode: "lines+markers", name: t("Mean latency (hours)"), yaxis: "y2",
        x: latency.map((r) => r.date),
        y: latency.map((r) => (r.mean_latency_seconds === null ? null : r.mean_latency_seconds / 3600)),
        line: { color: C.COLORS.err, width: 2, dash: "dot" }, hovertemplate: "%{y:.1f} h" },
    ], { height: 300, margin: { r: 64 }, xaxis: { type: "date" }, yaxis: { title: { text: t("Annotations") } },
         yaxis2: { title: { text: t("Hours") }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false } });
  }

  function quality() {
    const rows = data.quality.per_day || [];
    const shown = ["agreement", "gold_accuracy", "acceptance_rate"];
    const traces = shown.filter((m) => rows.some((r) => r[m] !== null && r[m] !== undefined)).map((m) => ({
      type: "scatter", mode: "lines+markers", name: METRIC_NAMES[m], x: rows.map((r) => r.date),
      y: rows.map((r) => r[m]), line: { color: METRIC_COLORS[m], width: 2.5 }, connectgaps: true,
      hovertemplate: `%{y:.3f}<extra>${METRIC_NAMES[m]}</extra>`,
    }));
    if (!traces.length) return C.empty("chart-quality", t("No quality figures in this date range yet."));
    const lines = (data.quality.gates || []).filter((g) => shown.includes(g.metric)).map((g) => C.hline(
      g.threshold, METRIC_COLORS[g.metric],
      `${t("gate")}: ${METRIC_NAMES[g.metric]} ${g.comparator === "gte" ? "≥" : "≤"} ${g.threshold}`));
    C.draw("chart-quality", traces, {
      height: 320, xaxis: { type: "date" }, yaxis: { range: [0, 1.05], rangemode: "normal", tickformat: ".0%" },
      shapes: lines.map((l) => l.shape), annotations: lines.map((l) => l.annotation),
    });
  }

  function errors() {
    const rows = (data.quality.error_types || []).slice().reverse();
    if (!rows.length) return C.empty("chart-errors", t("No errors reported by reviewers."));
    C.draw("chart-errors", [{
      type: "bar", orientation: "h", name: t("Reviews"), y: rows.map((r) => C.esc(r.name)), x: rows.map((r) => r.count),
      marker: { color: C.COLORS.err }, hovertemplate: `%{y}: %{x}<extra></extra>`,
    }], { height: Math.max(180, 40 + 32 * rows.length), showlegend: false, hovermode: "closest",
          margin: { l: 170 }, yaxis: { automargin: true, rangemode: "normal" } });
  }

  [statusBar, burndown, throughputDay, throughputHour, heatmap, review, quality, errors].forEach((chart) => {
    try { chart(); } catch (error) { console.error(error); }  // one broken chart leaves the others drawn
  });
})(window);
