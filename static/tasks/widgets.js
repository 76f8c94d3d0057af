/* LabelPortal labeling widgets: one per task type, driven by mouse and keyboard alike.
 *
 * LP.createWidget(root, {taskType, schema, data, result, readOnly, onChange}) returns
 * {getResult(), setResult(r), handleKey(event) -> bool, focus()}. Results follow DESIGN.md:
 * {"label"}, {"labels"}, {"spans": [{start, end, label}]} (code-point offsets, end exclusive),
 * {"boxes": [{x, y, w, h, label}]} (fractions of the image).
 */
(function (global) {
  "use strict";
  const LP = global.LP = global.LP || {};
  const t = (s) => (global.gettext ? global.gettext(s) : s);
  const fmt = (s, obj) => (global.interpolate ? global.interpolate(s, obj, true) : s.replace(/%\((\w+)\)s/g, (m, k) => obj[k]));

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "style") for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of [].concat(children || [])) if (child) node.append(child);
    return node;
  }
  LP.el = el;

  // Alt+letter shortcuts. On a Mac, Option+S makes the key "ß" (and Option+N a dead key): the physical key, in
  // event.code, identifies the shortcut there; event.key still does on layouts that move the letters.
  LP.altKey = (event, letter) => event.altKey && !event.ctrlKey && !event.metaKey
    && (event.code === "Key" + letter.toUpperCase() || (event.key || "").toLowerCase() === letter);

  // Rendering replaces the buttons: give the keyboard focus back to the new twin of the one that had it, or a
  // keyboard user pressing a label with Space or Enter would be sent back to the top of the page.
  function keepFocus(container, render) {
    const active = document.activeElement;
    const id = active && container.contains(active) ? active.getAttribute("data-focus") : null;
    render();
    const twin = id && [...container.querySelectorAll("[data-focus]")].find((node) => node.getAttribute("data-focus") === id);
    if (twin) twin.focus();
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  const labelsOf = (schema) => schema.labels || [];
  const labelByKey = (schema, key) => labelsOf(schema).find((l) => l.hotkey && l.hotkey.toLowerCase() === key.toLowerCase());
  const labelByValue = (schema, value) => labelsOf(schema).find((l) => l.value === value);
  const colorOf = (schema, value) => (labelByValue(schema, value) || {}).color || "#888888";
  const nameOf = (schema, value) => (labelByValue(schema, value) || {}).name || value;

  function textOrImage(data) {
    const wrap = el("div", {class: "lp-item"});
    if (data.image) wrap.append(el("img", {src: data.image, alt: t("Item to label"), class: "lp-item-image"}));
    if (typeof data.text === "string") wrap.append(el("p", {class: "lp-item-text", dir: "auto", text: data.text}));
    return wrap;
  }

  function labelButtons(schema, isPressed, onPick, readOnly) {
    const bar = el("div", {class: "lp-labels", role: "group", "aria-label": t("Labels")});
    for (const label of labelsOf(schema)) {
      const button = el("button", {
        type: "button", class: "lp-label", "data-value": label.value, "data-focus": "label:" + label.value,
        "aria-pressed": String(isPressed(label.value)),
        disabled: readOnly, style: {"--label-color": label.color}, onclick: () => onPick(label.value),
      }, [label.hotkey ? el("kbd", {text: label.hotkey}) : null, el("span", {text: " " + label.name})]);
      bar.append(button);
    }
    return bar;
  }

  /* --- classification and multilabel ------------------------------------------------------------- */
  function choiceWidget(root, options, multiple) {
    const {schema, data, readOnly, onChange} = options;
    let value = multiple ? new Set((options.result && options.result.labels) || []) : ((options.result || {}).label || null);
    root.replaceChildren();
    root.append(textOrImage(data));
    const holder = el("div");
    root.append(holder);

    const pressed = (v) => (multiple ? value.has(v) : value === v);
    function render() {
      keepFocus(holder, () => holder.replaceChildren(labelButtons(schema, pressed, pick, readOnly)));
    }
    function pick(v) {
      if (readOnly) return;
      if (multiple) { const next = new Set(value); next.has(v) ? next.delete(v) : next.add(v); value = next; }
      else value = v;
      render();
      onChange && onChange();
    }
    render();
    return {
      getResult: () => (multiple ? {labels: labelsOf(schema).map((l) => l.value).filter((v) => value.has(v))} : (value === null ? {} : {label: value})),
      setResult: (r) => { value = multiple ? new Set((r && r.labels) || []) : ((r || {}).label || null); render(); },
      handleKey(event) {
        const label = labelByKey(schema, event.key);
        if (label && !event.ctrlKey && !event.metaKey && !event.altKey) { pick(label.value); return true; }
        return false;
      },
      focus() { const b = holder.querySelector("button"); b && b.focus(); },
    };
  }

  /* --- text spans ------------------------------------------------------------------------------------ */
  function spansWidget(root, options) {
    const {schema, data, readOnly, onChange} = options;
    const chars = Array.from(data.text || "");          // code points: offsets match Python's str indices
    let spans = ((options.result || {}).spans || []).map((s) => ({...s}));
    let selected = -1;                                     // index of the selected span
    let cursor = null;                                     // keyboard selection {start, end} in code points
    const tokens = [];
    for (let i = 0; i < chars.length;) {
      if (/\s/u.test(chars[i])) { i += 1; continue; }
      let j = i;
      while (j < chars.length && !/\s/u.test(chars[j])) j += 1;
      tokens.push({start: i, end: j});
      i = j;
    }

    root.replaceChildren();
    const textBox = el("div", {class: "lp-span-text", dir: "auto", tabindex: "0", role: "textbox", "aria-readonly": "true",
      "aria-label": t("Text: select words with the mouse, or with Shift and the arrow keys, then press a label key")});
    const info = el("p", {class: "lp-span-info", "aria-live": "polite"});
    const list = el("ul", {class: "lp-span-list", "aria-label": t("Tagged spans")});
    root.append(labelButtons(schema, () => false, (v) => tagSelection(v), readOnly), textBox, info, list);

    function boundaries() {
      const points = new Set([0, chars.length]);
      for (const s of spans) { points.add(s.start); points.add(s.end); }
      if (cursor) { points.add(cursor.start); points.add(cursor.end); }
      return [...points].filter((p) => p >= 0 && p <= chars.length).sort((a, b) => a - b);
    }

    function render() {
      textBox.replaceChildren();
      const points = boundaries();
      for (let k = 0; k < points.length - 1; k += 1) {
        const a = points[k], b = points[k + 1];
        const covering = spans.map((s, i) => ({s, i})).filter(({s}) => s.start <= a && s.end >= b);
        const seg = el("span", {"data-start": a, "data-end": b}, chars.slice(a, b).join(""));
        if (covering.length) {
          const top = covering.reduce((m, c) => ((c.s.end - c.s.start) < (m.s.end - m.s.start) ? c : m));
          seg.className = "lp-span" + (top.i === selected ? " selected" : "") + (covering.length > 1 ? " nested" : "");
          seg.style.setProperty("--label-color", colorOf(schema, top.s.label));
          seg.title = covering.map(({s}) => nameOf(schema, s.label)).join(", ");
          seg.dataset.span = top.i;
        }
        if (cursor && a >= cursor.start && b <= cursor.end) seg.classList.add("lp-cursor");
        textBox.append(seg);
      }
      list.replaceChildren();
      spans.forEach((s, i) => {
        const item = el("li", {class: i === selected ? "selected" : ""}, [
          el("button", {type: "button", class: "lp-chip", style: {"--label-color": colorOf(schema, s.label)},
            onclick: () => select(i), "aria-pressed": String(i === selected)},
          [el("b", {text: nameOf(schema, s.label)}), " “" + chars.slice(s.start, s.end).join("") + "”"]),
          readOnly ? null : el("button", {type: "button", class: "lp-remove", "aria-label": t("Remove span"),
            onclick: () => remove(i), text: "×"}),
        ]);
        list.append(item);
      });
      if (selected >= 0) {
        const s = spans[selected];
        info.textContent = fmt(t("Selected: “%(text)s” (%(label)s). Press a label key to relabel it, Delete to remove it."),
          {text: chars.slice(s.start, s.end).join(""), label: nameOf(schema, s.label)});
      } else if (cursor) {
        info.textContent = fmt(t("Selection: “%(text)s”. Press a label key to tag it."), {text: chars.slice(cursor.start, cursor.end).join("")});
      } else info.textContent = "";
    }

    function codePointOffset(node, offset) {
      // DOM offsets count UTF-16 units; spans count code points like Python does.
      if (!textBox.contains(node)) {
        // The drag ended outside the text (right of its end, below it, above it): the nearer end of the text.
        if (node.contains(textBox)) {
          const at = [...node.childNodes].findIndex((child) => child.contains(textBox));
          return offset > at ? chars.length : 0;
        }
        return textBox.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING ? chars.length : 0;
      }
      if (node === textBox) {
        const segment = textBox.childNodes[offset];
        return segment ? Number(segment.dataset.start) : chars.length;
      }
      const segment = node.nodeType === Node.TEXT_NODE ? node.parentElement : node;
      if (!segment || !segment.dataset || segment.dataset.start === undefined) return null;
      const base = Number(segment.dataset.start);
      if (node.nodeType !== Node.TEXT_NODE) return offset === 0 ? base : Number(segment.dataset.end);
      return base + Array.from(node.textContent.slice(0, offset)).length;
    }

    function mouseSelection() {
      const selection = global.getSelection();
      // At least one end in the text: a selection elsewhere on the page (the guideline) is not a span.
      if (!selection || selection.isCollapsed || !(textBox.contains(selection.anchorNode) || textBox.contains(selection.focusNode))) return null;
      let a = codePointOffset(selection.anchorNode, selection.anchorOffset);
      let b = codePointOffset(selection.focusNode, selection.focusOffset);
      if (a === null || b === null) return null;
      if (a > b) [a, b] = [b, a];
      while (a < b && /\s/u.test(chars[a])) a += 1;        // trim whitespace at the edges
      while (b > a && /\s/u.test(chars[b - 1])) b -= 1;
      return a < b ? {start: a, end: b} : null;
    }

    // A drag that starts in the text may end anywhere on the page: listen for that one mouseup on the document.
    textBox.addEventListener("mousedown", () => {
      document.addEventListener("mouseup", () => {
        const range = mouseSelection();
        if (range) { cursor = range; selected = -1; render(); }
      }, {once: true});
    });
    textBox.addEventListener("click", (event) => {
      const seg = event.target.closest("[data-span]");
      if (seg && (global.getSelection() || {}).isCollapsed !== false) select(Number(seg.dataset.span));
    });

    function select(i) { selected = selected === i ? -1 : i; cursor = null; render(); }
    function remove(i) {
      if (readOnly) return;
      spans.splice(i, 1); selected = -1; render(); onChange && onChange();
    }
    function tagSelection(value) {
      if (readOnly) return;
      // Spans with the same label may not overlap (a sanity rule of the server): not when tagging, not when relabelling.
      const clashes = (range, except) => spans.some((s, i) => i !== except && s.label === value && s.start < range.end && range.start < s.end);
      if (selected >= 0) {
        if (clashes(spans[selected], selected)) { info.textContent = t("That overlaps a span with the same label."); return; }
        spans[selected] = {...spans[selected], label: value}; render(); onChange && onChange(); return;
      }
      const range = cursor || mouseSelection();
      if (!range) { info.textContent = t("Select some text first."); return; }
      if (clashes(range, -1)) { info.textContent = t("That overlaps a span with the same label."); return; }
      spans.push({start: range.start, end: range.end, label: value});
      spans.sort((x, y) => x.start - y.start || x.end - y.end);
      cursor = null;
      const sel = global.getSelection(); sel && sel.removeAllRanges();
      render(); onChange && onChange();
    }
    function moveCursor(direction, extend) {
      if (!tokens.length) return;
      // The selection may come from the mouse and start or end inside a word: find words by position, not by an
      // exact boundary, like a text editor's Ctrl+arrow does.
      const after = (pos) => tokens.find((tk) => tk.end > pos);                       // the word ending after pos
      const before = (pos) => [...tokens].reverse().find((tk) => tk.start < pos);     // the word starting before pos
      if (!cursor) { const first = direction > 0 ? tokens[0] : tokens[tokens.length - 1]; cursor = {start: first.start, end: first.end}; }
      else if (extend) {
        // Shift+arrow moves the end by a word, never before the first word of the selection.
        const word = direction > 0 ? after(cursor.end)
          : [...tokens].reverse().find((tk) => tk.end < cursor.end && tk.end > cursor.start);
        if (word) cursor = {start: cursor.start, end: word.end};
      } else {
        const word = (direction > 0 ? after(cursor.end) : before(cursor.start)) || (direction > 0 ? tokens[tokens.length - 1] : tokens[0]);
        cursor = {start: word.start, end: word.end};
      }
      selected = -1; render();
    }
    render();
    return {
      getResult: () => ({spans: spans.map((s) => ({start: s.start, end: s.end, label: s.label}))}),
      setResult: (r) => { spans = ((r || {}).spans || []).map((s) => ({...s})); selected = -1; render(); },
      handleKey(event) {
        if (event.ctrlKey || event.metaKey || event.altKey) return false;
        // Reading order is logical: with right-to-left text the arrow keys follow the reading direction.
        const rtl = getComputedStyle(textBox).direction === "rtl";
        if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          moveCursor((event.key === "ArrowRight") !== rtl ? 1 : -1, event.shiftKey); return true;
        }
        if ((event.key === "Delete" || event.key === "Backspace") && selected >= 0) { remove(selected); return true; }
        if (event.key === "Escape") { selected = -1; cursor = null; render(); return true; }
        const label = labelByKey(schema, event.key);
        if (label) { tagSelection(label.value); return true; }
        return false;
      },
      focus() { textBox.focus(); },
    };
  }

  /* --- bounding boxes -------------------------------------------------------------------------------- */
  function boxesWidget(root, options) {
    const {schema, data, readOnly, onChange} = options;
    let boxes = ((options.result || {}).boxes || []).map((b) => ({...b}));
    let selected = -1;
    let current = (labelsOf(schema)[0] || {}).value;
    let zoom = 1;
    const width = data.width || 640, height = data.height || 480;

    root.replaceChildren();
    const toolbar = el("div", {class: "lp-box-toolbar"});
    const stage = el("div", {class: "lp-box-stage", tabindex: "0", role: "application",
      "aria-label": t("Image: drag to draw a box; arrows move the selected box, Shift+arrows resize it")});
    const canvas = el("div", {class: "lp-box-canvas"});
    const image = el("img", {src: data.image, alt: t("Image to annotate"), draggable: "false"});
    const overlay = svg("svg", {viewBox: "0 0 1 1", preserveAspectRatio: "none", class: "lp-box-overlay"});
    const info = el("p", {class: "lp-span-info", "aria-live": "polite"});
    const list = el("ul", {class: "lp-span-list", "aria-label": t("Boxes")});
    canvas.append(image, overlay); stage.append(canvas);
    root.append(toolbar, stage, info, list);

    function renderToolbar() {
      keepFocus(toolbar, () => toolbar.replaceChildren(
        labelButtons(schema, (v) => v === current, (v) => setLabel(v), readOnly),
        el("span", {class: "lp-zoom"}, [
          el("button", {type: "button", onclick: () => setZoom(zoom / 1.25), "aria-label": t("Zoom out"), text: "−", "data-focus": "zoom-out"}),
          el("output", {text: Math.round(zoom * 100) + "%"}),
          el("button", {type: "button", onclick: () => setZoom(zoom * 1.25), "aria-label": t("Zoom in"), text: "+", "data-focus": "zoom-in"}),
          readOnly ? null : el("button", {type: "button", onclick: () => addCentered(), text: t("Add box"), "data-focus": "add-box"}),
        ]),
      ));
    }
    function setZoom(z) { zoom = Math.min(Math.max(z, 0.25), 8); layout(); renderToolbar(); }
    function layout() { canvas.style.width = (width * zoom) + "px"; canvas.style.height = (height * zoom) + "px"; render(); }

    function render() {
      overlay.replaceChildren();
      const px = 1 / (width * zoom);                       // one screen pixel in fractions
      const py = 1 / (height * zoom);
      boxes.forEach((b, i) => {
        const color = colorOf(schema, b.label);
        const rect = svg("rect", {x: b.x, y: b.y, width: b.w, height: b.h, fill: color, "fill-opacity": i === selected ? 0.25 : 0.12,
          stroke: color, "stroke-width": i === selected ? 3 : 2, "vector-effect": "non-scaling-stroke", "data-box": i, class: "lp-box"});
        const title = svg("title", {}); title.textContent = nameOf(schema, b.label); rect.append(title);
        overlay.append(rect);
        if (i === selected && !readOnly) {
          for (const [cx, cy, corner] of [[b.x, b.y, "nw"], [b.x + b.w, b.y, "ne"], [b.x, b.y + b.h, "sw"], [b.x + b.w, b.y + b.h, "se"]]) {
            overlay.append(svg("rect", {x: cx - 4 * px, y: cy - 4 * py, width: 8 * px, height: 8 * py, fill: "#fff", stroke: color,
              "vector-effect": "non-scaling-stroke", "data-handle": corner, "data-box": i, class: "lp-handle"}));
          }
        }
      });
      list.replaceChildren();
      boxes.forEach((b, i) => list.append(el("li", {class: i === selected ? "selected" : ""}, [
        el("button", {type: "button", class: "lp-chip", style: {"--label-color": colorOf(schema, b.label)}, "aria-pressed": String(i === selected),
          onclick: () => { selected = selected === i ? -1 : i; render(); }},
        [el("b", {text: nameOf(schema, b.label)}), fmt(t(" at %(x)s%, %(y)s% (%(w)s × %(h)s%)"),
          {x: Math.round(b.x * 100), y: Math.round(b.y * 100), w: Math.round(b.w * 100), h: Math.round(b.h * 100)})]),
        readOnly ? null : el("button", {type: "button", class: "lp-remove", "aria-label": t("Remove box"), onclick: () => remove(i), text: "×"}),
      ])));
      info.textContent = selected >= 0
        ? fmt(t("Box %(n)s selected (%(label)s): a label key relabels it, arrows move it, Shift+arrows resize it, Delete removes it."), {n: selected + 1, label: nameOf(schema, boxes[selected].label)})
        : fmt(t("New boxes get the label %(label)s."), {label: nameOf(schema, current)});
    }

    const clamp = (v) => Math.min(Math.max(v, 0), 1);
    function normalise(b) {
      let {x, y, w, h} = b;
      if (w < 0) { x += w; w = -w; }
      if (h < 0) { y += h; h = -h; }
      x = clamp(x); y = clamp(y); w = Math.min(w, 1 - x); h = Math.min(h, 1 - y);
      const r = (v) => Math.round(v * 1e5) / 1e5;
      return {x: r(x), y: r(y), w: r(w), h: r(h), label: b.label};
    }
    function point(event) {
      const box = overlay.getBoundingClientRect();
      return {x: clamp((event.clientX - box.left) / box.width), y: clamp((event.clientY - box.top) / box.height)};
    }
    // The window listens for the drag only while there is one: listeners left on the window would keep every
    // earlier task's widget (its image, its boxes) alive for the whole session.
    let drag = null;
    overlay.addEventListener("mousedown", (event) => {
      if (readOnly || event.button !== 0) return;
      event.preventDefault(); stage.focus();
      const p = point(event);
      const target = event.target;
      if (target.dataset.handle) {
        const i = Number(target.dataset.box); const b = boxes[i];
        const fixed = {nw: [b.x + b.w, b.y + b.h], ne: [b.x, b.y + b.h], sw: [b.x + b.w, b.y], se: [b.x, b.y]}[target.dataset.handle];
        drag = {mode: "resize", i, fx: fixed[0], fy: fixed[1], before: snapshot()};
      } else if (target.dataset.box !== undefined) {
        const i = Number(target.dataset.box);
        selected = i; drag = {mode: "move", i, dx: p.x - boxes[i].x, dy: p.y - boxes[i].y, before: snapshot()};
        render();
      } else {
        boxes.push({x: p.x, y: p.y, w: 0, h: 0, label: current});
        selected = boxes.length - 1; drag = {mode: "draw", i: selected, ox: p.x, oy: p.y, before: snapshot()};
      }
      global.addEventListener("mousemove", dragMove);
      global.addEventListener("mouseup", dragEnd);
    });
    function dragMove(event) {
      if (!drag) return;
      const p = point(event); const b = boxes[drag.i];
      if (drag.mode === "move") { b.x = clamp(Math.min(p.x - drag.dx, 1 - b.w)); b.y = clamp(Math.min(p.y - drag.dy, 1 - b.h)); }
      else if (drag.mode === "resize") Object.assign(b, normalise({x: drag.fx, y: drag.fy, w: p.x - drag.fx, h: p.y - drag.fy, label: b.label}));
      else Object.assign(b, {x: drag.ox, y: drag.oy, w: p.x - drag.ox, h: p.y - drag.oy});
      render();
    }
    function dragEnd() {
      global.removeEventListener("mousemove", dragMove);
      global.removeEventListener("mouseup", dragEnd);
      if (!drag) return;
      const d = drag; drag = null;
      boxes[d.i] = normalise(boxes[d.i]);
      if (boxes[d.i].w < 0.003 || boxes[d.i].h < 0.003) {       // a click, not a drag: no box
        if (d.mode === "draw") { boxes.splice(d.i, 1); selected = -1; }
        render(); return;
      }
      render();
      // A click that only selected a box changes nothing: no undo step for it.
      if (JSON.stringify(snapshot()) !== JSON.stringify(d.before)) onChange && onChange(d.before);
    }

    function snapshot() { return {boxes: boxes.map((b) => ({...b}))}; }
    function setLabel(v) {
      current = v;
      if (selected >= 0 && !readOnly) { boxes[selected].label = v; onChange && onChange(); }
      renderToolbar(); render();
    }
    function remove(i) { boxes.splice(i, 1); selected = -1; render(); onChange && onChange(); }
    function addCentered() {
      boxes.push({x: 0.4, y: 0.4, w: 0.2, h: 0.2, label: current}); selected = boxes.length - 1; render(); onChange && onChange();
    }
    function nudge(dx, dy, resize) {
      const b = boxes[selected];
      if (resize) Object.assign(b, normalise({x: b.x, y: b.y, w: Math.max(b.w + dx, 0.005), h: Math.max(b.h + dy, 0.005), label: b.label}));
      else { b.x = clamp(Math.min(b.x + dx, 1 - b.w)); b.y = clamp(Math.min(b.y + dy, 1 - b.h)); }
      render(); onChange && onChange();
    }
    renderToolbar(); layout();
    return {
      getResult: () => ({boxes: boxes.map((b) => ({x: b.x, y: b.y, w: b.w, h: b.h, label: b.label}))}),
      setResult: (r) => { boxes = ((r || {}).boxes || []).map((b) => ({...b})); selected = -1; render(); },
      handleKey(event) {
        if (event.ctrlKey || event.metaKey) return false;
        if (LP.altKey(event, "b")) { if (!readOnly) addCentered(); return true; }
        if (event.altKey) return false;
        const steps = {ArrowLeft: [-0.01, 0], ArrowRight: [0.01, 0], ArrowUp: [0, -0.01], ArrowDown: [0, 0.01]};
        if (steps[event.key] && selected >= 0 && !readOnly) { nudge(...steps[event.key], event.shiftKey); return true; }
        if (event.key === "Tab" && boxes.length && document.activeElement === stage) {
          selected = (selected + (event.shiftKey ? boxes.length - 1 : 1) + boxes.length) % boxes.length; render(); return true;
        }
        if ((event.key === "Delete" || event.key === "Backspace") && selected >= 0 && !readOnly) { remove(selected); return true; }
        if (event.key === "+" || event.key === "=") { setZoom(zoom * 1.25); return true; }
        if (event.key === "-") { setZoom(zoom / 1.25); return true; }
        if (event.key === "Escape") { selected = -1; render(); return true; }
        const label = labelByKey(schema, event.key);
        if (label) { setLabel(label.value); return true; }
        return false;
      },
      focus() { stage.focus(); },
    };
  }

  /* --- shared by the labeling and review pages ---------------------------------------------------------------- */
  LP.uuid = function () {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    return Array.from(global.crypto.getRandomValues(new Uint8Array(16)), (x) => x.toString(16).padStart(2, "0")).join("");
  };

  /* A JSON client of the API for a page: LP.apiClient({apiBase, csrfToken}) → api(method, path, body, headers)
   * resolving to {status, data}; network failures reject (the callers retry). */
  LP.apiClient = function (config) {
    return async function api(method, path, body, headers) {
      const response = await fetch(config.apiBase + path, {
        method, credentials: "same-origin",
        headers: Object.assign({"Content-Type": "application/json", "X-CSRFToken": config.csrfToken, "Accept": "application/json"}, headers || {}),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let data = null;
      if (response.status !== 204) { try { data = await response.json(); } catch (e) { data = null; } }
      return {status: response.status, data};
    };
  };

  LP.createWidget = function (root, options) {
    switch (options.taskType) {
      case "classification": return choiceWidget(root, options, false);
      case "multilabel": return choiceWidget(root, options, true);
      case "text_spans": return spansWidget(root, options);
      case "bounding_boxes": return boxesWidget(root, options);
      default: throw new Error("Unknown task type " + options.taskType);
    }
  };
})(window);
