/* The review page: take the next annotation from the queue, see it drawn as the labeling page draws it, decide.
 * With several annotations waiting on the same task, they are shown side by side with the differences outlined,
 * and the reviewer can pick one, merge them, or reject each.
 */
(function (global) {
  "use strict";
  const LP = global.LP;
  const el = LP.el;
  const t = (s) => (global.gettext ? global.gettext(s) : s);
  const fmt = (s, obj) => (global.interpolate ? global.interpolate(s, obj, true) : s);
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const $ = (id) => document.getElementById(id);
  const state = {annotation: null, task: null, widget: null, mode: "read", waiting: [], rejectTarget: null, busy: false};

  const uuid = LP.uuid;
  const api = LP.apiClient(config);
  function status(message, kind) { const box = $("status"); box.textContent = message || ""; box.className = "lp-status " + (kind || ""); }
  function showErrors(messages) {
    const box = $("errors"); box.replaceChildren(...(messages || []).map((m) => el("li", {text: m}))); box.hidden = !messages || !messages.length;
  }
  function errorsOf(answer) {
    const errors = Object.values((answer.data && answer.data.errors) || {}).flat().filter((e) => typeof e === "string");
    return errors.length ? errors : [(answer.data && answer.data.detail) || t("The server refused the decision.")];
  }

  /* --- differences between results ------------------------------------------------------------------------------ */
  const spanKey = (s) => s.start + ":" + s.end + ":" + s.label;
  function iou(a, b) {
    const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
    const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
    const inter = ix * iy, union = a.w * a.h + b.w * b.h - inter;
    return union > 0 ? inter / union : 0;
  }
  function outlineDifferences(root, result, others) {
    if (!others.length) return;
    if (config.taskType === "classification" || config.taskType === "multilabel") {
      const mine = new Set(result.labels || (result.label ? [result.label] : []));
      const inAll = (v) => others.every((o) => (o.labels || (o.label ? [o.label] : [])).includes(v));
      root.querySelectorAll(".lp-label").forEach((b) => {
        if (mine.has(b.dataset.value) && !inAll(b.dataset.value)) b.classList.add("lp-diff");
      });
    } else if (config.taskType === "text_spans") {
      const spans = result.spans || [];
      const shared = (s) => others.every((o) => (o.spans || []).some((x) => spanKey(x) === spanKey(s)));
      root.querySelectorAll("[data-span]").forEach((seg) => { if (!shared(spans[Number(seg.dataset.span)])) seg.classList.add("lp-diff"); });
      root.querySelectorAll(".lp-span-list li").forEach((li, i) => { if (spans[i] && !shared(spans[i])) li.classList.add("lp-diff"); });
    } else if (config.taskType === "bounding_boxes") {
      const boxes = result.boxes || [];
      const matched = (b) => others.every((o) => (o.boxes || []).some((x) => x.label === b.label && iou(x, b) >= 0.5));
      root.querySelectorAll("rect.lp-box").forEach((r) => { if (!matched(boxes[Number(r.dataset.box)])) r.classList.add("lp-diff"); });
      root.querySelectorAll(".lp-span-list li").forEach((li, i) => { if (boxes[i] && !matched(boxes[i])) li.classList.add("lp-diff"); });
    }
  }
  function merged(results) {
    // A starting point for a merge: everything anyone marked, duplicates removed.
    if (config.taskType === "classification") return results[0];
    if (config.taskType === "multilabel") return {labels: [...new Set(results.flatMap((r) => r.labels || []))]};
    if (config.taskType === "text_spans") {
      const seen = new Map();
      results.flatMap((r) => r.spans || []).forEach((s) => seen.set(spanKey(s), s));
      return {spans: [...seen.values()].sort((a, b) => a.start - b.start)};
    }
    const boxes = [];
    results.flatMap((r) => r.boxes || []).forEach((b) => { if (!boxes.some((x) => x.label === b.label && iou(x, b) >= 0.5)) boxes.push(b); });
    return {boxes};
  }

  /* --- loading -------------------------------------------------------------------------------------------------- */
  async function loadNext() {
    showErrors([]); status(t("Loading the next annotation…")); setMode("read");
    let answer;
    try { answer = await api("POST", "projects/" + config.projectId + "/review/next/"); }
    catch (e) { status(t("Connection lost. Retrying in a few seconds…"), "warn"); setTimeout(loadNext, 3000); return; }
    if (answer.status === 204) { $("workspace").hidden = true; $("done").hidden = false; status(""); return; }
    if (answer.status !== 200) { status((answer.data && answer.data.detail) || t("Could not load the queue."), "error"); return; }
    state.annotation = answer.data.annotation; state.task = answer.data.task;
    $("workspace").hidden = false; $("done").hidden = true;
    render();
    await loadSiblings();
    status("");
  }

  function render() {
    const a = state.annotation;
    $("annotator").textContent = a.annotator;
    $("version").textContent = a.version > 1 ? fmt(t("resubmission, version %(v)s"), {v: a.version}) : t("first submission");
    $("guideline-version").textContent = a.guideline_version ? fmt(t("made under guideline v%(v)s"), {v: a.guideline_version}) : "";
    $("badges").replaceChildren(...[a.status === "escalated" ? el("span", {class: "badge", text: t("escalated")}) : null,
      a.version > 1 ? el("span", {class: "badge", text: t("rework")}) : null].filter(Boolean));
    $("notes-line").hidden = !a.notes; $("notes").textContent = a.notes || "";
    $("escalate").hidden = a.status === "escalated";
    state.widget = LP.createWidget($("widget"), {taskType: config.taskType, schema: config.schema, data: state.task.data,
      result: a.result, readOnly: state.mode === "read"});
  }

  async function loadSiblings() {
    $("pairwise").hidden = true; state.waiting = [];
    if (config.overlap < 2) return;
    let answer;
    try { answer = await api("GET", "tasks/" + state.task.id + "/annotations/?page_size=100"); }
    catch (e) { return; }  // the side-by-side view is an aid: without it the annotation can still be decided
    if (answer.status !== 200) return;
    state.waiting = answer.data.results.filter((x) => x.is_current && ["submitted", "escalated"].includes(x.status) && x.needs_review);
    if (state.waiting.length < 2) return;
    $("pairwise").hidden = false;
    const columns = $("pairwise-columns"); columns.replaceChildren();
    for (const a of state.waiting) {
      const holder = el("div", {class: "widget"});
      const column = el("div", {class: "pairwise-column"}, [
        el("h3", {text: a.annotator + " · v" + a.version}), holder,
        el("div", {class: "buttons"}, [
          el("button", {type: "button", onclick: () => pick(a), text: t("Pick this one")}),
          el("button", {type: "button", class: "secondary", onclick: () => openReject(a), text: t("Reject")}),
        ]),
      ]);
      columns.append(column);
      LP.createWidget(holder, {taskType: config.taskType, schema: config.schema, data: state.task.data, result: a.result, readOnly: true});
      outlineDifferences(holder, a.result, state.waiting.filter((x) => x.id !== a.id).map((x) => x.result));
    }
  }

  /* --- decisions ------------------------------------------------------------------------------------------------ */
  async function send(path, body) {
    // One decision, one Idempotency-Key: a retry after a lost answer is replayed by the server, never applied twice.
    const key = uuid();
    for (let attempt = 0; ; attempt += 1) {
      try { return await api("POST", path, body, {"Idempotency-Key": key}); }
      catch (e) {
        if (attempt > 5) return null;
        status(t("Connection lost. Retrying in a few seconds…"), "warn");
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      }
    }
  }
  async function submitDecision(path, body) {
    if (state.busy) return;
    state.busy = true; showErrors([]); status(t("Saving the decision…"));
    let answer;
    try { answer = await send(path, body); } finally { state.busy = false; }
    if (answer === null) { status(t("Connection lost; the decision was not saved."), "error"); return; }
    if (answer.status === 201 || answer.status === 200) { status(t("Saved."), "ok"); loadNext(); return; }
    showErrors(errorsOf(answer)); status("", "");
    if (answer.status === 409) setTimeout(loadNext, 1500);
  }
  const decide = (annotation, body) => submitDecision("annotations/" + annotation.id + "/review/", body);
  const approve = () => decide(state.annotation, {decision: "approve"});

  function openReject(target) {
    state.rejectTarget = target || state.annotation;
    const box = $("error-types");
    box.replaceChildren(el("legend", {text: t("Error types (at least one)")}),
      ...config.errorTypes.map((e) => el("label", {class: "check", title: e.description || ""}, [
        el("input", {type: "checkbox", name: "error_type", value: e.code}), " " + e.name])));
    $("reject-error").textContent = "";
    $("reject-dialog").showModal();
    const first = box.querySelector("input"); first && first.focus();
  }
  $("reject-form").addEventListener("submit", (event) => {
    const codes = [...document.querySelectorAll("#error-types input:checked")].map((i) => i.value);
    if (!codes.length) { event.preventDefault(); $("reject-error").textContent = t("Choose at least one error type."); return; }
    decide(state.rejectTarget, {decision: "reject", error_types: codes, comment: $("reject-comment").value});
    $("reject-comment").value = "";
  });
  $("escalate-form").addEventListener("submit", () => {
    decide(state.annotation, {decision: "escalate", comment: $("escalate-comment").value});
    $("escalate-comment").value = "";
  });

  function setMode(mode) {
    state.mode = mode;
    $("decisions").hidden = mode !== "read"; $("fixing").hidden = mode === "read";
    $("accept-fix").textContent = "";
    $("accept-fix").append(mode === "merge" ? t("Accept the merged result") : t("Accept my fix"), " ", el("kbd", {text: "Ctrl+Enter"}));
  }
  function startFix(initial) {
    setMode(initial ? "merge" : "fix");
    state.widget = LP.createWidget($("widget"), {taskType: config.taskType, schema: config.schema, data: state.task.data,
      result: initial || state.annotation.result, readOnly: false, onChange: () => {}});
    state.widget.focus();
    status(initial ? t("Edit the merged result, then accept it for every annotation of the task.") : t("Edit the result, then accept your fix."));
  }
  async function acceptFix() {
    const result = state.widget.getResult();
    if (state.mode === "merge") {
      await resolve({result});
    } else decide(state.annotation, {decision: "fix", corrected_result: result});
  }
  function cancelFix() { setMode("read"); render(); status(""); }

  const resolve = (body) => submitDecision("tasks/" + state.task.id + "/review/pairwise/", body);
  const pick = (a) => resolve({annotation: a.id});

  function onKey(event) {
    if (document.querySelector("dialog[open]")) return;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && state.mode !== "read") { event.preventDefault(); acceptFix(); return; }
    if (state.mode !== "read") {
      if (event.key === "Escape") { event.preventDefault(); cancelFix(); return; }
      if (state.widget && state.widget.handleKey(event)) event.preventDefault();
      return;
    }
    if (["INPUT", "TEXTAREA"].includes(document.activeElement.tagName) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!state.annotation || $("workspace").hidden) return;
    const key = event.key.toLowerCase();
    if (key === "a") { event.preventDefault(); approve(); }
    else if (key === "r") { event.preventDefault(); openReject(); }
    else if (key === "f") { event.preventDefault(); startFix(); }
    else if (key === "e" && state.annotation.status !== "escalated") { event.preventDefault(); $("escalate-dialog").showModal(); }
    else if (key === "m" && state.waiting.length >= 2) { event.preventDefault(); startFix(merged(state.waiting.map((x) => x.result))); }
    else if (event.key === "?") { event.preventDefault(); $("help-dialog").showModal(); }
  }
  document.addEventListener("keydown", onKey);
  $("approve").addEventListener("click", approve);
  $("reject").addEventListener("click", () => openReject());
  $("fix").addEventListener("click", () => startFix());
  $("escalate").addEventListener("click", () => $("escalate-dialog").showModal());
  $("accept-fix").addEventListener("click", acceptFix);
  $("cancel-fix").addEventListener("click", cancelFix);
  $("merge").addEventListener("click", () => startFix(merged(state.waiting.map((x) => x.result))));
  $("help").addEventListener("click", () => $("help-dialog").showModal());
  loadNext();
})(window);
