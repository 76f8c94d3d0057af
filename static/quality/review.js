/* The review page: take the next annotation from the queue, see it drawn as the labeling page draws it, decide.
 * With several annotations waiting on the same task, they are shown side by side with the differences outlined,
 * and the reviewer can pick one, merge them, or reject each. Senior and lead reviewers work two queues, the review
 * queue and the escalations, one at a time. The queue lengths come with every annotation loaded (one request per
 * decision), and the guideline shown is the version the annotation was made under.
 */
(function (global) {
  "use strict";
  const LP = global.LP;
  const el = LP.el;
  const t = (s) => (global.gettext ? global.gettext(s) : s);
  // Called by its own name so that the catalogue extraction (xgettext's JavaScript keywords) finds the strings.
  const ngettext = global.ngettext || ((singular, plural, n) => (n === 1 ? singular : plural));
  const fmt = (s, obj) => (global.interpolate ? global.interpolate(s, obj, true) : s);
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const $ = (id) => document.getElementById(id);
  const state = {annotation: null, task: null, widget: null, mode: "read", waiting: [], rejectTarget: null, busy: false,
    queue: config.queue || "review", queues: config.queues || null};

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
  const checkedCodes = (root) => [...root.querySelectorAll("input[type=checkbox]:checked")].map((i) => i.value);
  const uncheckAll = (root) => root.querySelectorAll("input[type=checkbox]").forEach((i) => { i.checked = false; });

  /* --- the queues: lengths, oldest waiting age, and (senior and lead reviewers) which queue is worked ---------- */
  function ageText(seconds) {
    const minutes = Math.floor(seconds / 60), hours = Math.floor(minutes / 60), days = Math.floor(hours / 24);
    if (days >= 1) return fmt(ngettext("%(n)s day", "%(n)s days", days), {n: days});
    if (hours >= 1) return fmt(ngettext("%(n)s hour", "%(n)s hours", hours), {n: hours});
    return fmt(ngettext("%(n)s minute", "%(n)s minutes", minutes), {n: minutes});
  }
  function showQueues(queues) {
    // The line counts all the reviewer's work (both queues); the switch shows each queue's length.
    if (!queues) return;
    state.queues = queues;
    const all = [queues.review, queues.escalations].filter(Boolean);
    const length = all.reduce((sum, q) => sum + q.length, 0);
    const ages = all.map((q) => q.oldest_seconds).filter((s) => s !== null && s !== undefined);
    $("queue").dataset.length = String(length);
    $("queue-length").textContent = fmt(ngettext("%(n)s waiting", "%(n)s waiting", length), {n: length});
    $("queue-oldest").textContent = ages.length ? ", " + fmt(t("oldest %(age)s"), {age: ageText(Math.max(...ages))}) : "";
    for (const name of ["review", "escalations"]) {
      const count = $("count-" + name);
      if (count && queues[name]) count.textContent = String(queues[name].length);
    }
  }
  function selectQueue(name) {
    state.queue = name;
    document.querySelectorAll("#queue-tabs [data-queue]").forEach((b) => {
      const on = b.dataset.queue === name;
      b.setAttribute("aria-pressed", String(on)); b.classList.toggle("secondary", !on);
    });
    const url = new URL(global.location.href);
    url.searchParams.set("queue", name);
    global.history.replaceState(null, "", url);
  }
  function switchQueue(name) {
    // The server releases the annotation shown here when the other queue's next one is asked for (one task at a
    // time per reviewer): it goes back to the others at once instead of staying claimed.
    if (state.busy || name === state.queue) return;
    if (state.mode !== "read") cancelFix();
    selectQueue(name);
    loadNext();
  }
  const otherQueue = () => (state.queue === "escalations" ? "review" : "escalations");
  function showDone() {
    $("workspace").hidden = true; $("done").hidden = false;
    $("done-title").textContent = state.queue === "escalations" ? t("No escalations are waiting") : t("The review queue is empty");
    const other = $("done-other");
    if (!other) return;
    const waiting = state.queues && state.queues[otherQueue()] ? state.queues[otherQueue()].length : 0;
    other.hidden = !waiting;
    $("switch-queue").textContent = otherQueue() === "escalations"
      ? fmt(t("Go to the escalations (%(n)s)"), {n: waiting}) : fmt(t("Go to the review queue (%(n)s)"), {n: waiting});
  }

  /* --- the guideline the annotation was made under ------------------------------------------------------------ */
  function guidelineParagraphs(text) {
    // As Django's |linebreaks: a blank line between paragraphs, a line break within one; the text stays text.
    return (text || "").replace(/\r\n?/g, "\n").split(/\n{2,}/).filter((p) => p.trim()).map((p) => {
      const para = el("p");
      p.split("\n").forEach((line, i) => { if (i) para.append(el("br")); para.append(line); });
      return para;
    });
  }
  function showGuideline(guideline) {
    const current = config.currentGuideline;
    const shownVersion = guideline ? guideline.version : (current && current.version);
    $("guideline-title").textContent = t("Guideline") + (shownVersion ? " v" + shownVersion : "");
    $("guideline-text").replaceChildren(...guidelineParagraphs(guideline ? guideline.text : (current && current.text)));
    const note = $("guideline-note");
    if (!guideline) note.textContent = current ? t("This annotation was made before the project had a guideline; this is the current one.") : "";
    else if (current && current.version !== guideline.version) {
      note.textContent = fmt(t("The version this annotation was made under; the current guideline is v%(v)s."), {v: current.version});
    } else note.textContent = "";
    note.hidden = !note.textContent;
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
  const queuePath = () => "projects/" + config.projectId + "/review/next/";
  async function loadNext() {
    showErrors([]); status(t("Loading the next annotation…")); setMode("read");
    const queue = state.queue;
    let answer;
    try { answer = await api("POST", queuePath(), {queue}); }
    catch (e) { status(t("Connection lost. Retrying in a few seconds…"), "warn"); setTimeout(loadNext, 3000); return; }
    if (queue !== state.queue) return;  // the reviewer switched queues meanwhile: that load is under way
    if (answer.status === 204) {
      // Nothing left in this queue. The other queue's length is the one the last annotation came with.
      state.annotation = null;
      if (state.queues) showQueues(Object.assign({}, state.queues, {[queue]: {length: 0, oldest_seconds: null}}));
      showDone(); status(""); return;
    }
    if (answer.status !== 200) { status((answer.data && answer.data.detail) || t("Could not load the queue."), "error"); return; }
    state.annotation = answer.data.annotation; state.task = answer.data.task;
    showQueues(answer.data.queues);
    showGuideline(answer.data.guideline);
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
    uncheckAll($("pick-error-types"));
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
  /* Send a decision. `onRefused(answer)` shows a refusal where the reviewer made the decision (a dialog); without
   * it the refusal goes under the annotation. Resolves to true when the decision was saved. */
  async function submitDecision(path, body, onRefused) {
    if (state.busy) return false;
    state.busy = true; showErrors([]); status(t("Saving the decision…"));
    let answer;
    try { answer = await send(path, body); } finally { state.busy = false; }
    if (answer === null) { status(t("Connection lost; the decision was not saved."), "error"); return false; }
    if (answer.status === 201 || answer.status === 200) { status(t("Saved."), "ok"); loadNext(); return true; }
    status("", "");
    if (answer.status === 409 || !onRefused) {
      // 409: someone else decided it meanwhile; the next one comes after the reviewer read why.
      document.querySelectorAll("dialog[open]").forEach((d) => d.close());
      showErrors(errorsOf(answer));
      if (answer.status === 409) setTimeout(loadNext, 1500);
    } else onRefused(answer);
    return false;
  }
  const decide = (annotation, body, onRefused) => submitDecision("annotations/" + annotation.id + "/review/", body, onRefused);
  const approve = () => decide(state.annotation, {decision: "approve"});

  function fieldErrors(answer, field) {
    return (((answer.data && answer.data.errors) || {})[field] || []).filter((e) => typeof e === "string").join(" ");
  }
  function showRejectErrors(answer) {
    // The server's answer next to the form: its sentence, and each field's message beside the field.
    const detail = (answer.data && answer.data.detail) || t("The server refused the decision.");
    $("reject-error").textContent = detail;
    $("reject-comment-error").textContent = fieldErrors(answer, "comment");
    $("reject-types-error").textContent = fieldErrors(answer, "error_types");
    $("reject-comment").setAttribute("aria-invalid", String(Boolean(fieldErrors(answer, "comment"))));
  }
  function openReject(target) {
    state.rejectTarget = target || state.annotation;
    const box = $("error-types");
    box.replaceChildren(el("legend", {text: t("Error types (at least one)")}),
      ...config.errorTypes.map((e) => el("label", {class: "check", title: e.description || ""}, [
        el("input", {type: "checkbox", name: "error_type", value: e.code}), " " + e.name])));
    ["reject-error", "reject-comment-error", "reject-types-error"].forEach((id) => { $(id).textContent = ""; });
    $("reject-comment").removeAttribute("aria-invalid");
    $("reject-dialog").showModal();
    const first = box.querySelector("input"); first && first.focus();
  }
  $("reject-form").addEventListener("submit", async (event) => {
    event.preventDefault();  // the dialog stays open until the server took the decision
    const codes = checkedCodes($("error-types"));
    const comment = $("reject-comment").value;
    $("reject-error").textContent = "";
    $("reject-types-error").textContent = codes.length ? "" : t("Choose at least one error type.");
    $("reject-comment-error").textContent = comment.trim() ? "" : t("Write a comment for the annotator.");
    if (!codes.length || !comment.trim()) return;
    if (await decide(state.rejectTarget, {decision: "reject", error_types: codes, comment}, showRejectErrors)) {
      $("reject-dialog").close();
      $("reject-comment").value = "";
    }
  });
  $("escalate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("escalate-error").textContent = "";
    const saved = await decide(state.annotation, {decision: "escalate", comment: $("escalate-comment").value}, (answer) => {
      $("escalate-error").textContent = [(answer.data && answer.data.detail) || "", fieldErrors(answer, "comment")].filter(Boolean).join(" ");
    });
    if (saved) { $("escalate-dialog").close(); $("escalate-comment").value = ""; }
  });
  function openEscalate() { $("escalate-error").textContent = ""; $("escalate-dialog").showModal(); }

  function setMode(mode) {
    state.mode = mode;
    $("decisions").hidden = mode !== "read"; $("fixing").hidden = mode === "read";
    $("accept-fix").textContent = "";
    $("accept-fix").append(mode === "merge" ? t("Accept the merged result") : t("Accept my fix"), " ", el("kbd", {text: "Ctrl+Enter"}));
    $("fix-error-types-legend").textContent = mode === "merge"
      ? t("What was wrong in the annotations that differ from the merged result (optional)") : t("What was wrong (optional)");
  }
  function startFix(initial) {
    uncheckAll($("fix-error-types"));
    setMode(initial ? "merge" : "fix");
    state.widget = LP.createWidget($("widget"), {taskType: config.taskType, schema: config.schema, data: state.task.data,
      result: initial || state.annotation.result, readOnly: false, onChange: () => {}});
    state.widget.focus();
    status(initial ? t("Edit the merged result, then accept it for every annotation of the task.") : t("Edit the result, then accept your fix."));
  }
  /* The same result, whatever the order its labels, spans or boxes were listed in. */
  function sameResult(a, b) {
    const canon = (r) => {
      r = r || {};
      if (config.taskType === "classification") return JSON.stringify([r.label ?? null]);
      if (config.taskType === "multilabel") return JSON.stringify([...(r.labels || [])].sort());
      if (config.taskType === "text_spans") return JSON.stringify((r.spans || []).map(spanKey).sort());
      return JSON.stringify((r.boxes || []).map((x) => [x.x, x.y, x.w, x.h, x.label].join(":")).sort());
    };
    return canon(a) === canon(b);
  }
  async function acceptFix() {
    const result = state.widget.getResult();
    const errorTypes = checkedCodes($("fix-error-types"));
    if (state.mode === "merge") {
      // Error types are meant for the annotations that differ from the merged result. The pairwise resolution
      // approves every annotation equal to the final result and fixes the others with the error types given; a
      // merged result that is exactly one annotation's is sent as a pick of it.
      const same = state.waiting.find((a) => sameResult(a.result, result));
      await resolve(same ? {annotation: same.id, error_types: errorTypes} : {result, error_types: errorTypes});
    } else decide(state.annotation, {decision: "fix", corrected_result: result, error_types: errorTypes});
  }
  function cancelFix() { setMode("read"); render(); status(""); }

  const resolve = (body) => submitDecision("tasks/" + state.task.id + "/review/pairwise/", body);
  // The error types ticked under the columns are for the annotations that differ from the picked one (each is fixed
  // to it); those equal to it are approved with it.
  const pick = (a) => resolve({annotation: a.id, error_types: checkedCodes($("pick-error-types"))});

  function onKey(event) {
    if (document.querySelector("dialog[open]")) return;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && state.mode !== "read") { event.preventDefault(); acceptFix(); return; }
    if (state.mode !== "read") {
      if (event.key === "Escape") { event.preventDefault(); cancelFix(); return; }
      if ($("fix-error-types").contains(document.activeElement)) return;  // Space ticks an error type
      if (state.widget && state.widget.handleKey(event)) event.preventDefault();
      return;
    }
    if (["INPUT", "TEXTAREA"].includes(document.activeElement.tagName) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (!state.annotation || $("workspace").hidden) return;
    const key = event.key.toLowerCase();
    if (key === "a") { event.preventDefault(); approve(); }
    else if (key === "r") { event.preventDefault(); openReject(); }
    else if (key === "f") { event.preventDefault(); startFix(); }
    else if (key === "e" && state.annotation.status !== "escalated") { event.preventDefault(); openEscalate(); }
    else if (key === "m" && state.waiting.length >= 2) { event.preventDefault(); startFix(merged(state.waiting.map((x) => x.result))); }
    else if (event.key === "?") { event.preventDefault(); $("help-dialog").showModal(); }
  }
  document.addEventListener("keydown", onKey);
  $("approve").addEventListener("click", approve);
  $("reject").addEventListener("click", () => openReject());
  $("fix").addEventListener("click", () => startFix());
  $("escalate").addEventListener("click", openEscalate);
  $("accept-fix").addEventListener("click", acceptFix);
  $("cancel-fix").addEventListener("click", cancelFix);
  $("merge").addEventListener("click", () => startFix(merged(state.waiting.map((x) => x.result))));
  $("help").addEventListener("click", () => $("help-dialog").showModal());
  document.querySelectorAll("#queue-tabs [data-queue]").forEach((b) => b.addEventListener("click", () => switchQueue(b.dataset.queue)));
  if ($("switch-queue")) $("switch-queue").addEventListener("click", () => switchQueue(otherQueue()));
  loadNext();
})(window);
