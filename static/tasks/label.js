/* The labeling page: load the next task (one request), label it, submit it (one request) — and never lose work.
 *
 * The draft (result, notes, active time, idempotency key) is kept in localStorage as it changes and restored after
 * a reload or a crash; a submit is retried with the same Idempotency-Key until the server answers. Lead time is
 * active time: from the task shown to submit, minus holds, hidden-tab time and idle stretches.
 */
(function (global) {
  "use strict";
  const LP = global.LP;
  const el = LP.el;
  const t = (s) => (global.gettext ? global.gettext(s) : s);
  const fmt = (s, obj) => (global.interpolate ? global.interpolate(s, obj, true) : s);
  const config = JSON.parse(document.getElementById("label-config").textContent);
  const $ = (id) => document.getElementById(id);

  const state = {assignment: null, task: null, widget: null, committed: null, undo: [], draft: null, submitting: false};

  const uuid = LP.uuid;
  const api = LP.apiClient(config);

  /* --- active time ---------------------------------------------------------------------------------------------- */
  const clock = {
    activeMs: 0, lastInput: Date.now(), running: false, visible: document.visibilityState === "visible",
    start(ms) { this.activeMs = ms || 0; this.lastInput = Date.now(); this.running = true; },
    stop() { this.activeMs = this.total(); this.running = false; },
    // The time since the last input counts while it is not an idle stretch and the tab is visible. Only input
    // (and hiding the tab) moves lastInput: a timer that did would cut an idle stretch into short, counted ones.
    pending() {
      const gap = Date.now() - this.lastInput;
      return this.running && this.visible && gap <= config.idleSeconds * 1000 ? gap : 0;
    },
    input() { this.activeMs = this.total(); this.lastInput = Date.now(); },
    total() { return this.activeMs + this.pending(); },
    seconds() { return Math.round(this.total() / 100) / 10; },
  };
  for (const type of ["keydown", "mousedown", "mousemove", "wheel", "touchstart"]) {
    global.addEventListener(type, () => clock.input(), {passive: true, capture: true});
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") { clock.input(); clock.visible = false; saveDraft(); }
    else { clock.visible = true; clock.lastInput = Date.now(); }   // hidden time is not counted
  });
  setInterval(() => { if (state.assignment) saveDraft(); }, 5000);

  /* --- drafts --------------------------------------------------------------------------------------------------- */
  const draftKey = (assignmentId) => "labelportal:draft:" + config.userId + ":" + assignmentId;
  function loadDraft(assignmentId) {
    try { return JSON.parse(global.localStorage.getItem(draftKey(assignmentId)) || "null"); } catch (e) { return null; }
  }
  function saveDraft() {
    if (!state.assignment || !state.widget) return;
    const draft = Object.assign(state.draft || {}, {
      result: state.widget.getResult(), notes: $("notes").value, activeMs: clock.total(), savedAt: new Date().toISOString(),
    });
    state.draft = draft;
    try { global.localStorage.setItem(draftKey(state.assignment.id), JSON.stringify(draft)); } catch (e) { /* storage full */ }
  }
  function clearDraft() { if (state.assignment) global.localStorage.removeItem(draftKey(state.assignment.id)); }

  /* --- page ------------------------------------------------------------------------------------------------------ */
  function status(message, kind) {
    const box = $("status"); box.textContent = message || ""; box.className = "lp-status " + (kind || "");
  }
  function showErrors(messages) {
    const box = $("errors");
    box.replaceChildren(...(messages || []).map((m) => el("li", {text: m})));
    box.hidden = !messages || !messages.length;
  }

  function onChange() {
    state.undo.push(state.committed);
    if (state.undo.length > 100) state.undo.shift();
    state.committed = state.widget.getResult();
    saveDraft();
  }
  function undo() {
    if (!state.undo.length) { status(t("Nothing to undo.")); return; }
    state.committed = state.undo.pop();
    state.widget.setResult(state.committed);
    saveDraft();
    status(t("Undone."));
  }

  function showRework(rework) {
    const box = $("rework");
    if (!rework) { box.hidden = true; return; }
    box.hidden = false;
    $("rework-comment").textContent = rework.comment || t("(no comment)");
    $("rework-errors").replaceChildren(...(rework.error_types || []).map((e) => el("li", {text: e.name || e.code || e})));
    $("rework-reviewer").textContent = rework.reviewer || "";
  }

  async function loadNext() {
    showErrors([]); status(t("Loading the next task…"));
    let answer;
    try { answer = await api("POST", "projects/" + config.projectId + "/next/", {start: true}); }
    catch (e) { status(t("Connection lost. Retrying in a few seconds…"), "warn"); setTimeout(loadNext, 3000); return; }
    if (answer.status === 204) { showDone(); return; }
    if (answer.status !== 200) { status((answer.data && answer.data.detail) || t("Could not load a task."), "error"); return; }
    show(answer.data);
  }

  function showDone() {
    state.assignment = null;
    $("workspace").hidden = true;
    showRework(null);
    $("done").hidden = false;
    status("");
  }

  function show(payload) {
    state.assignment = payload.assignment; state.task = payload.task;
    $("workspace").hidden = false; $("done").hidden = true;
    // A draft belongs to one round of work on the assignment. Rework brings the same assignment back; a draft left
    // from the round before (its submission went through, but the answer never reached this browser) holds the
    // old result and the old Idempotency-Key, which the server would refuse with the new result.
    const round = payload.rework ? (payload.rework.version || 0) : 0;
    let saved = loadDraft(state.assignment.id);
    if (saved && (saved.round || 0) !== round) saved = null;
    const initial = saved ? saved.result : (payload.rework ? payload.rework.previous_result : null);
    state.draft = saved || {key: uuid(), round};
    $("notes").value = saved ? (saved.notes || "") : ((payload.rework && payload.rework.notes) || "");
    showRework(payload.rework);
    state.widget = LP.createWidget($("widget"), {
      taskType: config.taskType, schema: config.schema, data: state.task.data, result: initial, readOnly: false, onChange,
    });
    state.committed = state.widget.getResult(); state.undo = [];
    clock.start(saved ? saved.activeMs : 0);
    $("task-ref").textContent = fmt(t("Task %(id)s"), {id: state.task.id});
    status(saved ? t("Your draft was restored.") : "", saved ? "ok" : "");
    saveDraft();
    state.widget.focus();
  }

  async function submit() {
    if (!state.assignment || state.submitting) return;
    state.submitting = true; showErrors([]);
    saveDraft();
    // Every retry sends this very request: the same body to the same assignment, whatever the page shows meanwhile.
    const assignmentId = state.assignment.id;
    let key = state.draft.key;
    const body = {result: state.widget.getResult(), notes: $("notes").value, lead_time_seconds: clock.seconds()};
    let delay = 1000, stillProcessing = 0;
    for (;;) {
      status(t("Submitting…"));
      let answer = null;
      try { answer = await api("POST", "assignments/" + assignmentId + "/submit/", body, {"Idempotency-Key": key}); }
      catch (e) { answer = null; }
      if (answer && (answer.status === 201 || answer.status === 200)) {
        // Forget the assignment before the next loads, or the periodic save would write its draft back.
        clearDraft(); state.assignment = null; state.submitting = false; clock.stop();
        status(t("Submitted."), "ok"); loadNext(); return;
      }
      if (answer && answer.status === 400) {
        const errors = Object.values((answer.data && answer.data.errors) || {}).flat();
        showErrors(errors.length ? errors : [answer.data.detail]);
        status(t("The server refused this result; fix it and submit again."), "error");
        state.submitting = false; return;
      }
      if (answer && answer.status === 409 && !(answer.data && answer.data.current)) {
        // A 409 that names no state is the Idempotency-Key check, not a refused transition: the first request with
        // this key is still being processed (a proxy gave up on it, the server did not). Ask again with the same
        // key; if that goes on, take a fresh one (the key may have gone with another body): a fresh key cannot
        // submit twice, since the assignment's state refuses a second submission.
        stillProcessing += 1;
        if (stillProcessing > 5) { key = state.draft.key = uuid(); saveDraft(); stillProcessing = 0; }
        status(fmt(t("The server is still processing your submission; asking again in %(s)s s."), {s: Math.round(delay / 1000)}), "warn");
      } else if (answer && (answer.status === 409 || answer.status === 404 || answer.status === 403)) {
        status((answer.data && answer.data.detail) || t("This task is no longer yours."), "error");
        clearDraft(); state.submitting = false; setTimeout(loadNext, 1500); return;
      } else {
        // No answer (offline) or a server error: try again with the same key; the draft is safe meanwhile.
        status(fmt(t("Connection problem; retrying in %(s)s s. Your work is saved in this browser."), {s: Math.round(delay / 1000)}), "warn");
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }

  // While a submission is on its way the task is neither skipped nor put on hold: its retries must find the
  // assignment as it was, and a skip would throw the submitted work away.
  function submissionPending() {
    if (state.submitting) status(t("Your submission is still on its way; wait until it has gone through."), "warn");
    return state.submitting;
  }

  function openAsk() { if (state.assignment && !submissionPending()) openDialog("ask-dialog"); }

  async function skip() {
    if (!state.assignment || submissionPending()) return;
    const reason = global.prompt(t("Why do you skip this task?"), "");
    if (reason === null) return;
    const answer = await api("POST", "assignments/" + state.assignment.id + "/skip/", {reason});
    if (answer.status === 200) { clearDraft(); state.assignment = null; clock.stop(); loadNext(); }
    else status((answer.data && answer.data.detail) || t("Could not skip."), "error");
  }

  function openDialog(id) { const d = $(id); if (d.showModal) d.showModal(); else d.setAttribute("open", ""); }

  async function ask(event) {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) return;
    saveDraft();
    const answer = await api("POST", "tasks/" + state.task.id + "/clarifications/", {question, confidential: $("confidential").checked});
    $("ask-dialog").close();
    if (answer.status === 201) {
      clock.stop();
      $("question").value = "";
      status(t("Question sent. The task is on hold until a manager answers; you will see the answer on your home page."), "ok");
      state.assignment = null; loadNext();
    } else status((answer.data && answer.data.detail) || t("Could not send the question."), "error");
  }

  function onKey(event) {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    const ctrlEnter = (event.ctrlKey || event.metaKey) && event.key === "Enter";
    const dialog = document.querySelector("dialog[open]");
    if (dialog) {
      // Ctrl+Enter in the question sends the question; it never submits the task behind the dialog.
      if (ctrlEnter && dialog.id === "ask-dialog") { event.preventDefault(); $("ask-form").requestSubmit(); }
      return;
    }
    if (ctrlEnter) { event.preventDefault(); submit(); return; }
    if (typing) return;
    if ((event.ctrlKey || event.metaKey) && (event.key === "z" || event.key === "Z")) { event.preventDefault(); undo(); return; }
    if (event.key === "?") { event.preventDefault(); openDialog("help-dialog"); return; }
    if (LP.altKey(event, "s")) { event.preventDefault(); skip(); return; }
    if (LP.altKey(event, "h")) { event.preventDefault(); openAsk(); return; }
    if (LP.altKey(event, "n")) { event.preventDefault(); $("notes").focus(); return; }
    if (LP.altKey(event, "g")) { event.preventDefault(); $("guideline").toggleAttribute("open"); return; }
    if (state.widget && state.widget.handleKey(event)) event.preventDefault();
  }

  document.addEventListener("keydown", onKey);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("ask").addEventListener("click", openAsk);
  $("ask-form").addEventListener("submit", ask);
  $("help").addEventListener("click", () => openDialog("help-dialog"));
  $("notes").addEventListener("input", saveDraft);
  global.addEventListener("beforeunload", saveDraft);
  loadNext();
})(window);
