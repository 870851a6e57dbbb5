// The before/after viewer: two canvases in #stage (the input under the result), a split line or
// side by side, pan and zoom, window/level/invert, a pixel readout and nodule boxes.
//
// Drawing goes through ImageData: each image is quantised once to 16-bit indices when it is
// shown, and window/level/invert is a 65536-entry lookup table of packed RGBA pixels, rebuilt
// only when those settings change; a redraw is one table look-up per pixel into the canvas's
// cached ImageData and one putImageData.
//
// The result is drawn as it is shown and downloaded: its `after` through its tone curve at
// `settings.tone` (restore.js tonedAfter), mapped once per change of result, values or strength.
//
// What the keys do is written once, in STAGE_KEYS and SPLIT_KEYS below: the same tables handle
// the keys and give the stage's and the split line's aria-describedby text.
import { tonedAfter } from './restore.js';

const ZOOM_STEP = 1.2;
const PAN_STEP = 20; // px per arrow key
const SPLIT_STEP = 0.05; // of the stage's width per arrow key
const LEVELS = 65536; // values in [0, 1] are quantised to 16 bits
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const BOX_COLOUR = '#ffb000';

/** An opaque grey RGBA pixel as one Uint32 in the platform's byte order. */
const packGrey = (g) => (LITTLE_ENDIAN ? 0xff000000 | (g * 0x010101) : ((g * 0x010101) << 8) | 0xff) >>> 0;

/** Window/level (centre `level`, width `win`, both in [0, 1] units) and invert as a lookup table. */
function windowLevelTable(win, level, invert) {
  const table = new Uint32Array(LEVELS);
  const lo = level - win / 2;
  for (let k = 0; k < LEVELS; k++) {
    let v = Math.min(1, Math.max(0, (k / (LEVELS - 1) - lo) / win));
    if (invert) v = 1 - v;
    table[k] = packGrey(Math.round(v * 255));
  }
  return table;
}

/** One canvas and the image it shows: the image's table indices and the canvas's ImageData. */
class Layer {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.data = null;
  }

  /** Sizes the canvas (which clears it) and its ImageData, only when the size changes. */
  resize(w, h) {
    if (this.image && this.canvas.width === w && this.canvas.height === h) return;
    this.canvas.width = w; this.canvas.height = h;
    this.image = this.ctx.createImageData(w, h);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.indices = new Uint16Array(w * h);
    this.data = null;
  }

  /** Shows `data` (w×h values in [0, 1]) through `table`, with `boxes` at `k` canvas px per input px. */
  draw(data, w, h, table, boxes, k) {
    this.resize(w, h);
    if (data !== this.data) {
      for (let i = 0; i < w * h; i++) this.indices[i] = Math.round(Math.min(1, Math.max(0, data[i])) * (LEVELS - 1));
      this.data = data;
    }
    for (let i = 0; i < w * h; i++) this.pixels[i] = table[this.indices[i]];
    this.ctx.putImageData(this.image, 0, 0);
    if (!boxes) return;
    // Nodule boxes [x0, y0, x1, y1] in input pixels.
    this.ctx.strokeStyle = BOX_COLOUR; this.ctx.lineWidth = Math.max(1, w / 256);
    for (const [x0, y0, x1, y1] of boxes) this.ctx.strokeRect(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k);
  }

  /** Nothing to show yet: a blank canvas of the given size. */
  clear(w, h) {
    this.resize(w, h);
    this.ctx.clearRect(0, 0, w, h);
  }
}

const PAN_DIRECTIONS = { ArrowLeft: [1, 0], ArrowRight: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
const STAGE_KEYS = [
  { keys: ['+', '='], says: '+ or = zooms in', run: (v) => v.zoomAtCentre(ZOOM_STEP) },
  { keys: ['-'], says: '- zooms out', run: (v) => v.zoomAtCentre(1 / ZOOM_STEP) },
  { keys: Object.keys(PAN_DIRECTIONS), says: `the arrow keys pan by ${PAN_STEP} px (← shows more of the left)`,
    run: (v, key) => v.pan(PAN_DIRECTIONS[key][0] * PAN_STEP, PAN_DIRECTIONS[key][1] * PAN_STEP) },
];
const SPLIT_KEYS = [
  { keys: ['ArrowLeft', 'ArrowRight'], says: `← and → move it by ${SPLIT_STEP * 100} % of the width`,
    run: (v, key) => v.setSplit(v.view.split + (key === 'ArrowLeft' ? -SPLIT_STEP : SPLIT_STEP)) },
];

export const STAGE_HELP = `Image viewer: drag to pan, the mouse wheel zooms at the pointer; with the viewer focused, ${
  STAGE_KEYS.map((k) => k.says).join(', ')}.`;
export const SPLIT_HELP = `Before/after split line: drag it, or focus it (Tab) and ${SPLIT_KEYS.map((k) => k.says).join(', ')}.`;

function bindKeys(el, table, viewer) {
  el.addEventListener('keydown', (e) => {
    const binding = table.find((b) => b.keys.includes(e.key));
    if (!binding) return;
    binding.run(viewer, e.key);
    e.preventDefault(); e.stopPropagation();
  });
}

export class Viewer {
  /**
   * `el`: { stage, before, after, handle, pixel, stageHelp, splitHelp (canvases and elements),
   * mode, window, level, invert, reset, preset (controls) }.
   */
  constructor(el) {
    this.el = el;
    this.layers = { before: new Layer(el.before), after: new Layer(el.after) };
    this.current = null; // a result of restore.js: {name, width, height, before, after, …, settings}
    this.toned = null; // the current result's shown values and what they were made from
    this.view = { scale: 1, x: 0, y: 0, split: 0.5 };
    this.table = null; this.tableKey = '';
    el.stageHelp.textContent = STAGE_HELP;
    el.splitHelp.textContent = SPLIT_HELP;
    this.bindPointer();
    bindKeys(el.stage, STAGE_KEYS, this);
    bindKeys(el.handle, SPLIT_KEYS, this);
    for (const c of [el.window, el.level, el.invert]) c.addEventListener('input', () => this.draw());
    el.preset.addEventListener('change', () => this.applyPreset());
    el.mode.addEventListener('change', () => { this.fit(); this.apply(); });
    el.reset.addEventListener('click', () => { this.fit(); this.apply(); });
    window.addEventListener('resize', () => this.apply());
  }

  get side() { return this.el.mode.value === 'side'; }

  /** Shows `result`; `fit` resets the zoom to fit it. */
  show(result, { fit = true } = {}) {
    if (result !== this.current) this.listPresets(result.presets ?? []);
    this.current = result;
    this.draw();
    if (fit) this.fit();
    this.apply();
  }

  /**
   * The file's own windows (a DICOM file's window centres/widths, in the image's [0, 1] units):
   * offered as presets of Window/Level, for the display only (the restoration used the first).
   */
  listPresets(presets) {
    const select = this.el.preset;
    select.replaceChildren(new Option('Full range', JSON.stringify({ level: 0.5, width: 1 })),
      ...presets.map((p) => new Option(`File: ${p.label}`, JSON.stringify(p))));
    select.hidden = presets.length === 0;
    select.previousElementSibling.hidden = select.hidden; // its label
  }

  applyPreset() {
    const { level, width } = JSON.parse(this.el.preset.value);
    const clamp = (v, input) => Math.min(Number(input.max), Math.max(Number(input.min), v));
    this.el.window.value = clamp(width, this.el.window);
    this.el.level.value = clamp(level, this.el.level);
    this.draw();
  }

  /** Redraws `result` if it is the one shown (it got a preview or its final image). */
  update(result) {
    if (result === this.current) this.show(result, { fit: false });
  }

  /** The current result's values as shown (at its tone), or null before it has any. */
  shownAfter() {
    const c = this.current;
    if (!c?.after) return null;
    const t = this.toned;
    if (t?.result !== c || t.after !== c.after || t.curve !== c.toneCurve || t.strength !== c.settings.tone) {
      this.toned = { result: c, after: c.after, curve: c.toneCurve, strength: c.settings.tone, data: tonedAfter(c) };
    }
    return this.toned.data;
  }

  /** The current window/level/invert table, rebuilt when they change. */
  lookup() {
    const win = Number(this.el.window.value), level = Number(this.el.level.value), inv = this.el.invert.checked;
    const key = `${win}/${level}/${inv}`;
    if (key !== this.tableKey) { this.table = windowLevelTable(win, level, inv); this.tableKey = key; }
    return this.table;
  }

  draw() {
    const c = this.current; if (!c) return;
    const table = this.lookup();
    this.layers.before.draw(c.before, c.width, c.height, table, c.boxes, 1);
    if (c.after) this.layers.after.draw(this.shownAfter(), c.afterWidth, c.afterHeight, table, c.boxes, c.afterWidth / c.width);
    else this.layers.after.clear(c.width, c.height);
  }

  fit() {
    const c = this.current; if (!c) return;
    const stage = this.el.stage.getBoundingClientRect();
    const across = this.side ? 2 : 1;
    const scale = Math.min(stage.width / (c.width * across), stage.height / c.height) || 1;
    Object.assign(this.view, { scale, x: (stage.width - c.width * scale * across) / 2, y: (stage.height - c.height * scale) / 2 });
  }

  apply() {
    const c = this.current; if (!c) return;
    const { scale, x, y, split } = this.view;
    const { stage, before, after, handle } = this.el;
    const side = this.side;
    stage.classList.toggle('side', side);
    before.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
    const ax = side ? x + c.width * scale : x;
    // A result at the model's scale is drawn over the input's footprint.
    const k = c.after ? c.width / c.afterWidth : 1;
    after.style.transform = `translate(${ax}px, ${y}px) scale(${scale * k})`;
    const clipX = side ? 0 : Math.max(0, (split * stage.clientWidth - x) / (scale * k));
    after.style.clipPath = side ? 'none' : `inset(0 0 0 ${clipX}px)`;
    handle.style.left = `${split * 100}%`;
    handle.setAttribute('aria-valuenow', String(Math.round(split * 100)));
  }

  /** Zooms by `f` keeping the image point at stage pixel (px, py) where it is. */
  zoomAt(f, px, py) {
    const v = this.view;
    v.x = px - (px - v.x) * f; v.y = py - (py - v.y) * f; v.scale *= f;
    this.apply();
  }

  zoomAtCentre(f) { this.zoomAt(f, this.el.stage.clientWidth / 2, this.el.stage.clientHeight / 2); }

  pan(dx, dy) { this.view.x += dx; this.view.y += dy; this.apply(); }

  setSplit(s) { this.view.split = Math.min(1, Math.max(0, s)); this.apply(); }

  /** A pointer event's position in stage pixels (the canvases' coordinate frame). */
  stagePoint(e) {
    const r = this.el.stage.getBoundingClientRect();
    return [e.clientX - r.left - this.el.stage.clientLeft, e.clientY - r.top - this.el.stage.clientTop];
  }

  bindPointer() {
    const { stage, handle } = this.el;
    let drag = null;
    stage.addEventListener('pointerdown', (e) => {
      drag = { onHandle: e.target === handle, sx: e.clientX, sy: e.clientY, x: this.view.x, y: this.view.y };
      stage.setPointerCapture(e.pointerId);
    });
    stage.addEventListener('pointermove', (e) => {
      const [px, py] = this.stagePoint(e);
      if (drag?.onHandle) this.setSplit(px / stage.clientWidth);
      else if (drag) { this.view.x = drag.x + e.clientX - drag.sx; this.view.y = drag.y + e.clientY - drag.sy; this.apply(); }
      this.showPixel(px, py);
    });
    stage.addEventListener('pointerup', () => { drag = null; });
    stage.addEventListener('wheel', (e) => {
      e.preventDefault();
      const [px, py] = this.stagePoint(e);
      this.zoomAt(e.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, px, py);
      this.showPixel(px, py);
    }, { passive: false });
  }

  /** The readout of the input and restored values under stage pixel (px, py). */
  showPixel(px, py) {
    const c = this.current; if (!c) return;
    let ix = (px - this.view.x) / this.view.scale;
    const iy = Math.floor((py - this.view.y) / this.view.scale);
    if (this.side && ix >= c.width) ix -= c.width;
    ix = Math.floor(ix);
    if (ix < 0 || iy < 0 || ix >= c.width || iy >= c.height) { this.el.pixel.textContent = ''; return; }
    const ka = c.after ? c.afterWidth / c.width : 1;
    const ai = Math.floor(iy * ka) * (c.afterWidth || c.width) + Math.floor(ix * ka);
    const shown = this.shownAfter();
    const after = shown && ai < shown.length ? shown[ai].toFixed(4) : '–';
    this.el.pixel.textContent = `x ${ix}, y ${iy} · input ${c.before[iy * c.width + ix].toFixed(4)} · restored ${after}`;
  }
}
