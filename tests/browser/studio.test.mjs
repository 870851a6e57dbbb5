// The CT → DRR studio in Chromium, against native `dxr drr` with the same settings: the example
// CT (fetched at setup into data/) rendered on WebGPU and on the CPU fallback, seeded nodules,
// a click that places a nodule, a DICOM series written from the same CT, bad CTs, and the
// restoration of a studio DRR (screenshot kept in out/browser/studio.png).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, mkdtempSync, readdirSync, existsSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import {
  root, dxr, artifacts, scratch, origin, open, setSettings, waitForText, download, readPng,
} from './helpers.mjs';

const ct = join(root, 'data', 'ct', 'cxr.nii.gz');
const READY = '#studio[data-state="ready"]';
const LONG = { timeout: 600000 };
/** One render after a change (seconds even on a software adapter). */
const RENDER = { timeout: 180000 };
/** `dxr drr` of one view without jitter (the studio's defaults) with `args`, on `device` (`cpu`:
 * the CPU traversal; `wgpu`: the same WGSL the page's WebGPU path runs): the output folder. */
function nativeDrr(args = [], { source = ct, device = 'cpu' } = {}) {
  const out = mkdtempSync(join(scratch, 'drr-'));
  execFileSync(dxr, ['drr', '--ct', source, '--out', out, '--count', '1', '--size', '256', '--rotation-jitter', '0,0,0',
    '--shift-jitter', '0,0,0', '--raw', '--device', device, ...args], { stdio: 'pipe' });
  return out;
}

/** A float32 .npy written by `dxr drr --raw`. */
function readNpy(path) {
  const b = readFileSync(path);
  const headerLen = b.readUInt16LE(8);
  const start = 10 + headerLen;
  return new Float32Array(b.buffer.slice(b.byteOffset + start, b.byteOffset + b.length));
}

/** Largest difference between two 16-bit PNGs, in levels. */
function png16Diff(a, b) {
  const [pa, pb] = [readPng(a), readPng(b)];
  assert.equal(pa.bits, 16);
  assert.deepEqual([pa.width, pa.height], [pb.width, pb.height]);
  let worst = 0;
  for (let y = 0; y < pa.height; y++) for (let x = 0; x < pa.width; x++) worst = Math.max(worst, Math.abs(pa.at(x, y) - pb.at(x, y)));
  return worst;
}

/** Waits for the panel's "ready" state; on a timeout, says what the panel shows instead. */
async function waitReady(page, opts = RENDER) {
  try {
    await page.waitForSelector(READY, opts);
  } catch (e) {
    const shown = await page.evaluate(() => ({
      state: document.getElementById('studio').dataset.state,
      status: document.getElementById('studio-status')?.textContent,
      error: document.getElementById('studio-error')?.textContent,
    })).catch(() => ({}));
    throw new Error(`the studio did not get ready: ${JSON.stringify(shown)} (${e.message.split('\n')[0]})`);
  }
}

/** Loads CT files through #ct-file and waits for the first render. */
async function loadCt(page, files) {
  await page.setInputFiles('#ct-file', files);
  await waitReady(page, LONG);
}

/** Sets studio inputs (id → value) and waits for the full render that follows. */
async function setStudio(page, values) {
  await page.evaluate((values) => {
    document.getElementById('studio').dataset.state = 'changing';
    for (const [id, v] of Object.entries(values)) {
      const el = document.getElementById(id); el.value = String(v);
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }
  }, values);
  await waitReady(page);
}

const integrals = (page) => page.evaluate(async () => Array.from(await window.dxrStudio.engine.call('studioIntegrals', { clean: false })));
const label = (page) => page.evaluate(() => window.dxrStudio.last.label);

/** Line integrals within 1e-4 of the image's peak, pixel by pixel. */
function assertIntegrals(got, want, what) {
  assert.equal(got.length, want.length, what);
  const peak = want.reduce((m, v) => Math.max(m, v), 0);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  console.log(`${what}: line integrals differ by up to ${(worst / peak).toExponential(2)} of the peak ${peak.toFixed(2)}`);
  assert.ok(worst <= 1e-4 * peak, `${what}: line integrals differ by ${worst} (peak ${peak})`);
}

/** Labels equal to native ones: the same nodules (ids, shapes exact; positions to 1e-6). */
function assertLabels(got, want) {
  assert.equal(got.nodules.length, want.nodules.length);
  assert.deepEqual(got.pose, want.pose);
  assert.deepEqual(got.geometry, want.geometry);
  for (const [a, b] of got.nodules.map((n, i) => [n, want.nodules[i]])) {
    assert.equal(a.id, b.id); assert.equal(a.shape, b.shape);
    for (const k of ['centre_mm', 'centre_voxel', 'centre_px', 'bbox_px']) {
      a[k].forEach((v, i) => assert.ok(Math.abs(v - b[k][i]) < 1e-6, `${k}: ${a[k]} vs ${b[k]}`));
    }
    for (const k of ['radius_mm', 'hu', 'radius_px']) assert.ok(Math.abs(a[k] - b[k]) < 1e-6, `${k}: ${a[k]} vs ${b[k]}`);
  }
  got.window.forEach((v, i) => assert.ok(Math.abs(v - want.window[i]) <= 1e-4 * Math.abs(want.window[i]) + 1e-6, `window ${got.window} vs ${want.window}`));
}

test('WebGPU: the example CT renders like dxr drr; seeded nodules, a click, a restoration', LONG, async () => {
  assert.ok(existsSync(ct), `${ct} is missing: scripts/fetch-data.sh ct fetches it`);
  // 16-bit PNGs against native WebGPU-shader renders (the window is set from the render's own
  // percentiles, so the CPU's sum order would move it); line integrals against the CPU traversal
  const plain = nativeDrr();
  const plainGpu = nativeDrr([], { device: 'wgpu' });
  const seededGpu = nativeDrr(['--nodules', '3', '--seed', '5'], { device: 'wgpu' });
  const seeded = nativeDrr(['--nodules', '3', '--seed', '5']);
  const { ctx, page, errors, requests } = await open();
  try {
    await loadCt(page, ct);
    const info = await page.evaluate(() => window.dxrStudio.ctInfo);
    console.log(`studio: CT ${info.dims.join('×')} cropped to ${info.crop.join('×')} (${(info.gpu_bytes / 1e6).toFixed(1)} MB on the GPU) in ${info.loadMs.toFixed(0)} ms`);
    const renderer = await page.getAttribute('#studio', 'data-renderer');
    assert.equal(renderer, 'webgpu', await page.textContent('#studio-status'));
    // 1. the default view: PA, base pose, no nodules, 256², automatic window
    const png = (await download(page, '#download-drr16')).bytes;
    const levels = png16Diff(png, readFileSync(join(plainGpu, 'png16', '00000.png')));
    console.log(`studio (WebGPU) vs dxr drr --device wgpu: 16-bit PNGs differ by up to ${levels} levels`);
    assert.ok(levels <= 1, `${levels} levels`);
    assertIntegrals(await integrals(page), readNpy(join(plain, 'raw', '00000.npy')), 'WebGPU');
    assert.equal((await label(page)).nodules.length, 0);
    // 2. seeded nodules: the labels `dxr drr --nodules 3 --seed 5` writes
    await setStudio(page, { 'drr-nodules': 3, 'drr-seed': 5 });
    const want = JSON.parse(readFileSync(join(seeded, 'labels', '00000.json'), 'utf8'));
    assertLabels(await label(page), want);
    assertLabels(JSON.parse((await download(page, '#download-labels')).bytes.toString()), want);
    const seededPng = (await download(page, '#download-drr16')).bytes;
    const seededLevels = png16Diff(seededPng, readFileSync(join(seededGpu, 'png16', '00000.png')));
    assert.ok(seededLevels <= 1, `seeded: ${seededLevels} levels`);
    const coco = JSON.parse((await download(page, '#download-coco')).bytes.toString());
    assert.equal(coco.annotations.length, 3);
    // 3. a click on a lung places a nodule whose box holds the click; a click on air is refused
    const point = await page.evaluate(() => {
      const { image, width, height } = window.dxrStudio.last;
      let best = null;
      // the darkest pixel of the right lung's band (the image's left half, mid-height)
      for (let y = Math.round(0.35 * height); y < 0.55 * height; y++) {
        for (let x = Math.round(0.15 * width); x < 0.45 * width; x++) {
          if (!best || image[y * width + x] < best.v) best = { x, y, v: image[y * width + x] };
        }
      }
      return { x: best.x + 0.5, y: best.y + 0.5, width, height };
    });
    const box = await page.locator('#drr-canvas').boundingBox();
    const click = (x, y) => page.mouse.click(box.x + (x / point.width) * box.width, box.y + (y / point.height) * box.height);
    await page.evaluate(() => { document.getElementById('studio').dataset.state = 'changing'; });
    console.log('studio: seeded nodules match; clicking a lung');
    await click(point.x, point.y);
    await waitReady(page);
    const clicked = (await page.getAttribute('#studio', 'data-last-click')).split(',').map(Number);
    const after = await label(page);
    assert.equal(after.nodules.length, 4);
    const [x0, y0, x1, y1] = after.nodules[3].bbox_px;
    assert.ok(x0 <= clicked[0] && clicked[0] <= x1 && y0 <= clicked[1] && clicked[1] <= y1,
      `click ${clicked} outside the new nodule's box ${after.nodules[3].bbox_px}`);
    await click(2, 2);
    await waitForText(page, 'studio-error', /no lung along the ray/, 60000);
    // removing a nodule keeps the others where they were
    await page.evaluate(() => { document.getElementById('studio').dataset.state = 'changing'; });
    console.log('studio: a click placed a nodule; removing one');
    await page.click('#drr-nodule-list button[data-nodule="1"]');
    await waitReady(page);
    const removed = await label(page);
    assert.deepEqual(removed.nodules.map((n) => n.centre_mm), [0, 2, 3].map((i) => after.nodules[i].centre_mm));
    await page.locator('#studio').screenshot({ path: join(artifacts, 'studio.png') });
    console.log('studio: removed; restoring');
    // 4. restore this DRR: it joins the queue with its boxes and its pixel pitch
    await setSettings(page, { sampler: 'ddim', steps: 2, seed: 1 });
    await page.click('#restore-drr');
    await waitForText(page, 'progress-text', /Done/, 600000);
    await page.screenshot({ path: join(artifacts, 'studio-restored.png'), fullPage: true });
    assert.deepEqual(errors, [], 'console errors');
    const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(foreign, [], 'requests to other origins');
  } finally { await ctx.close(); }
});

test('CPU fallback: the served example CT renders like dxr drr', LONG, async () => {
  const plain = nativeDrr();
  const { ctx, page, errors } = await open({ webgpu: false });
  try {
    await page.click('#ct-example');
    await waitReady(page, LONG);
    assert.equal(await page.getAttribute('#studio', 'data-renderer'), 'cpu');
    const levels = png16Diff((await download(page, '#download-drr16')).bytes, readFileSync(join(plain, 'png16', '00000.png')));
    console.log(`studio (CPU) vs dxr drr: 16-bit PNGs differ by up to ${levels} levels`);
    assert.ok(levels <= 1, `${levels} levels`);
    assertIntegrals(await integrals(page), readNpy(join(plain, 'raw', '00000.npy')), 'CPU');
    assert.deepEqual(errors, [], 'console errors');
    // a CT dropped on the panel loads in the studio (not in the restoration queue)
    const dropped = await page.evaluateHandle((b64) => {
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], 'dropped.nii.gz'));
      return dt;
    }, readFileSync(ct).toString('base64'));
    await page.evaluate(() => { document.getElementById('studio').dataset.state = 'changing'; });
    await page.dispatchEvent('#studio', 'drop', { dataTransfer: dropped });
    await waitReady(page, LONG);
    assert.match(await page.textContent('#studio-status'), /^dropped\.nii\.gz: 256×256/);
    assert.equal(await page.locator('#queue li').count(), 0, 'a dropped CT went to the restoration queue');
    assert.equal(await page.getAttribute('#studio', 'data-lungs'), 'threshold');
    // a lung mask: random nodules go into its lobes, where `dxr drr --mask` puts them
    const mask = join(root, 'data', 'ct', 'mask.nii.gz');
    await page.evaluate(() => { document.getElementById('studio').dataset.state = 'changing'; });
    await page.setInputFiles('#ct-mask', mask);
    await waitReady(page, LONG);
    assert.equal(await page.getAttribute('#studio', 'data-lungs'), 'mask');
    await setStudio(page, { 'drr-nodules': 3, 'drr-seed': 5 });
    const masked = nativeDrr(['--mask', mask, '--nodules', '3', '--seed', '5']);
    const maskedLabel = JSON.parse(readFileSync(join(masked, 'labels', '00000.json'), 'utf8'));
    assertLabels(await label(page), maskedLabel);
    const maskedLevels = png16Diff((await download(page, '#download-drr16')).bytes, readFileSync(join(masked, 'png16', '00000.png')));
    console.log(`studio (CPU, lung mask, 3 nodules) vs dxr drr --mask: up to ${maskedLevels} levels`);
    assert.ok(maskedLevels <= 1, `masked: ${maskedLevels} levels`);
    const unmasked = JSON.parse(readFileSync(join(nativeDrr(['--nodules', '3', '--seed', '5']), 'labels', '00000.json'), 'utf8'));
    assert.notDeepEqual(maskedLabel.nodules.map((n) => n.centre_mm), unmasked.nodules.map((n) => n.centre_mm),
      'the mask changed no nodule position');
    // a mask on another grid is named; the CT stays loaded, without it
    const wrong = join(scratch, 'wrong-mask.nii'); writeFileSync(wrong, niftiBytes([8, 8, 2], () => 11));
    await page.setInputFiles('#ct-mask', wrong);
    await waitForText(page, 'studio-error', /the label mask is \[8, 8, 2\] voxels.*loaded without the mask/, 120000);
    await waitReady(page, LONG);
    assert.equal(await page.getAttribute('#studio', 'data-lungs'), 'threshold');
  } finally { await ctx.close(); }
});

/** A NIfTI-1 file of int16 voxels (`dims` of rank 2 or 3), 1 mm voxels, no sform. */
function niftiBytes(dims, value) {
  const n = dims.reduce((a, b) => a * b, 1);
  const b = Buffer.alloc(352 + 2 * n);
  b.writeInt32LE(348, 0);
  b.writeInt16LE(dims.length, 40);
  dims.forEach((d, i) => b.writeInt16LE(d, 42 + 2 * i));
  for (let i = dims.length; i < 7; i++) b.writeInt16LE(1, 42 + 2 * i);
  b.writeInt16LE(4, 70); b.writeInt16LE(16, 72); // int16
  for (let i = 0; i < 8; i++) b.writeFloatLE(1, 76 + 4 * i);
  b.writeFloatLE(352, 108); b.writeFloatLE(1, 112);
  b.write('n+1\0', 344, 'latin1');
  for (let i = 0; i < n; i++) b.writeInt16LE(value(i), 352 + 2 * i);
  return b;
}

test('a DICOM series renders like the NIfTI; bad CTs are named and the studio keeps working', LONG, async () => {
  const series = mkdtempSync(join(scratch, 'series-'));
  execFileSync(dxr, ['ct-to-dicom', ct, join(series, 'ct')], { stdio: 'pipe' });
  const slices = readdirSync(join(series, 'ct')).map((f) => join(series, 'ct', f));
  const { ctx, page } = await open();
  try {
    await loadCt(page, slices);
    const renderer = await page.getAttribute('#studio', 'data-renderer');
    const plain = nativeDrr([], { device: renderer === 'webgpu' ? 'wgpu' : 'cpu' });
    const levels = png16Diff((await download(page, '#download-drr16')).bytes, readFileSync(join(plain, 'png16', '00000.png')));
    console.log(`studio (DICOM series of ${slices.length} slices, ${renderer}) vs dxr drr of the NIfTI: up to ${levels} levels`);
    assert.ok(levels <= 1, `${levels} levels on ${renderer}`);

    const bad = async (files, pattern) => {
      await page.evaluate(() => { document.getElementById('studio-error').textContent = ''; });
      await page.setInputFiles('#ct-file', files);
      await waitForText(page, 'studio-error', pattern, 120000);
    };
    const text = join(scratch, 'notes.nii'); writeFileSync(text, 'this is text, not a CT');
    await bad(text, /notes\.nii: .*neither a NIfTI/);
    const truncated = join(scratch, 'cut.nii.gz'); writeFileSync(truncated, readFileSync(ct).subarray(0, 200000));
    await bad(truncated, /cut\.nii\.gz: /);
    const flat = join(scratch, 'flat.nii'); writeFileSync(flat, niftiBytes([16, 16], () => 0));
    await bad(flat, /flat\.nii: a CT needs 3 dimensions, the header declares 2/);
    const small = join(scratch, 'small.nii'); writeFileSync(small, gzipSync(niftiBytes([8, 8, 2], () => 40)));
    execFileSync(dxr, ['ct-to-dicom', small, join(series, 'small')], { stdio: 'pipe' });
    await bad([...slices.slice(0, 3), join(series, 'small', 'IM00001.dcm')], /slices of different sizes/);
    // and a good CT still loads
    await page.click('#ct-example');
    await waitReady(page, LONG);
  } finally { await ctx.close(); }
});
