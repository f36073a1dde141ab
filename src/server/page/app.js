// dosod web page: picks an image, calls POST /v1/detect, and draws the boxes on a canvas.
//
// Detection is requested once with a low score threshold (REQUEST_SCORE_FLOOR); the score slider
// then filters the returned boxes in the browser, so moving it redraws at once with no request.
// Test hooks: #view[data-boxes] is the number of boxes drawn; #status[data-state] is
// idle | busy | ok | error.
"use strict";

(() => {
  const REQUEST_SCORE_FLOOR = 0.01;
  const API_KEY_STORAGE = "dosod.apiKey";
  const MAX_TABLE_ROWS = 500;
  const MAX_UPSCALE = 2;
  const TIMING_KEYS = ["queue", "decode", "preprocess", "inference", "postprocess"];

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("controls"),
    drop: $("drop"),
    file: $("file"),
    fileName: $("file-name"),
    classes: $("classes"),
    classesHelp: $("classes-help"),
    vocabulary: $("vocabulary"),
    score: $("score"),
    scoreValue: $("score-value"),
    iou: $("iou"),
    maxDet: $("max-det"),
    apiKey: $("apikey"),
    detect: $("detect"),
    status: $("status"),
    stage: $("stage"),
    view: $("view"),
    placeholder: $("placeholder"),
    vocabUsed: $("vocab-used"),
    modelInfo: $("model-info"),
    tbody: document.querySelector("#detections tbody"),
  };

  const state = {
    file: null,        // the File being shown
    bitmap: null,      // its decoded ImageBitmap
    result: null,      // the last successful /v1/detect response for this file
    summary: "",       // timings text of that response
    seq: 0,            // request counter: only the newest response is used
    inflight: null,    // AbortController of the request in flight
    hot: -1,           // index (into result.detections) of the row under the pointer
    stageWidth: 0,
  };

  // ---------- small helpers ----------

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.dataset.state = kind;
  }

  function loadApiKey() {
    try { return localStorage.getItem(API_KEY_STORAGE) || ""; } catch { return ""; }
  }

  function saveApiKey(value) {
    try {
      if (value) localStorage.setItem(API_KEY_STORAGE, value);
      else localStorage.removeItem(API_KEY_STORAGE);
    } catch { /* storage disabled: the key lives in the input only */ }
  }

  function authHeaders() {
    const key = el.apiKey.value.trim();
    return key ? { "x-api-key": key } : {};
  }

  // Turns a non-2xx response into a readable message, preferring the server's `error` field.
  async function errorMessage(resp) {
    let body = "";
    try { body = await resp.text(); } catch { /* ignore */ }
    let message = "";
    let type = "";
    try {
      const json = JSON.parse(body);
      if (json && typeof json.error === "string") message = json.error;
      if (json && typeof json.error_type === "string") type = json.error_type;
    } catch { /* not JSON */ }
    if (!message) message = body.trim().slice(0, 300) || resp.statusText || "request failed";
    const head = `HTTP ${resp.status}${type ? " " + type : ""}`;
    const hint = resp.status === 401 ? " (set the API key under Advanced)" : "";
    return `${head}: ${message}${hint}`;
  }

  async function getJson(path) {
    const resp = await fetch(path, { headers: authHeaders() });
    if (!resp.ok) throw new Error(await errorMessage(resp));
    return resp.json();
  }

  // A distinct, stable colour per class id (golden-angle hue steps).
  function classColour(classId) {
    const hue = (Number(classId) * 137.508 + 200) % 360;
    return `hsl(${hue.toFixed(1)}, 85%, 45%)`;
  }

  function fmt(n, digits) {
    return Number.isFinite(n) ? n.toFixed(digits) : "?";
  }

  function threshold() {
    return Number(el.score.value);
  }

  // Detections at or above the slider's threshold, with their index in the response.
  function visibleDetections() {
    if (!state.result) return [];
    const t = threshold();
    const out = [];
    state.result.detections.forEach((d, i) => { if (d.score >= t) out.push({ d, i }); });
    return out;
  }

  // ---------- drawing ----------

  // Draws the image and the boxes above the threshold; rebuilds the table unless told not to.
  function render({ table = true } = {}) {
    const canvas = el.view;
    if (!state.bitmap) {
      canvas.classList.add("empty");
      canvas.dataset.boxes = "0";
      el.placeholder.hidden = false;
      renderTable([]);
      return;
    }
    canvas.classList.remove("empty");
    el.placeholder.hidden = true;

    const img = state.bitmap;
    const maxW = Math.max(el.stage.clientWidth, 100);
    const maxH = Math.max(window.innerHeight * 0.72, 240);
    const scale = Math.min(maxW / img.width, maxH / img.height, MAX_UPSCALE);
    const cssW = Math.max(1, Math.round(img.width * scale));
    const cssH = Math.max(1, Math.round(img.height * scale));
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);

    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(img, 0, 0, cssW, cssH);

    const visible = visibleDetections();
    // Boxes are in the server's (EXIF-oriented, original) pixel frame.
    const frame = state.result ? state.result.image : null;
    const sx = frame && frame.width ? cssW / frame.width : scale;
    const sy = frame && frame.height ? cssH / frame.height : scale;

    // Lowest scores first, so the strongest boxes and tags end up on top.
    const order = visible.slice().sort((a, b) => a.d.score - b.d.score);
    const hot = order.find((v) => v.i === state.hot);
    if (hot) { order.splice(order.indexOf(hot), 1); order.push(hot); }
    for (const { d, i } of order) drawBox(ctx, d, sx, sy, cssW, cssH, i === state.hot);

    canvas.dataset.boxes = String(visible.length);
    canvas.setAttribute("aria-label",
      `Image ${img.width}×${img.height} with ${visible.length} detected box${visible.length === 1 ? "" : "es"}`);
    if (table) renderTable(visible);
  }

  function drawBox(ctx, d, sx, sy, cssW, cssH, highlighted) {
    const [x1, y1, x2, y2] = d.box;
    const x = x1 * sx;
    const y = y1 * sy;
    const w = Math.max(1, (x2 - x1) * sx);
    const h = Math.max(1, (y2 - y1) * sy);
    const colour = classColour(d.class_id);

    ctx.lineWidth = highlighted ? 4 : 2;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);

    const tag = `${d.label} ${d.score.toFixed(2)}`;
    ctx.font = "600 12px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
    const tw = Math.ceil(ctx.measureText(tag).width) + 8;
    const th = 17;
    let tx = Math.min(Math.max(0, x - ctx.lineWidth / 2), Math.max(0, cssW - tw));
    let ty = y - th;                      // above the box when there is room,
    if (ty < 0) ty = Math.min(y, cssH - th); // else just inside its top edge
    ctx.fillStyle = colour;
    ctx.fillRect(tx, ty, tw, th);
    ctx.fillStyle = "#ffffff";
    ctx.textBaseline = "middle";
    ctx.fillText(tag, tx + 4, ty + th / 2 + 0.5);
  }

  function renderTable(visible) {
    const rows = visible.slice().sort((a, b) => b.d.score - a.d.score).slice(0, MAX_TABLE_ROWS);
    const frag = document.createDocumentFragment();
    rows.forEach(({ d, i }, n) => {
      const tr = document.createElement("tr");
      tr.dataset.index = String(i);
      if (i === state.hot) tr.classList.add("hot");
      const [x1, y1, x2, y2] = d.box;
      const cells = [
        String(n + 1),
        null,
        fmt(d.score, 3),
        `${fmt(x1, 0)}, ${fmt(y1, 0)}, ${fmt(x2, 0)}, ${fmt(y2, 0)}`,
        `${fmt(x2 - x1, 0)}×${fmt(y2 - y1, 0)}`,
      ];
      cells.forEach((text, c) => {
        const td = document.createElement("td");
        if (c === 1) {
          const sw = document.createElement("span");
          sw.className = "swatch";
          sw.style.background = classColour(d.class_id);
          sw.setAttribute("aria-hidden", "true");
          td.append(sw, document.createTextNode(d.label));
        } else {
          td.textContent = text;
        }
        tr.appendChild(td);
      });
      frag.appendChild(tr);
    });
    if (visible.length > rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 5;
      td.className = "muted";
      td.textContent = `… ${visible.length - rows.length} more not listed`;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    el.tbody.replaceChildren(frag);
  }

  function resultStatus() {
    if (!state.result) return;
    const total = state.result.detections.length;
    const shown = visibleDetections().length;
    setStatus(`${shown} of ${total} detection${total === 1 ? "" : "s"} ≥ ${threshold().toFixed(2)}` +
      (state.summary ? ` · ${state.summary}` : ""), "ok");
  }

  // ---------- detection ----------

  function timingsText(t) {
    if (!t || typeof t !== "object") return "";
    const parts = TIMING_KEYS.filter((k) => Number.isFinite(t[k])).map((k) => `${k} ${t[k].toFixed(1)}`);
    const total = Number.isFinite(t.total) ? `${t.total.toFixed(1)} ms` : "";
    if (!total && !parts.length) return "";
    return `total ${total}${parts.length ? ` (${parts.join(", ")})` : ""}`;
  }

  async function detect() {
    if (!state.file) {
      setStatus("Choose an image first.", "error");
      return;
    }
    if (state.inflight) state.inflight.abort();
    const controller = new AbortController();
    state.inflight = controller;
    const seq = ++state.seq;
    const file = state.file;

    const form = new FormData();
    form.append("image", file, file.name || "image");
    const classes = el.classes.value.trim();
    if (classes) form.append("classes", classes);
    else if (el.vocabulary.value) form.append("vocabulary", el.vocabulary.value);
    form.append("score_threshold", String(REQUEST_SCORE_FLOOR));
    if (el.iou.value.trim() !== "") form.append("iou_threshold", el.iou.value.trim());
    if (el.maxDet.value.trim() !== "") form.append("max_detections", el.maxDet.value.trim());

    setStatus("Detecting…", "busy");
    el.stage.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const resp = await fetch("/v1/detect", {
        method: "POST", body: form, headers: authHeaders(), signal: controller.signal,
      });
      if (!resp.ok) throw new Error(await errorMessage(resp));
      const json = await resp.json();
      if (seq !== state.seq || file !== state.file) return; // a newer request or image took over
      if (!json || !Array.isArray(json.detections)) throw new Error("malformed response from server");
      state.result = json;
      state.hot = -1;
      const roundTrip = performance.now() - started;
      const server = timingsText(json.timings_ms);
      state.summary = `${server ? server + " · " : ""}round trip ${roundTrip.toFixed(0)} ms`;
      showVocabulary(json.vocabulary);
      render();
      resultStatus();
    } catch (err) {
      if (controller.signal.aborted || seq !== state.seq) return;
      state.result = null;
      state.summary = "";
      el.vocabUsed.textContent = "";
      render();
      const msg = err instanceof TypeError ? `Network error: ${err.message}` : String(err.message || err);
      setStatus(msg, "error");
    } finally {
      if (seq === state.seq) {
        state.inflight = null;
        el.stage.removeAttribute("aria-busy");
      }
    }
  }

  function showVocabulary(v) {
    if (!v || !Array.isArray(v.classes)) { el.vocabUsed.textContent = ""; return; }
    const name = v.name ? `“${v.name}”` : "ad-hoc";
    const list = v.classes.slice(0, 12).join(", ") + (v.classes.length > 12 ? ", …" : "");
    const hash = v.hash ? ` · ${String(v.hash).slice(0, 12)}` : "";
    el.vocabUsed.textContent = `Vocabulary ${name}, ${v.classes.length} classes${hash}: ${list}`;
  }

  // ---------- image input ----------

  async function setFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      setStatus(`Not an image: ${file.name} (${file.type})`, "error");
      return;
    }
    if (state.inflight) state.inflight.abort();
    state.seq++;
    state.file = file;
    state.result = null;
    state.summary = "";
    state.hot = -1;
    el.vocabUsed.textContent = "";
    el.fileName.textContent = `${file.name || "pasted image"} · ${(file.size / 1024).toFixed(0)} KiB`;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      if (state.file !== file) return;
      if (state.bitmap && state.bitmap.close) state.bitmap.close();
      state.bitmap = null;
      render();
      setStatus(`The browser cannot decode ${file.name || "this image"}.`, "error");
      return;
    }
    if (state.file !== file) { if (bitmap.close) bitmap.close(); return; }
    if (state.bitmap && state.bitmap.close) state.bitmap.close();
    state.bitmap = bitmap;
    render();
    await detect();
  }

  function firstImage(files) {
    for (const f of files || []) if (!f.type || f.type.startsWith("image/")) return f;
    return null;
  }

  // ---------- start-up data ----------

  async function loadVocabularies() {
    try {
      const json = await getJson("/v1/vocabularies");
      const keep = el.vocabulary.value;
      const first = el.vocabulary.options[0];
      const opts = [first];
      for (const v of json.vocabularies || []) {
        const o = document.createElement("option");
        o.value = v.name;
        o.textContent = `${v.name} (${v.classes} class${v.classes === 1 ? "" : "es"}${v.builtin ? ", built-in" : ""})`;
        opts.push(o);
      }
      el.vocabulary.replaceChildren(...opts);
      if ([...el.vocabulary.options].some((o) => o.value === keep)) el.vocabulary.value = keep;
      if (!state.file && el.status.dataset.state === "error") setStatus("Choose an image to start.", "idle");
    } catch (err) {
      if (!state.file) setStatus(`Could not list vocabularies: ${err.message}`, "error");
    }
  }

  async function loadInfo() {
    try {
      const info = await getJson("/v1/info");
      const bits = [];
      if (info.model && info.model.name) bits.push(`Model ${info.model.name}`);
      if (info.model && info.model.precision) bits.push(info.model.precision);
      if (info.execution_provider) bits.push(info.execution_provider);
      if (info.ort_version) bits.push(`ORT ${info.ort_version}`);
      el.modelInfo.textContent = bits.join(" · ");
      const dv = info.default_vocabulary;
      if (dv && Array.isArray(dv.classes)) {
        const hint = document.createElement("span");
        hint.textContent = ` The default vocabulary has ${dv.classes.length} classes.`;
        el.classesHelp.appendChild(hint);
      }
    } catch { /* info is decoration only; errors show on detect */ }
  }

  // ---------- wiring ----------

  el.apiKey.value = loadApiKey();
  el.apiKey.addEventListener("change", () => {
    saveApiKey(el.apiKey.value.trim());
    loadVocabularies();
    loadInfo();
  });

  el.file.addEventListener("change", () => {
    const f = firstImage(el.file.files);
    if (f) setFile(f);
  });

  // Dropping anywhere on the page loads the image; the drop zone shows the hover state.
  let dragDepth = 0;
  window.addEventListener("dragenter", (e) => {
    if (e.dataTransfer && [...e.dataTransfer.types].includes("Files")) {
      dragDepth++;
      el.drop.classList.add("dragover");
    }
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.drop.classList.remove("dragover");
  });
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    el.drop.classList.remove("dragover");
    const f = firstImage(e.dataTransfer && e.dataTransfer.files);
    if (f) setFile(f);
    else setStatus("Drop an image file (JPEG, PNG, WebP or BMP).", "error");
  });

  window.addEventListener("paste", (e) => {
    const items = e.clipboardData ? [...e.clipboardData.items] : [];
    const item = items.find((it) => it.kind === "file" && it.type.startsWith("image/"));
    if (!item) return;
    const blob = item.getAsFile();
    if (!blob) return;
    e.preventDefault();
    const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
    setFile(new File([blob], `pasted.${ext}`, { type: blob.type }));
  });

  el.classes.addEventListener("input", () => {
    if (el.classes.value.trim() && el.vocabulary.value) el.vocabulary.value = "";
  });

  el.vocabulary.addEventListener("change", () => {
    if (el.vocabulary.value) {
      el.classes.value = "";
      if (state.file) detect();
    }
  });

  el.score.addEventListener("input", () => {
    el.scoreValue.textContent = threshold().toFixed(2);
    render();
    resultStatus();
  });

  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    detect();
  });

  // Hovering a table row highlights its box (canvas only; the table is not rebuilt).
  function setHot(i) {
    if (i === state.hot) return;
    state.hot = i;
    for (const tr of el.tbody.rows) tr.classList.toggle("hot", Number(tr.dataset.index) === i);
    render({ table: false });
  }
  el.tbody.addEventListener("pointerover", (e) => {
    const tr = e.target.closest("tr[data-index]");
    setHot(tr ? Number(tr.dataset.index) : -1);
  });
  el.tbody.addEventListener("pointerleave", () => setHot(-1));

  // Redraw when the available width changes (window resize, layout switch).
  const onResize = () => {
    const w = el.stage.clientWidth;
    if (w !== state.stageWidth) { state.stageWidth = w; render(); }
  };
  if ("ResizeObserver" in window) new ResizeObserver(onResize).observe(el.stage);
  window.addEventListener("resize", onResize);

  el.scoreValue.textContent = threshold().toFixed(2);
  render();
  loadVocabularies();
  loadInfo();
})();
