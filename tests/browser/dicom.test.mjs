// Compressed DICOM in the page: the chest radiograph of pydicom-data 1.0.0 stored as JPEG 2000
// (lossless and lossy) decodes in the page's worker to exactly the pixels of its uncompressed
// twin (`scripts/fetch-data.sh dicom`); JPEG-LS, which only `dxr` decodes, is refused in the page
// with its syntax named and the CLI pointed to; the drop queue shows the radiograph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { open, root, waitForText } from './helpers.mjs';

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
