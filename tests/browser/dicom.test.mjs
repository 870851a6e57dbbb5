// Compressed DICOM in the page: the chest radiograph of pydicom-data 1.0.0 stored as JPEG 2000
// (lossless and lossy) decodes in the page's worker to exactly the pixels of its uncompressed
// twin (`scripts/fetch-data.sh dicom`); JPEG-LS, which only `dxr` decodes, is refused in the page
// with its syntax named and the CLI pointed to; the drop queue shows the radiograph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { open, restore, root, waitForText } from './helpers.mjs';

const dir = join(root, 'data', 'dicom');

test('JPEG 2000 radiographs decode in the page like their twins; JPEG-LS is named', { timeout: 900000 }, async (t) => {
  if (!existsSync(join(dir, 'RG1_J2KR.dcm'))) {
    assert.ok(!process.env.DXR_REQUIRE_DATA, 'DXR_REQUIRE_DATA is set but data/dicom is missing: run scripts/fetch-data.sh dicom');
    t.skip('data/dicom not fetched (scripts/fetch-data.sh dicom)');
    return;
  }
  const { ctx, page, errors } = await open();
  try {
    const files = ['RG1_UNCR', 'RG1_J2KR', 'RG1_UNCI', 'RG1_J2KI', 'emri_small_jpeg_ls_lossless', 'emri_small']
      .map((n) => [n, readFileSync(join(dir, `${n}.dcm`)).toString('base64')]);
    const got = await page.evaluate(async (files) => {
      const w = new Worker('www/worker.js', { type: 'module' });
      const ask = (id, bytes) => new Promise((resolve) => {
        const start = performance.now();
        w.onmessage = (e) => { if (e.data.id === id) resolve({ ...e.data, ms: performance.now() - start }); };
        w.postMessage({ type: 'decode', id, bytes });
      });
      const out = {};
      let id = 0;
      for (const [name, b64] of files) {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        out[name] = await ask(++id, bytes.buffer);
      }
      w.terminate();
      const diff = (a, b) => {
        if (!a.ok || !b.ok || a.result.data.length !== b.result.data.length) return null;
        let worst = 0;
        for (let i = 0; i < a.result.data.length; i++) worst = Math.max(worst, Math.abs(a.result.data[i] - b.result.data[i]));
        return worst;
      };
      const summary = (r) => ({ ok: r.ok, error: r.error, size: r.ok ? [r.result.width, r.result.height] : null, frames: r.ok ? r.result.frames : null, ms: Math.round(r.ms) });
      return {
        each: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, summary(v)])),
        lossless: diff(out.RG1_J2KR, out.RG1_UNCR),
        lossy: diff(out.RG1_J2KI, out.RG1_UNCI),
      };
    }, files);
    console.log(`page decode (ms): ${JSON.stringify(got.each)}`);
    assert.deepEqual(got.each.RG1_J2KR.size, [1841, 1955], JSON.stringify(got.each.RG1_J2KR));
    assert.equal(got.lossless, 0, 'JPEG 2000 lossless differs from its twin in the page');
    assert.equal(got.lossy, 0, 'JPEG 2000 lossy differs from its twin (the decoded stream) in the page');
    assert.equal(got.each.emri_small.frames, 10, 'a multi-frame file says how many frames it holds');
    assert.equal(got.each.RG1_J2KR.frames, 1);
    const ls = got.each.emri_small_jpeg_ls_lossless;
    assert.equal(ls.ok, false);
    assert.match(ls.error, /1\.2\.840\.10008\.1\.2\.4\.80/);
    assert.match(ls.error, /`dxr` reads JPEG-LS too/);
    // the page itself: the compressed radiograph joins the queue and is shown
    await page.setInputFiles('#image-file', join(dir, 'RG1_J2KR.dcm'));
    await waitForText(page, 'queue', /RG1_J2KR\.dcm/, 120000);
    assert.deepEqual(errors.filter((e) => !/JPEG-LS|4\.80/.test(e)), []);
  } finally {
    await ctx.close();
  }
});

/** A DICOM file (explicit VR little endian) of `elements` [group, element, VR, Buffer], in tag order. */
function dicomFile(elements) {
  const el = (g, e, vr, v) => {
    if (v.length % 2) v = Buffer.concat([v, Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]);
    const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(g, 0); h.writeUInt16LE(e, 2); h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(v.length, 8); else h.writeUInt16LE(v.length, 6);
    return Buffer.concat([h, v]);
  };
  const meta = Buffer.concat([el(2, 1, 'OB', Buffer.from([0, 1])), el(2, 2, 'UI', Buffer.from('1.2.840.10008.5.1.4.1.1.1')),
    el(2, 3, 'UI', Buffer.from('1.2.3.4')), el(2, 0x10, 'UI', Buffer.from('1.2.840.10008.1.2.1'))]);
  const length = Buffer.alloc(4); length.writeUInt32LE(meta.length);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), el(2, 0, 'UL', length), meta, ...elements.map((e) => el(...e))]);
}
const us = (n) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const text = (s) => Buffer.from(s, 'latin1');
const uids = [[0x0008, 0x0016, 'UI', text('1.2.840.10008.5.1.4.1.1.1')], [0x0008, 0x0018, 'UI', text('1.2.3.4')]];

test("a file's windows are the viewer's presets; a colour DICOM image is shown, not restored", { timeout: 900000 }, async () => {
  // 64×64, 12 bits: the first window (2000, 1001) is restored, NARROW (2100, 401) is offered
  const ramp = Buffer.alloc(64 * 64 * 2);
  for (let i = 0; i < 64 * 64; i++) ramp.writeUInt16LE(i % 4096, 2 * i);
  const grey = dicomFile([...uids,
    [0x0028, 0x0002, 'US', us(1)], [0x0028, 0x0004, 'CS', text('MONOCHROME2')],
    [0x0028, 0x0010, 'US', us(64)], [0x0028, 0x0011, 'US', us(64)],
    [0x0028, 0x0100, 'US', us(16)], [0x0028, 0x0101, 'US', us(12)], [0x0028, 0x0102, 'US', us(11)], [0x0028, 0x0103, 'US', us(0)],
    [0x0028, 0x1050, 'DS', text('2000\\2100')], [0x0028, 0x1051, 'DS', text('1001\\401')],
    [0x0028, 0x1055, 'LO', text('SOFT\\NARROW')],
    [0x7fe0, 0x0010, 'OW', ramp]]);
  // 72×64 RGB, 8 bits
  const rgb = Buffer.alloc(72 * 64 * 3);
  for (let i = 0; i < 72 * 64; i++) rgb.set([200, (i * 7) % 256, 40], 3 * i);
  const colour = dicomFile([...uids,
    [0x0028, 0x0002, 'US', us(3)], [0x0028, 0x0004, 'CS', text('RGB')], [0x0028, 0x0006, 'US', us(0)],
    [0x0028, 0x0010, 'US', us(64)], [0x0028, 0x0011, 'US', us(72)],
    [0x0028, 0x0100, 'US', us(8)], [0x0028, 0x0101, 'US', us(8)], [0x0028, 0x0102, 'US', us(7)], [0x0028, 0x0103, 'US', us(0)],
    [0x7fe0, 0x0010, 'OB', rgb]]);

  const { ctx, page, errors } = await open();
  try {
    await restore(page, { name: 'windows.dcm', mimeType: 'application/dicom', buffer: grey }, { steps: 1 });
    await waitForText(page, 'progress-text', /Done/);
    const options = await page.$$eval('#wl-preset option', (os) => os.map((o) => o.textContent));
    assert.deepEqual(options, ['Full range', 'File: SOFT', 'File: NARROW']);
    assert.equal(await page.isVisible('#wl-preset'), true);
    await page.selectOption('#wl-preset', { label: 'File: NARROW' });
    // NARROW's ends in the restored window's units: (2100 ∓ 200.5 − 1999.5) / 1000 + 0.5
    const [win, level] = await page.evaluate(() => ['window', 'level'].map((id) => Number(document.getElementById(id).value)));
    assert.ok(Math.abs(win - 0.401) < 0.006 && Math.abs(level - 0.6005) < 0.006, `window ${win}, level ${level}`);

    await page.setInputFiles('#image-file', { name: 'photo.dcm', mimeType: 'application/dicom', buffer: colour });
    await page.click('#run');
    await waitForText(page, 'queue', /colour image \(RGB, 3 samples per pixel\) is not a radiograph: it is shown, never restored/);
    // shown all the same: the input canvas holds the colour image's luminance, and no preset
    const before = await page.evaluate(() => { const c = document.getElementById('canvas-before'); return [c.width, c.height]; });
    assert.deepEqual(before, [72, 64]);
    assert.equal(await page.isVisible('#wl-preset'), false);
    assert.deepEqual(errors.filter((e) => !/not a radiograph/.test(e)), []);
  } finally {
    await ctx.close();
  }
});
