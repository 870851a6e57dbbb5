// The page: wires the engine (rpc.js, the worker in worker.js), the model (models.js), the queue
// (queue.js), one image's restoration (restore.js), the viewer (viewer.js) and the CT → DRR
// studio (studio.js) to the DOM: files
// in (files.js says which are checkpoints), sampler settings, the tone slider (tone.js),
// progress and Cancel, downloads.
// All model work happens in the worker; this thread only draws (and maps tone, which needs no model).
import { Engine } from './rpc.js';
import { Models } from './models.js';
import { Queue } from './queue.js';
import { restoreFile, downloadPng } from './restore.js';
import { Viewer } from './viewer.js';
import { sortFiles, setAcceptLists, checkpointTypesText } from './files.js';
import { Studio } from './studio.js';
import { toneCurve, pageDefault } from './tone.js';
import { engineKind, engineNotice } from './engine-notice.js';
import { registerOffline } from './offline.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

function showError(text) { $('error').textContent = text; }
function clearError() { showError(''); }
function fmtTime(ms) { const s = Math.max(0, Math.round(ms / 1000)); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }

const engine = new Engine(new URL('./worker.js', import.meta.url), { onRestart: restarted });
const models = new Models(engine);
const viewer = new Viewer({
  stage: $('stage'), before: $('canvas-before'), after: $('canvas-after'), handle: $('split-handle'), pixel: $('pixel'),
  stageHelp: $('stage-keys'), splitHelp: $('split-keys'),
  mode: $('view-mode'), window: $('window'), level: $('level'), invert: $('invert'), reset: $('reset-view'), preset: $('wl-preset'),
});
const queue = new Queue($('queue'), {
  restore,
  // a result shown (new, or an earlier one viewed again) takes the tone slider's strength
  show: (result) => { if (takeTone(result)) queue.refresh(result); viewer.show(result); updateButtons(); },
  download,
  failed: (item, e) => showError(`${item.file.name}: ${e.message}`),
  cancelled: () => { $('progress-text').textContent = 'Cancelled.'; },
  started: clearError,
  changed: updateButtons,
});
let modelReady = false;
let engineInfo = null; // {kind: 'gpu' | 'software' | 'cpu', name} once the engine is up

function updateButtons() {
  $('run').disabled = !modelReady || queue.running || !queue.hasQueued;
  $('cancel').disabled = !queue.running;
  $('download8').disabled = $('download16').disabled = !viewer.current?.complete;
}

// ---- engine and model ---------------------------------------------------------------------
async function initEngine() {
  const preferGpu = 'gpu' in navigator && params.get('cpu') !== '1';
  const dev = await engine.call('init', { preferGpu });
  $('adapter').textContent = dev.backend === 'cpu'
    ? `No WebGPU here (${dev.fallback_reason || 'not supported'}): running on the CPU, slower but working.`
    : dev.adapter;
  $('adapter').dataset.backend = dev.backend;
  engineInfo = await engineKind(dev.backend);
  $('adapter').dataset.engine = engineInfo.kind;
  showEngineNotice();
}

/** What to expect from this engine, for the steps now set (nothing on a real GPU). */
function showEngineNotice() {
  const text = engineInfo ? engineNotice(engineInfo, Number($('steps').value)) : '';
  $('engine-notice').textContent = text;
  $('engine-notice').hidden = !text;
}

// A fresh engine after a crash: the same device preference and the same model.
async function restarted(reason) {
  showError(`The engine stopped (${reason}); it has been restarted — please run again.`);
  // nothing runs on the fresh engine before it has its device and the model back
  modelReady = false;
  queue.setCanRun(false);
  updateButtons();
  $('model-status').textContent = 'Restarting the engine…';
  try {
    await initEngine();
    const loaded = await models.reload();
    if (loaded) modelLoaded(loaded, { restarted: true });
    else $('model-status').textContent = 'No model loaded.';
  } catch (e) {
    $('model-status').textContent = 'No model loaded.';
    showError(`Restarting the engine failed: ${e.message}`);
  }
}

async function start() {
  try {
    await initEngine();
    // The sampler defaults are the engine's (the same the CLI shows).
    const d = await engine.call('defaults');
    $('sampler').value = d.sampler; $('steps').value = String(d.steps); $('eta').value = String(d.eta);
    $('steps-out').textContent = $('steps').value;
  } catch (e) {
    showError(`Could not start the engine: ${e.message}`);
    return;
  }
  try {
    modelLoaded(await models.loadDefault((fraction) => { $('model-progress').value = fraction; }));
  } catch (e) {
    $('model-status').textContent = 'No default model could be loaded: drop a checkpoint.';
    showError(e.message);
  }
  await loadExamples();
  // the offline copy downloads after the page is ready, not before
  registerOffline((text) => { $('update-note').textContent = text; });
}

/** A model is in the engine: its description, its card, its scale, steps and tone curve in the form. */
function modelLoaded({ info, label, about, updated }, { restarted = false } = {}) {
  modelReady = true;
  if (updated) $('update-note').textContent = 'A new default model has been downloaded and is in use (the old copy was removed).';
  queue.setCanRun(true);
  showAbout(about);
  const scale = info.scale ? `trained at ${info.scale}` : 'training scale not recorded: images are restored at their own pixels';
  $('model-status').textContent = `${label} (${info.family}, ${info.parameters.toLocaleString()} parameters, T = ${info.timesteps}; ${scale})`;
  $('model-scale').textContent = info.scale
    ? `Images are brought to the model's scale (${info.scale}) before restoring.`
    : 'This model does not record its training scale: images are restored at their own pixels.';
  $('steps').max = String(info.timesteps);
  // a model that records the steps its restorations need (its measured quality/speed curve)
  if (info.steps) $('steps').value = String(info.steps);
  if (Number($('steps').value) > info.timesteps) $('steps').value = String(info.timesteps);
  $('steps-out').textContent = $('steps').value;
  showEngineNotice();
  // the slider starts where the model suggests; a restart keeps the user's choice
  modelTone = toneCurve(info.tone);
  $('tone').disabled = !modelTone;
  if (modelTone) $('tone').removeAttribute('title'); else $('tone').title = NO_TONE;
  if (!restarted || !modelTone) $('tone').value = String(Math.round(pageDefault(info.tone) * 100));
  toneChanged();
  updateButtons();
}

/** What the page says about the model: the default model's card, its full note and recipe behind "details". */
function showAbout(about) {
  $('model-about').hidden = !about;
  if (!about) return;
  $('model-card').textContent = about.card;
  $('model-card').hidden = !about.card;
  const note = about.note !== about.card ? about.note : ''; // a card that is the note is not repeated
  $('model-note').textContent = note;
  $('model-note').hidden = !note;
  $('model-recipe').querySelector('code').textContent = about.recipe;
  $('model-recipe').hidden = !about.recipe;
  $('model-details').hidden = !note && !about.recipe;
}

async function loadUserModel(files) {
  let started = false;
  try {
    modelLoaded(await models.loadFiles(files, (name) => {
      started = true;
      clearError();
      $('model-status').textContent = `Loading ${name}…`;
    }));
  } catch (e) {
    if (started) $('model-status').textContent = modelReady ? 'Kept the previous model.' : 'No model loaded.';
    showError(e.message);
  }
}

// ---- tone ---------------------------------------------------------------------------------
// The slider is the strength of the tone curve (tone.js) for the result shown: moving it
// re-maps that result — no restoration runs — and records the strength in its settings, which
// its queue status and its downloads follow; a result shown later (a new one, or an earlier one
// viewed again) takes the slider's strength too. Off while the loaded model has no curve:
// results then keep the strength they were last shown at.
let modelTone = null; // the loaded model's tone curve (Float32Array), or null
const NO_TONE = "This model has no tone curve: results keep the DRR's grey scale.";
let toneFrame = 0;

/** Gives `result` the slider's strength, when the slider is on and the result has a curve. */
function takeTone(result) {
  if (!result?.toneCurve || $('tone').disabled) return false;
  result.settings.tone = Number($('tone').value) / 100;
  return true;
}

function toneChanged() {
  $('tone-out').textContent = $('tone').value;
  const shown = viewer.current;
  if (!takeTone(shown)) return;
  queue.refresh(shown);
  // the redraw maps every pixel: once a frame, however fast the slider moves
  cancelAnimationFrame(toneFrame);
  toneFrame = requestAnimationFrame(() => viewer.update(shown));
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
        queue.add([file], boxes);
        queue.start();
      } catch (e) { showError(`Example: ${e.message}`); }
    });
    $('examples').append(b);
  }
}

// ---- one image ----------------------------------------------------------------------------
function readSettings(pixelMm) {
  return {
    sampler: $('sampler').value, steps: Number($('steps').value), eta: Number($('eta').value),
    seed: Number($('seed').value), previewEvery: Number($('preview').value),
    outputScale: $('output-scale').value, keepPixels: $('restore-scale').value === 'image',
    pixelMm: pixelMm ?? null,
  };
}

async function restore(item, signal) {
  const result = await restoreFile(engine, item.file, {
    // a studio DRR knows its pixel pitch; an image file may carry one (DICOM)
    boxes: item.boxes, signal, settings: (mm) => readSettings(mm ?? item.pixelMm), toneCurve: modelTone,
    onImage: (shown) => queue.show(item, shown),
    onPlan: (plan) => { $('plan-text').textContent = plan.text; $('progress').value = 0; },
    onStep: ({ step, total, elapsed, preview }, shown) => {
      $('progress').value = step / total;
      const eta = (elapsed / step) * (total - step);
      $('progress-text').textContent = `Step ${step}/${total} · elapsed ${fmtTime(elapsed)} · ETA ${fmtTime(eta)}`;
      document.body.dataset.lastStep = `${step}/${total}@${Date.now()}`;
      if (preview) viewer.update(shown);
    },
  });
  $('progress-text').textContent = `Done in ${fmtTime(result.elapsed)} (${(result.elapsed / result.settings.steps).toFixed(0)} ms/step).`;
  document.body.dataset.lastRestore = String(Date.now());
  viewer.update(result);
  return result;
}

async function download(result, bits) {
  try { await downloadPng(engine, result, bits); } catch (e) { showError(`Encoding failed: ${e.message}`); }
}

// ---- inputs -------------------------------------------------------------------------------
setAcceptLists($('model-file'), $('image-file'));
$('checkpoint-types').textContent = checkpointTypesText;
$('download8').addEventListener('click', () => download(viewer.current, 8));
$('download16').addEventListener('click', () => download(viewer.current, 16));
$('steps').addEventListener('input', () => { $('steps-out').textContent = $('steps').value; showEngineNotice(); });
$('tone').addEventListener('input', toneChanged);
$('run').addEventListener('click', () => queue.start());
$('cancel').addEventListener('click', () => queue.cancel());
$('image-file').addEventListener('change', (e) => { queue.add([...e.target.files]); e.target.value = ''; });
$('model-file').addEventListener('change', (e) => { loadUserModel([...e.target.files]); e.target.value = ''; });

window.addEventListener('dragover', (e) => { e.preventDefault(); $('drop-overlay').hidden = false; });
window.addEventListener('dragleave', (e) => { if (!e.relatedTarget) $('drop-overlay').hidden = true; });
window.addEventListener('drop', (e) => {
  e.preventDefault(); $('drop-overlay').hidden = true;
  const files = [...e.dataTransfer.files];
  // a CT: anything dropped on the studio panel (NIfTI or DICOM slices), or a NIfTI anywhere
  if (e.target.closest?.('#studio') || files.some((f) => /\.nii(\.gz)?$/i.test(f.name))) {
    studio.loadFiles(files);
    return;
  }
  const { models: modelFiles, images } = sortFiles(files);
  if (modelFiles.length) loadUserModel(modelFiles);
  if (images.length) queue.add(images);
});

// The studio hands its DRR to the queue with its nodule boxes and its pixel pitch.
const studio = new Studio(engine, {
  preferGpu: 'gpu' in navigator && params.get('cpu') !== '1',
  restore: (file, { boxes, pixelMm }) => { queue.add([file], boxes, { pixelMm }); queue.start(); },
});
window.dxrStudio = studio; // for the tests and the benchmark
window.dxrViewer = viewer; // for the tests: the result shown, its values as drawn (shownAfter)

start();
