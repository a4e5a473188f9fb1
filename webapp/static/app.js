// The editor page: hint points on the lightness image, the colorization beside it (docs/app.md).
// Rendering: one request in flight at a time; an edit made meanwhile waits and only the newest
// state is sent next (older states are superseded, never queued). While the user edits, a quick
// render at the server's --preview_size; once they pause for PAUSE_MS, the full render, which is
// colorize.py's result. Responses carry the state's version; one older than the shown one is dropped.
"use strict";

const PAUSE_MS = 300;
const SUGGESTIONS = 8;
const $ = (id) => document.getElementById(id);

const state = {
  config: null, image: null, name: "image", hints: [], selected: -1, history: [],
  version: 0, shown: -1, shownFull: false, lastEdit: 0, editTimes: {}, inflight: null, pauseTimer: null,
  resultBlob: null, grayImg: null, lightness: null, suggestToken: 0,
};

// ---- colour conversions (util/color.py's constants) for drawing the gamut -------------------
const WHITE = [0.95047, 1.0, 1.08883];
function labToRgb(L, a, b) {  // sRGB, not clipped: a channel outside [0, 1] is out of gamut
  const fy = (L + 16) / 116, f = [fy + a / 500, fy, fy - b / 200];
  const [X, Y, Z] = f.map((v, i) => WHITE[i] * (v > 0.2068966 ? v ** 3 : (v - 16 / 116) / 7.787));
  const lin = [3.24048134 * X - 1.53715152 * Y - 0.49853633 * Z,
               -0.96925495 * X + 1.87599 * Y + 0.04155593 * Z,
               0.05564664 * X - 0.20404134 * Y + 1.05731107 * Z];
  return lin.map((v) => (v > 0.0031308 ? 1.055 * v ** (1 / 2.4) - 0.055 : 12.92 * v));
}
function rgbToLab([r, g, b]) {  // 0..255 sRGB -> [L, a, b]
  const lin = [r, g, b].map((v) => { v /= 255; return v > 0.04045 ? ((v + 0.055) / 1.055) ** 2.4 : v / 12.92; });
  const xyz = [0.412453 * lin[0] + 0.357580 * lin[1] + 0.180423 * lin[2],
               0.212671 * lin[0] + 0.715160 * lin[1] + 0.072169 * lin[2],
               0.019334 * lin[0] + 0.119193 * lin[1] + 0.950227 * lin[2]];
  const f = xyz.map((v, i) => { const t = v / WHITE[i]; return t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116; });
  return [116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])];
}
const hex = (rgb) => "#" + rgb.map((v) => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, "0")).join("");
const unhex = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));

// ---- talking to the server ----------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}
const postJson = (path, obj, signal) => api(path, {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(obj), signal});

function showError(message) { $("error").textContent = message ? "error: " + message : ""; }

// ---- images ------------------------------------------------------------------------------------------
async function openImage(info, name) {
  document.body.dataset.state = "loading";
  if (state.inflight) state.inflight.controller.abort();
  Object.assign(state, {image: info, name, hints: [], selected: -1, history: [], shown: -1, shownFull: false,
                        resultBlob: null, lightness: null});
  const gray = new Image();
  gray.src = `/api/images/${info.id}/gray.png`;
  await gray.decode();
  state.grayImg = gray;
  const canvas = $("input");
  canvas.width = info.width;
  canvas.height = info.height;
  $("original").src = `/api/images/${info.id}/original.png`;
  $("show-original").disabled = !info.color;
  $("show-original").checked = false;
  showOriginal();
  showError("");
  state.lastEdit = -Infinity;  // nothing to preview: the automatic colorization at full size
  state.version += 1;
  state.editTimes[state.version] = performance.now();
  draw();
  selectPoint(-1);
  pump();
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  try {
    const info = await (await api("/api/images", {method: "POST", body: form})).json();
    await openImage(info, file.name.replace(/\.[^.]*$/, ""));
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

async function openFolderImage(path) {
  try {
    const info = await (await postJson("/api/folder/open", {path})).json();
    await openImage(info, path.replace(/^.*\//, "").replace(/\.[^.]*$/, ""));
  } catch (e) {
    showError(`${path}: ${e.message}`);
  }
}

// ---- rendering ---------------------------------------------------------------------------------------
function edited() {
  state.version += 1;
  state.lastEdit = performance.now();
  state.editTimes[state.version] = state.lastEdit;
  clearTimeout(state.pauseTimer);
  state.pauseTimer = setTimeout(pump, PAUSE_MS);
  draw();
  pump();
}

function pump() {
  if (state.inflight || !state.image) return;
  const current = state.shown === state.version;
  if (current && state.shownFull) { document.body.dataset.state = "idle"; return; }
  const paused = performance.now() - state.lastEdit >= PAUSE_MS - 5;
  if (current && !paused) return;  // the preview is on screen; the full render comes at the pause
  render(state.version, paused || !state.config.preview_size);
}

async function render(version, full) {
  const controller = new AbortController();
  const image = state.image;
  state.inflight = {version, controller};
  document.body.dataset.state = "busy";
  try {
    const response = await postJson("/api/colorize", {id: image.id, hints: state.hints, preview: !full},
                                     controller.signal);
    const blob = await response.blob();
    const newer = version > state.shown || (version === state.shown && full && !state.shownFull);
    if (image === state.image && newer) {
      showResult(blob, version, full, response.headers);
    }
  } catch (e) {
    if (e.name !== "AbortError") { showError(e.message); state.shown = version; state.shownFull = true; }
  } finally {
    state.inflight = null;
    pump();
  }
}

function showResult(blob, version, full, headers) {
  const img = $("result");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(blob);
  img.dataset.version = version;
  img.dataset.full = full;
  Object.assign(state, {shown: version, shownFull: full});
  if (full) state.resultBlob = blob;
  const ms = performance.now() - state.editTimes[version];
  $("latency").textContent = `${full ? "full" : "preview"} ${headers.get("X-Network")}: ` +
      `${Math.round(ms)} ms from the edit to the result (server ${Math.round(+headers.get("X-Compute-Ms"))} ms)`;
  showError("");
}

// ---- the input canvas and the hint points -----------------------------------------------------------
function draw() {
  const canvas = $("input"), ctx = canvas.getContext("2d");
  if (!state.grayImg) return;
  ctx.drawImage(state.grayImg, 0, 0);
  const scale = canvas.width / (canvas.clientWidth || canvas.width);
  const side = Math.max(3, 10 * scale);
  state.hints.forEach((h, i) => {
    ctx.fillStyle = h.color;
    ctx.fillRect(h.x + 0.5 - side / 2, h.y + 0.5 - side / 2, side, side);
    ctx.lineWidth = (i === state.selected ? 3 : 1) * scale;
    ctx.strokeStyle = i === state.selected ? "#fff" : "#000";
    ctx.strokeRect(h.x + 0.5 - side / 2, h.y + 0.5 - side / 2, side, side);
  });
}

function eventPixel(event) {
  const canvas = $("input"), box = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - box.left) * canvas.width / box.width);
  const y = Math.floor((event.clientY - box.top) * canvas.height / box.height);
  return [Math.min(canvas.width - 1, Math.max(0, x)), Math.min(canvas.height - 1, Math.max(0, y))];
}

function hitPoint([x, y]) {
  const canvas = $("input"), reach = 8 * canvas.width / (canvas.clientWidth || canvas.width);
  for (let i = state.hints.length - 1; i >= 0; i--) {
    if (Math.abs(state.hints[i].x - x) <= reach && Math.abs(state.hints[i].y - y) <= reach) return i;
  }
  return -1;
}

function remember() { state.history.push(JSON.stringify(state.hints)); }

function resultColorAt(x, y) {
  const img = $("result");
  if (!img.naturalWidth) return "#808080";
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, x * img.naturalWidth / state.image.width, y * img.naturalHeight / state.image.height,
                1, 1, 0, 0, 1, 1);
  return hex(Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)));
}

function onMouseDown(event) {
  if (!state.image || event.button !== 0) return;
  const point = eventPixel(event);
  let index = hitPoint(point), before = JSON.stringify(state.hints);
  if (index < 0) {
    remember();
    before = null;
    const size = Math.min(9, Math.max(1, parseInt($("patch").value, 10) || 1));
    state.hints.push({x: point[0], y: point[1], color: resultColorAt(point[0], point[1]), size});
    index = state.hints.length - 1;
    edited();
  }
  selectPoint(index);
  let moved = false;
  const move = (e) => {
    const [x, y] = eventPixel(e), h = state.hints[index];
    if (x === h.x && y === h.y) return;
    if (before !== null) { state.history.push(before); before = null; }  // the first move is the undo step
    Object.assign(h, {x, y});
    moved = true;
    edited();
  };
  const up = () => {
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
    if (moved) selectPoint(index);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
}

function deletePoint(index) {
  if (index < 0) return;
  remember();
  state.hints.splice(index, 1);
  selectPoint(-1);
  edited();
}

function undo() {
  if (!state.history.length) return;
  state.hints = JSON.parse(state.history.pop());
  selectPoint(-1);
  edited();
}

function clearAll() {
  if (!state.hints.length) return;
  remember();
  state.hints = [];
  selectPoint(-1);
  edited();
}

// ---- the selected point: gamut, suggestions, picker -----------------------------------------------
function setColor(color) {
  const h = state.hints[state.selected];
  if (!h || h.color === color) return;
  remember();
  h.color = color;
  $("picker").value = color;
  drawGamut();
  edited();
}

async function selectPoint(index) {
  state.selected = index;
  draw();
  const h = state.hints[index], box = $("suggestions");
  box.innerHTML = "";
  state.lightness = null;
  drawGamut();
  if (!h) { $("selected-info").textContent = "none: click on the input"; return; }
  $("selected-info").textContent = `(${h.x}, ${h.y}), patch ${h.size}`;
  $("picker").value = h.color;
  $("patch").value = h.size;
  const token = ++state.suggestToken;
  const others = state.hints.filter((_, i) => i !== index);
  try {
    const answer = await (await postJson("/api/suggest", {id: state.image.id, x: h.x, y: h.y, hints: others,
                                                          k: SUGGESTIONS})).json();
    if (token !== state.suggestToken) return;  // another point was selected meanwhile
    state.lightness = answer.L;
    drawGamut();
    answer.colors.forEach((color, rank) => {
      const button = document.createElement("button");
      button.style.background = color;
      button.title = `${color} (suggestion ${rank + 1})`;
      button.dataset.color = color;
      button.addEventListener("click", () => setColor(color));
      box.appendChild(button);
    });
  } catch (e) {
    showError(e.message);
  }
}

function drawGamut() {
  const canvas = $("gamut"), ctx = canvas.getContext("2d"), n = canvas.width;
  ctx.clearRect(0, 0, n, n);
  if (state.lightness === null) return;
  const pixels = ctx.createImageData(n, n);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      const rgb = labToRgb(state.lightness, i - 110, 110 - j);
      if (rgb.some((v) => v < -1e-4 || v > 1 + 1e-4)) continue;  // out of gamut: not offered
      pixels.data.set([...rgb.map((v) => 255 * v), 255], 4 * (j * n + i));
    }
  }
  ctx.putImageData(pixels, 0, 0);
  const h = state.hints[state.selected];
  if (h) {
    const [, a, b] = rgbToLab(unhex(h.color));
    ctx.strokeStyle = "#000";
    ctx.strokeRect(a + 110 - 4, 110 - b - 4, 8, 8);
  }
}

function onGamutClick(event) {
  if (state.lightness === null) return;
  const box = $("gamut").getBoundingClientRect();
  const a = (event.clientX - box.left) * 221 / box.width - 110, b = 110 - (event.clientY - box.top) * 221 / box.height;
  const rgb = labToRgb(state.lightness, a, b);
  if (rgb.some((v) => v < -1e-4 || v > 1 + 1e-4)) return;
  setColor(hex(rgb.map((v) => 255 * v)));
}

// ---- files: download, hints JSON -------------------------------------------------------------------
function saveBlob(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function download() {
  if (!state.image) return;
  let blob = state.shown === state.version && state.shownFull ? state.resultBlob : null;
  try {
    if (!blob) blob = await (await postJson("/api/colorize", {id: state.image.id, hints: state.hints})).blob();
    saveBlob(blob, `${state.name}_color.png`);
  } catch (e) {
    showError(e.message);
  }
}

function saveHints() {
  const hints = state.hints.map(({x, y, color, size}) => ({x, y, color, size}));
  saveBlob(new Blob([JSON.stringify(hints, null, 1) + "\n"], {type: "application/json"}), `${state.name}_hints.json`);
}

async function loadHints(file) {
  try {
    let hints = JSON.parse(await file.text());
    if (hints && !Array.isArray(hints)) hints = hints.hints;
    if (!Array.isArray(hints)) throw new Error('expected a list of hints or {"hints": [...]}');
    remember();
    state.hints = hints.map((h) => ({...h, size: h.size === undefined ? 1 : h.size}));
    selectPoint(-1);
    edited();
  } catch (e) {
    showError(`${file.name}: ${e.message}`);
  }
}

function showOriginal() {
  const original = $("show-original").checked;
  $("original").hidden = !original;
  $("result").hidden = original;
  $("result-title").textContent = original ? "Original colours" : "Colorization";
}

// ---- wiring -------------------------------------------------------------------------------------------
async function start() {
  state.config = await (await api("/api/config")).json();
  if (state.config.folder) {
    const {images} = await (await api("/api/folder")).json();
    for (const path of images) $("folder").add(new Option(path, path));
    $("folder-label").hidden = false;
  }
  $("folder").addEventListener("change", (e) => e.target.value && openFolderImage(e.target.value));
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; });
  $("load-hints").addEventListener("change", (e) => { if (e.target.files[0]) loadHints(e.target.files[0]); e.target.value = ""; });
  $("input").addEventListener("mousedown", onMouseDown);
  $("input").addEventListener("contextmenu", (e) => { e.preventDefault(); deletePoint(hitPoint(eventPixel(e))); });
  $("gamut").addEventListener("click", onGamutClick);
  $("picker").addEventListener("change", (e) => setColor(e.target.value));
  $("patch").addEventListener("change", (e) => {
    const h = state.hints[state.selected], size = Math.min(9, Math.max(1, parseInt(e.target.value, 10) || 1));
    if (h && h.size !== size) { remember(); h.size = size; edited(); }
  });
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearAll);
  $("download").addEventListener("click", download);
  $("save-hints").addEventListener("click", saveHints);
  $("show-original").addEventListener("change", showOriginal);
  window.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    if (e.key === "Delete" || e.key === "Backspace") deletePoint(state.selected);
    if (e.key === "z" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); undo(); }
  });
  window.addEventListener("resize", draw);
}

start().catch((e) => showError(e.message));
