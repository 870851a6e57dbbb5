// The page: files in, queue, sampler settings, progress and Cancel, the before/after viewer and
// downloads. All model work happens in worker.js; this thread only draws.

const $ = (id) => document.getElementById(id);
const pending = new Map();
let nextId = 1;
let worker = null;
let lastModel = null; // { bytes, config, label } to reload after a restart

function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (event) => {
    const msg = event.data;
    const p = pending.get(msg.id);
    if (!p) return;
    if (msg.progress) { p.onProgress?.(msg.progress); return; }
    pending.delete(msg.id);
    msg.ok ? p.resolve(msg.result) : p.reject(new Error(msg.error));
  };
  worker.onerror = (e) => { e.preventDefault?.(); restartEngine(e.message || 'the engine crashed'); };
}

function call(type, payload = {}, transfer = [], onProgress) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ type, id, ...payload }, transfer);
  }).catch((e) => {
    // A panic inside wasm, a lost GPU device or an out-of-memory leave the engine unusable:
    // start a fresh one (with the same model) so the page keeps working without a reload.
    if (/unreachable|RuntimeError|device (is |was )?lost|out of memory|poison/i.test(e.message)) {
      restartEngine(e.message);
    }
    throw e;
  });
}

let restarting = null;
function restartEngine(reason) {
  if (restarting) return restarting;
  for (const p of pending.values()) p.reject(new Error(`the engine stopped: ${reason}`));
  pending.clear();
  worker?.terminate();
  showError(`The engine stopped (${reason}); it has been restarted — please run again.`);
  state.busy = false;
  updateButtons();
  startWorker();
  restarting = (async () => {
    try {
      await initEngine();
      if (lastModel) {
        const info = await call('load', { bytes: lastModel.bytes.slice(0), config: lastModel.config });
        modelLoaded(info, lastModel.label);
      }
    } catch (e) {
      showError(`Restarting the engine failed: ${e.message}`);
    } finally {
      restarting = null;
    }
  })();
  return restarting;
}

const state = { modelReady: false, busy: false, queue: [], current: null, view: { scale: 1, x: 0, y: 0, split: 0.5 } };

function showError(text) { $('error').textContent = text; }
function clearError() { $('error').textContent = ''; }
function fmtTime(ms) { const s = Math.max(0, Math.round(ms / 1000)); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }

// ---- device and model -------------------------------------------------------------------
const params = new URLSearchParams(location.search);
const MODEL_URL = 'www/models/default.safetensors';

async function initEngine() {
  const preferGpu = 'gpu' in navigator && params.get('cpu') !== '1';
  const dev = await call('init', { preferGpu });
  const note = dev.backend === 'cpu'
    ? `No WebGPU here (${dev.fallback_reason || 'not supported'}): running on the CPU, slower but working.`
    : dev.adapter;
  $('adapter').textContent = note;
  $('adapter').dataset.backend = dev.backend;
}

async function start() {
  startWorker();
  try {
    await initEngine();
    // The sampler defaults are the engine's (the same the CLI shows).
    const d = await call('defaults');
    $('sampler').value = d.sampler; $('steps').value = String(d.steps); $('eta').value = String(d.eta);
    $('steps-out').textContent = $('steps').value;
  } catch (e) {
    showError(`Could not start the engine: ${e.message}`);
    return;
  }
  await loadDefaultModel();
  await loadExamples();
}

// `version` (the model's SHA-256 from default.json) keys the cache, so a new default model is
// fetched again instead of the stale cached one; without a version nothing is cached.
async function fetchWithProgress(url, version) {
  const cache = version && 'caches' in self ? await caches.open('dxr-models-v1') : null;
  const key = `${url}?v=${version}`;
  const hit = cache && await cache.match(key);
  if (hit) { $('model-progress').value = 1; return new Uint8Array(await hit.arrayBuffer()); }
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get('content-length')) || 0;
  const reader = resp.body.getReader();
  const chunks = []; let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value); got += value.length;
    if (total) $('model-progress').value = got / total;
  }
  const bytes = new Uint8Array(got); let off = 0;
  for (const c of chunks) { bytes.set(c, off); off += c.length; }
  $('model-progress').value = 1;
  if (cache) await cache.put(key, new Response(bytes.slice(), { headers: { 'content-type': 'application/octet-stream' } }));
  return bytes;
}

async function loadDefaultModel() {
  try {
    let meta = {};
    try { meta = await (await fetch('www/models/default.json')).json(); } catch { /* optional */ }
    const note = meta.note || '';
    const bytes = await fetchWithProgress(MODEL_URL, meta.sha256);
    const label = `Default model${note ? ` — ${note}` : ''}`;
    lastModel = { bytes: bytes.buffer.slice(0), config: undefined, label };
    const info = await call('load', { bytes: bytes.buffer }, [bytes.buffer]);
    modelLoaded(info, label);
  } catch (e) {
    $('model-status').textContent = 'No default model could be loaded: drop a checkpoint.';
    showError(e.message);
  }
}

function modelLoaded(info, label) {
  state.modelReady = true;
  const scale = info.scale ? `trained at ${info.scale}` : 'training scale not recorded: images are restored at their own pixels';
  $('model-status').textContent = `${label} (${info.family}, ${info.parameters.toLocaleString()} parameters, T = ${info.timesteps}; ${scale})`;
  $('model-scale').textContent = info.scale
    ? `Images are brought to the model's scale (${info.scale}) before restoring.`
    : 'This model does not record its training scale: images are restored at their own pixels.';
  $('steps').max = String(info.timesteps);
  if (Number($('steps').value) > info.timesteps) $('steps').value = String(info.timesteps);
  $('steps-out').textContent = $('steps').value;
  updateButtons();
}

async function loadUserModel(files) {
  const ckpt = files.find((f) => /\.(pt|pth|safetensors|bin)$/i.test(f.name));
  const cfg = files.find((f) => /\.json$/i.test(f.name));
  if (!ckpt) { showError('Pick a checkpoint (.pt, .pth or .safetensors), optionally with its config (.json).'); return; }
  clearError();
  $('model-status').textContent = `Loading ${ckpt.name}…`;
  try {
    const bytes = await ckpt.arrayBuffer();
    const config = cfg ? await cfg.text() : undefined;
    const keep = bytes.slice(0);
    const info = await call('load', { bytes, config }, [bytes]);
    lastModel = { bytes: keep, config, label: ckpt.name };
    modelLoaded(info, ckpt.name);
  } catch (e) {
    $('model-status').textContent = state.modelReady ? 'Kept the previous model.' : 'No model loaded.';
    showError(`${ckpt.name}: ${e.message}`);
  }
}

// ---- examples -----------------------------------------------------------------------------
// Made at setup from the example data (www/examples/index.json); DRRs come with nodule labels,
// whose boxes are drawn over both halves of the viewer.
async function loadExamples() {
  let list = [];
  try {
    const r = await fetch('www/examples/index.json');
    if (r.ok) list = await r.json();
  } catch { /* none built */ }
  if (!list.length) { $('examples-note').textContent = 'No examples were built (run make serve).'; return; }
  for (const ex of list) {
    const b = document.createElement('button');
    b.type = 'button'; b.className = 'example'; b.textContent = ex.name; b.title = `From ${ex.source}`;
    b.addEventListener('click', async () => {
      try {
        const resp = await fetch(ex.file);
        if (!resp.ok) throw new Error(`${ex.file}: HTTP ${resp.status}`);
        const file = new File([await resp.arrayBuffer()], ex.file.split('/').pop());
        let boxes = null;
        if (ex.labels) {
          const label = await (await fetch(ex.labels)).json();
          boxes = label.nodules.map((n) => n.bbox_px);
        }
        enqueue([file], boxes);
        if (!state.busy && state.modelReady) runQueue();
      } catch (e) { showError(`Example: ${e.message}`); }
    });
    $('examples').append(b);
  }
}

// ---- queue --------------------------------------------------------------------------------
function enqueue(files, boxes = null) {
  for (const file of files) {
    const li = document.createElement('li');
    li.textContent = file.name;
    $('queue').append(li);
    state.queue.push({ file, li, boxes });
  }
  updateButtons();
}

function updateButtons() {
  $('run').disabled = !state.modelReady || state.busy || state.queue.length === 0;
  $('cancel').disabled = !state.busy;
  $('download8').disabled = $('download16').disabled = !(state.current && state.current.after);
}

async function runQueue() {
  clearError();
  state.busy = true; state.cancelRequested = false; updateButtons();
  while (state.queue.length) {
    const item = state.queue.shift();
    item.li.className = 'running';
    try {
      await restoreOne(item.file, item.boxes);
      item.li.className = 'done';
    } catch (e) {
      item.li.className = 'failed';
      if (e.message === 'cancelled') {
        $('progress-text').textContent = 'Cancelled.';
        item.li.textContent += ' (cancelled)';
        state.queue.forEach((q) => q.li.remove());
        state.queue = [];
      } else {
        showError(`${item.file.name}: ${e.message}`);
      }
    }
  }
  state.busy = false; updateButtons();
}

function restoreSettings(pixelMm) {
  return {
    sampler: $('sampler').value, steps: Number($('steps').value), eta: Number($('eta').value),
    seed: Number($('seed').value), previewEvery: Number($('preview').value),
    outputScale: $('output-scale').value, keepPixels: $('restore-scale').value === 'image',
    pixelMm: pixelMm ?? null,
  };
}

async function restoreOne(file, boxes = null) {
  const bytes = await file.arrayBuffer();
  const img = await call('decode', { bytes }, [bytes]);
  // A Cancel pressed while the file was decoding stops here.
  if (state.cancelRequested) throw new Error('cancelled');
  state.current = { name: file.name.replace(/\.[^.]+$/, ''), width: img.width, height: img.height, before: img.data, after: null, afterWidth: img.width, afterHeight: img.height, boxes };
  drawAll(true);
  const settings = restoreSettings(img.pixelMm);
  const plan = await call('plan', { data: img.data.slice(), width: img.width, height: img.height, settings });
  $('plan-text').textContent = plan.text;
  if (state.cancelRequested) throw new Error('cancelled');
  $('progress').value = 0;
  const result = await call('restore', {
    data: img.data.slice(), width: img.width, height: img.height, settings,
  }, [], ({ step, total, elapsed, preview }) => {
    $('progress').value = step / total;
    const eta = (elapsed / step) * (total - step);
    $('progress-text').textContent = `Step ${step}/${total} · elapsed ${fmtTime(elapsed)} · ETA ${fmtTime(eta)}`;
    document.body.dataset.lastStep = `${step}/${total}@${Date.now()}`;
    if (preview) { Object.assign(state.current, { after: preview, afterWidth: plan.output[0], afterHeight: plan.output[1] }); drawAll(false); }
  });
  Object.assign(state.current, { after: result.data, afterWidth: result.width, afterHeight: result.height });
  $('progress-text').textContent = `Done in ${fmtTime(result.elapsed)} (${(result.elapsed / settings.steps).toFixed(0)} ms/step).`;
  document.body.dataset.lastRestore = String(Date.now());
  drawAll(false);
  updateButtons();
}

// ---- viewer -------------------------------------------------------------------------------
// Nodule boxes [x0, y0, x1, y1] in input pixels, drawn at `k` canvas pixels per input pixel.
function drawBoxes(canvas, boxes, k) {
  if (!boxes) return;
  const ctx = canvas.getContext('2d');
  ctx.strokeStyle = '#ffb000'; ctx.lineWidth = Math.max(1, canvas.width / 256);
  for (const [x0, y0, x1, y1] of boxes) ctx.strokeRect(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k);
}

function render(canvas, data, w, h) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d');
  const out = ctx.createImageData(w, h);
  const win = Number($('window').value), level = Number($('level').value), inv = $('invert').checked;
  const lo = level - win / 2;
  for (let i = 0; i < w * h; i++) {
    let v = (data[i] - lo) / win;
    v = Math.min(1, Math.max(0, v));
    if (inv) v = 1 - v;
    const b = Math.round(v * 255);
    out.data[4 * i] = out.data[4 * i + 1] = out.data[4 * i + 2] = b; out.data[4 * i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

function drawAll(resetView) {
  const c = state.current; if (!c) return;
  render($('canvas-before'), c.before, c.width, c.height);
  drawBoxes($('canvas-before'), c.boxes, 1);
  if (c.after) {
    render($('canvas-after'), c.after, c.afterWidth, c.afterHeight);
    drawBoxes($('canvas-after'), c.boxes, c.afterWidth / c.width);
  } else { $('canvas-after').width = c.width; $('canvas-after').height = c.height; }
  if (resetView) fitView();
  applyView();
}

function fitView() {
  const c = state.current; if (!c) return;
  const stage = $('stage').getBoundingClientRect();
  const side = $('view-mode').value === 'side';
  const scale = Math.min(stage.width / (c.width * (side ? 2 : 1)), stage.height / c.height) || 1;
  const x = (stage.width - c.width * scale * (side ? 2 : 1)) / 2;
  const y = (stage.height - c.height * scale) / 2;
  Object.assign(state.view, { scale, x, y });
}

function applyView() {
  const c = state.current; if (!c) return;
  const { scale, x, y, split } = state.view;
  const side = $('view-mode').value === 'side';
  $('stage').classList.toggle('side', side);
  $('canvas-before').style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  const ax = side ? x + c.width * scale : x;
  // A result at the model's scale is drawn over the input's footprint.
  const k = c.after ? c.width / c.afterWidth : 1;
  $('canvas-after').style.transform = `translate(${ax}px, ${y}px) scale(${scale * k})`;
  const clipX = side ? 0 : Math.max(0, (split * $('stage').clientWidth - x) / (scale * k));
  $('canvas-after').style.clipPath = side ? 'none' : `inset(0 0 0 ${clipX}px)`;
  $('split-handle').style.left = `${split * 100}%`;
  $('split-handle').setAttribute('aria-valuenow', String(Math.round(split * 100)));
}

let drag = null;
$('stage').addEventListener('pointerdown', (e) => {
  const onHandle = e.target === $('split-handle');
  drag = { onHandle, sx: e.clientX, sy: e.clientY, x: state.view.x, y: state.view.y };
  $('stage').setPointerCapture(e.pointerId);
});
$('stage').addEventListener('pointermove', (e) => {
  const rect = $('stage').getBoundingClientRect();
  if (drag && drag.onHandle) {
    state.view.split = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
  } else if (drag) {
    state.view.x = drag.x + e.clientX - drag.sx; state.view.y = drag.y + e.clientY - drag.sy;
  }
  applyView();
  showPixel(e.clientX - rect.left, e.clientY - rect.top);
});
$('stage').addEventListener('pointerup', () => { drag = null; });
$('stage').addEventListener('wheel', (e) => {
  e.preventDefault();
  zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.offsetX, e.offsetY);
}, { passive: false });

function zoomAt(f, px, py) {
  const v = state.view;
  v.x = px - (px - v.x) * f; v.y = py - (py - v.y) * f; v.scale *= f;
  applyView();
}

function showPixel(px, py) {
  const c = state.current; if (!c) return;
  const side = $('view-mode').value === 'side';
  let ix = (px - state.view.x) / state.view.scale;
  const iy = Math.floor((py - state.view.y) / state.view.scale);
  if (side && ix >= c.width) ix -= c.width;
  ix = Math.floor(ix);
  if (ix < 0 || iy < 0 || ix >= c.width || iy >= c.height) { $('pixel').textContent = ''; return; }
  const i = iy * c.width + ix;
  const ka = c.after ? c.afterWidth / c.width : 1;
  const ai = Math.floor(iy * ka) * (c.afterWidth || c.width) + Math.floor(ix * ka);
  const after = c.after && ai < c.after.length ? c.after[ai].toFixed(4) : '–';
  $('pixel').textContent = `x ${ix}, y ${iy} · input ${c.before[i].toFixed(4)} · restored ${after}`;
}

$('stage').addEventListener('keydown', (e) => {
  const r = $('stage').getBoundingClientRect();
  if (e.key === '+' || e.key === '=') zoomAt(1.2, r.width / 2, r.height / 2);
  else if (e.key === '-') zoomAt(1 / 1.2, r.width / 2, r.height / 2);
  else if (e.key === 'ArrowLeft') { state.view.x += 20; applyView(); }
  else if (e.key === 'ArrowRight') { state.view.x -= 20; applyView(); }
  else if (e.key === 'ArrowUp') { state.view.y += 20; applyView(); }
  else if (e.key === 'ArrowDown') { state.view.y -= 20; applyView(); }
  else return;
  e.preventDefault();
});
$('split-handle').addEventListener('keydown', (e) => {
  if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
    state.view.split = Math.min(1, Math.max(0, state.view.split + (e.key === 'ArrowLeft' ? -0.05 : 0.05)));
    applyView(); e.preventDefault(); e.stopPropagation();
  }
});

for (const id of ['window', 'level', 'invert']) $(id).addEventListener('input', () => drawAll(false));
$('view-mode').addEventListener('change', () => { fitView(); applyView(); });
$('reset-view').addEventListener('click', () => { fitView(); applyView(); });
window.addEventListener('resize', () => applyView());

async function download(bits) {
  const c = state.current; if (!c || !c.after) return;
  try {
    const png = await call('encode', { data: c.after.slice(), width: c.afterWidth, height: c.afterHeight, bits });
    const url = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
    const a = document.createElement('a');
    a.href = url; a.download = `${c.name}_restored_${bits}bit.png`;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { showError(`Encoding failed: ${e.message}`); }
}
$('download8').addEventListener('click', () => download(8));
$('download16').addEventListener('click', () => download(16));

// ---- inputs -------------------------------------------------------------------------------
$('steps').addEventListener('input', () => { $('steps-out').textContent = $('steps').value; });
$('run').addEventListener('click', () => runQueue());
$('cancel').addEventListener('click', () => { state.cancelRequested = true; worker.postMessage({ type: 'cancel' }); });
$('image-file').addEventListener('change', (e) => { enqueue([...e.target.files]); e.target.value = ''; });
$('model-file').addEventListener('change', (e) => { loadUserModel([...e.target.files]); e.target.value = ''; });

const isModelFile = (f) => /\.(pt|pth|safetensors|json)$/i.test(f.name);
window.addEventListener('dragover', (e) => { e.preventDefault(); $('drop-overlay').hidden = false; });
window.addEventListener('dragleave', (e) => { if (!e.relatedTarget) $('drop-overlay').hidden = true; });
window.addEventListener('drop', (e) => {
  e.preventDefault(); $('drop-overlay').hidden = true;
  const files = [...e.dataTransfer.files];
  const models = files.filter(isModelFile);
  if (models.length) loadUserModel(models);
  const images = files.filter((f) => !isModelFile(f));
  if (images.length) enqueue(images);
});

start();
