/* The people dashboards' charts (plotly.js, served from this site) and sortable tables.
 * The page's data comes from the server in #people-data (the same object `?format=json` returns); #people-page
 * says which page this is: "team" (managers), "annotator" (managers), "mine" (an annotator's own stats).
 */
(function (global) {
  "use strict";
  const t = (s) => (global.gettext ? global.gettext(s) : s);
  const $ = (id) => document.getElementById(id);
  const root = $("people-page");
  const dataNode = $("people-data");
  if (!root || !dataNode) return;
  const data = JSON.parse(dataNode.textContent);
  const Plotly = global.Plotly;
  const CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  const NAMES = {
    submitted: t("Submitted"), median_lead_time_seconds: t("Median lead time"),
    difficulty_adjusted_speed: t("Speed (difficulty-adjusted)"), acceptance_rate: t("Acceptance rate"),
    rework_rate: t("Rework rate"), gold_accuracy: t("Gold accuracy"), agreement: t("Agreement"),
  };
  const RATES = new Set(["acceptance_rate", "rework_rate", "gold_accuracy", "agreement"]);
  const COLOURS = ["#2f5bd3", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
                   "#7f7f7f", "#bcbd22"];
  const present = (v) => v !== null && v !== undefined;

  const esc = global.LPCharts.esc;  // static/dashboards/charts.js
  function fmt(name, value) {
    if (!present(value)) return "—";
    if (RATES.has(name)) return Math.round(value * 100) + " %";
    if (name === "median_lead_time_seconds") return value.toFixed(1) + " s";
    if (name === "difficulty_adjusted_speed") return value.toFixed(2) + "×";
    return String(Math.round(value));
  }
  function axis(name, extra) {
    const base = {title: {text: NAMES[name] || name}, zeroline: false, automargin: true};
    if (RATES.has(name)) Object.assign(base, {tickformat: ".0%", range: [0, 1.05]});
    if (name === "median_lead_time_seconds") base.ticksuffix = " s";
    if (name === "difficulty_adjusted_speed") base.ticksuffix = "×";
    return Object.assign(base, extra || {});
  }
  function layout(extra) {
    return Object.assign({margin: {l: 60, r: 20, t: 30, b: 50}, font: {family: "system-ui, sans-serif", size: 12},
                          paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff", hovermode: "closest"}, extra || {});
  }
  function empty(node, message) {
    node.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted chart-empty";
    p.textContent = message;
    node.appendChild(p);
  }
  function draw(node, traces, extraLayout) {
    if (!Plotly) { empty(node, t("The charts could not be loaded.")); return; }
    Plotly.newPlot(node, traces, layout(extraLayout), CONFIG);
  }

  /* --- sortable tables ------------------------------------------------------------------------------------------ */
  function sortable(table) {
    table.querySelectorAll("thead th button.sort").forEach((button) => {
      button.addEventListener("click", () => {
        const th = button.closest("th");
        const column = Array.from(th.parentNode.children).indexOf(th);
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("thead th").forEach((other) => other.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const numeric = button.dataset.type === "number";
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = (row) => row.children[column].dataset.sort || "";
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (numeric) {
            if (x === "" || y === "") return (x === "") - (y === "");  // no figure: always last
            return ascending ? Number(x) - Number(y) : Number(y) - Number(x);
          }
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        });
        body.append(...rows);
      });
    });
  }
  document.querySelectorAll("table.sortable").forEach(sortable);

  /* --- weekly series against the team's band --------------------------------------------------------------------- */
  function bandTraces(weeks, team, name) {
    const spread = team && team[name];
    if (!spread) return [];
    return [
      {x: weeks, y: spread.p75, type: "scatter", mode: "lines", line: {width: 0}, hoverinfo: "skip", showlegend: false,
       connectgaps: false},
      {x: weeks, y: spread.p25, type: "scatter", mode: "lines", line: {width: 0}, fill: "tonexty",
       fillcolor: "rgba(47,91,211,0.13)", name: t("Team, middle half"), hoverinfo: "skip"},
      {x: weeks, y: spread.median, type: "scatter", mode: "lines", line: {dash: "dash", color: "#5b6577"},
       name: t("Team median"), hovertemplate: "%{y}<extra>" + esc(t("Team median")) + "</extra>"},
    ];
  }
  /* The first week with any work in it: the weeks before it (a young project) are left off the charts. */
  function firstActiveWeek(weeks, seriesList) {
    for (let w = 0; w < weeks.length; w++) {
      if (seriesList.some((s) => s && s[w] !== null && s[w] !== undefined && s[w] !== 0)) return w;
    }
    return weeks.length;
  }
  function personTrends(trend, label) {
    const from = firstActiveWeek(trend.weeks || [], [((trend.team || {}).submitted || {}).n,
                                                    (trend.mine || {}).submitted]);
    const cut = (list) => (list || []).slice(from);
    const team = {};
    Object.entries(trend.team || {}).forEach(([name, spread]) => {
      team[name] = {p25: cut(spread.p25), median: cut(spread.median), p75: cut(spread.p75)};
    });
    trend = {weeks: cut(trend.weeks), team,
             mine: trend.mine ? Object.fromEntries(Object.entries(trend.mine).map(([k, v]) => [k, cut(v)])) : null};
    const weeks = trend.weeks || [];
    ["submitted", "median_lead_time_seconds", "acceptance_rate", "gold_accuracy"].forEach((name) => {
      const node = $("trend-" + name);
      if (!node) return;
      if (!weeks.length) { empty(node, t("No weekly figures yet: the workers compute them every half hour.")); return; }
      const mine = trend.mine ? trend.mine[name] : weeks.map(() => null);
      const traces = bandTraces(weeks, trend.team, name).concat([{
        x: weeks, y: mine, type: "scatter", mode: "lines+markers", name: esc(label), line: {color: "#d62728", width: 3},
        marker: {size: 7}, connectgaps: false,
      }]);
      draw(node, traces, {title: {text: NAMES[name], font: {size: 13}}, yaxis: axis(name, {title: null}),
                          xaxis: {type: "date", tickformat: "%d %b"}, showlegend: false, margin: {l: 50, r: 10, t: 35, b: 35}});
    });
  }
  function errorChart(errors) {
    const node = $("chart-errors");
    if (!node || !errors || !errors.length) return;
    const sorted = errors.slice().reverse();
    draw(node, [{type: "bar", orientation: "h", x: sorted.map((e) => e.count), y: sorted.map((e) => esc(e.name)),
                 marker: {color: "#d62728"}, hovertemplate: "%{y}: %{x}<extra></extra>"}],
         {xaxis: {title: {text: t("Times found in reviews")}, dtick: 1}, yaxis: {automargin: true},
          height: Math.max(160, 40 * errors.length + 80)});
  }

  /* --- team view ------------------------------------------------------------------------------------------------ */
  function scatter() {
    const node = $("chart-scatter");
    const select = $("scatter-y");
    const rows = data.annotators || [];
    const render = () => {
      const yName = select.value;
      const points = rows.filter((r) => present(r.difficulty_adjusted_speed) && present(r[yName]));
      if (!points.length) { empty(node, t("No annotator has both figures yet.")); return; }
      const hover = points.map((r) => "<b>" + esc(r.username) + "</b><br>" +
        ["submitted", "median_lead_time_seconds", "difficulty_adjusted_speed", "acceptance_rate", "rework_rate",
         "gold_accuracy", "agreement"].map((n) => esc(NAMES[n]) + ": " + fmt(n, r[n])).join("<br>") +
        ((r.flags || []).length ? "<br>" + esc(t("Flags")) + ": " + r.flags.map(esc).join(", ") : ""));
      const flagged = points.map((r) => (r.flags || []).length > 0);
      const trace = {
        type: "scatter", mode: "markers+text", x: points.map((r) => r.difficulty_adjusted_speed),
        y: points.map((r) => r[yName]), text: points.map((r) => esc(r.username)), textposition: "top center",
        hovertext: hover, hovertemplate: "%{hovertext}<extra></extra>",
        marker: {size: points.map((r) => 9 + Math.min(14, Math.sqrt(r.submitted || 0))),
                 color: flagged.map((f) => (f ? "#d62728" : "#2f5bd3")), opacity: 0.85,
                 line: {width: 1, color: "#fff"}},
        customdata: points.map((r) => r.annotator_id),
      };
      const mx = data.medians.difficulty_adjusted_speed, my = data.medians[yName];
      const shapes = [];
      if (present(mx)) shapes.push({type: "line", xref: "x", yref: "paper", x0: mx, x1: mx, y0: 0, y1: 1,
                                    line: {dash: "dash", color: "#5b6577"}});
      if (present(my)) shapes.push({type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: my, y1: my,
                                    line: {dash: "dash", color: "#5b6577"}});
      const corner = (x, y, text, xanchor, yanchor) => ({xref: "paper", yref: "paper", x, y, text: esc(text),
        showarrow: false, xanchor, yanchor, font: {color: "#5b6577", size: 12}});
      draw(node, [trace], {
        xaxis: axis("difficulty_adjusted_speed"), shapes, showlegend: false,
        yaxis: axis(yName, RATES.has(yName) ? {range: [Math.max(0, Math.min(...points.map((r) => r[yName])) - 0.1) - 0.02, 1.1]} : {}),
        annotations: [corner(1, 0, t("fast but careless"), "right", "bottom"),
                      corner(0, 1, t("slow but careful"), "left", "top"),
                      corner(1, 1, t("fast and careful"), "right", "top"),
                      corner(0, 0, t("slow and careless"), "left", "bottom")],
      });
      if (node.removeAllListeners) node.removeAllListeners("plotly_click");  // one handler across redraws
      if (node.on) node.on("plotly_click", (event) => {
        const id = event.points && event.points[0] && event.points[0].customdata;
        const row = document.querySelector('tr[data-annotator="' + Number(id) + '"] a');
        if (row) global.location.href = row.href;
      });
    };
    select.addEventListener("change", render);
    if (!rows.some((r) => present(r.gold_accuracy)) && rows.some((r) => present(r.agreement))) select.value = "agreement";
    render();
  }
  function teams() {
    const node = $("chart-teams");
    if (!node) return;
    const groups = data.teams || [];
    const names = groups.map((g) => esc(g.name === null ? t("Not in a team") : g.name));
    const figures = ["acceptance_rate", "gold_accuracy", "agreement", "rework_rate"];
    const traces = figures.map((name, i) => ({
      type: "bar", name: NAMES[name], x: names, y: groups.map((g) => g[name]), marker: {color: COLOURS[i]},
      hovertemplate: "%{x}: %{y:.0%}<extra>" + esc(NAMES[name]) + "</extra>",
    }));
    traces.push({type: "scatter", mode: "markers", name: NAMES.difficulty_adjusted_speed, x: names,
                 y: groups.map((g) => g.difficulty_adjusted_speed), yaxis: "y2",
                 marker: {symbol: "diamond", size: 13, color: "#111"},
                 hovertemplate: "%{x}: %{y:.2f}×<extra>" + esc(NAMES.difficulty_adjusted_speed) + "</extra>"});
    draw(node, traces, {barmode: "group", yaxis: axis("acceptance_rate", {title: {text: t("Rates")}}),
                        yaxis2: axis("difficulty_adjusted_speed", {overlaying: "y", side: "right", rangemode: "tozero",
                                                                     tickformat: ".2f"}),
                        legend: {orientation: "h", y: -0.2}, margin: {l: 60, r: 60, t: 20, b: 60}});
  }
  function teamTrends() {
    const node = $("chart-trends");
    const select = $("trend-figure");
    const trends = data.trends || {};
    const all = Object.values(trends.annotators || {});
    const from = firstActiveWeek(trends.weeks || [], all.map((s) => s.submitted));
    const weeks = (trends.weeks || []).slice(from);
    const render = () => {
      const name = select.value;
      const series = all.map((s) => Object.assign({}, s, {[name]: (s[name] || []).slice(from)}));
      if (!weeks.length || !series.length) { empty(node, t("No weekly figures yet: the workers compute them every half hour.")); return; }
      const traces = series.map((s, i) => ({
        type: "scatter", mode: "lines+markers", name: esc(s.username), x: weeks, y: s[name], connectgaps: false,
        line: {color: COLOURS[i % COLOURS.length], width: 1.5}, marker: {size: 5},
        hovertemplate: "%{x|%d %b}: %{y}<extra>" + esc(s.username) + "</extra>",
      }));
      const team = trends.team && trends.team[name];
      if (team) traces.push({type: "scatter", mode: "lines", name: t("Team median"), x: weeks, y: team.median.slice(from),
                             line: {dash: "dash", color: "#111", width: 3}});
      draw(node, traces, {xaxis: {type: "date", tickformat: "%d %b"}, yaxis: axis(name),
                          legend: {orientation: "v"}});
    };
    select.addEventListener("change", render);
    render();
  }

  /* --- my stats: where I stand ------------------------------------------------------------------------------------ */
  function whereIStand() {
    const box = $("chart-where");
    if (!box || !data.me) return;
    ["submitted", "median_lead_time_seconds", "difficulty_adjusted_speed", "acceptance_rate", "rework_rate",
     "gold_accuracy", "agreement"].forEach((name) => {
      const spread = (data.team || {})[name] || {};
      const mine = data.me[name];
      const node = document.createElement("div");
      node.className = "chart chart-where";
      node.id = "where-" + name;
      node.setAttribute("role", "img");
      node.setAttribute("aria-label", NAMES[name]);
      box.appendChild(node);
      if (!present(spread.median)) {
        empty(node, NAMES[name] + ": " + fmt(name, mine) + " — " + t("the team's spread is shown once at least 5 annotators have this figure."));
        return;
      }
      const traces = [{
        type: "box", orientation: "h", y: [t("Team")], q1: [spread.p25], median: [spread.median], q3: [spread.p75],
        lowerfence: [spread.p25], upperfence: [spread.p75], name: t("Team"), fillcolor: "rgba(47,91,211,0.18)",
        line: {color: "#2f5bd3"}, hoverinfo: "x", boxpoints: false,
      }];
      if (present(mine)) traces.push({type: "scatter", mode: "markers", x: [mine], y: [t("Team")], name: t("You"),
        marker: {symbol: "diamond", size: 16, color: "#d62728", line: {color: "#fff", width: 1}},
        hovertemplate: esc(t("You")) + ": " + esc(fmt(name, mine)) + "<extra></extra>"});
      const values = [spread.p25, spread.p75, mine].filter(present);
      const low = Math.min(...values), high = Math.max(...values), pad = (high - low) * 0.15 || Math.abs(high) * 0.1 || 1;
      draw(node, traces, {title: {text: NAMES[name], font: {size: 13}}, showlegend: false, height: 130,
                          margin: {l: 40, r: 40, t: 30, b: 30},
                          xaxis: axis(name, {title: null, range: RATES.has(name) ? [Math.max(0, low - pad), Math.min(1.02, high + pad)]
                                                                                  : [low - pad, high + pad]}),
                          yaxis: {showticklabels: false}});
    });
  }

  const page = root.dataset.page;
  if (page === "team") { scatter(); teams(); teamTrends(); }
  if (page === "annotator") { personTrends(data.trend || {}, (data.annotator || {}).username || ""); errorChart(data.error_types); }
  if (page === "mine") { whereIStand(); personTrends(data.trend || {}, t("You")); errorChart(data.error_types); }
})(window);
