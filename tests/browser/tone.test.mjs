// Tone: the slider between the DRR's grey scale (which the network keeps) and a radiograph's (the
// model's tone curve) re-maps the result shown without restoring again, an earlier result too when
// it is viewed again, and the strength goes with the result (its queue status, its download); a
// model without a curve turns it off. toneMap itself in plain node (www/tone.js has no DOM), and
// the default model's card.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toneMap, curveAt, toneCurve, pageDefault } from '../../www/tone.js';
import { root, shared, fixtureImage, open, setRange, restore, waitForText, download, assertPixels, readPng } from './helpers.mjs';

// ---- toneMap, in node ---------------------------------------------------------------------
const gamma = Float32Array.from({ length: 256 }, (_, i) => (i / 255) ** 0.6);
/** Monotone with a flat stretch: 0.7–0.9 all map to 0.95 (a processed radiograph's mediastinum). */
const squeezing = Float32Array.from({ length: 256 }, (_, i) => {
  const x = i / 255;
  return x < 0.7 ? (x * 0.95) / 0.7 : x < 0.9 ? 0.95 : 0.95 + (x - 0.9) * 0.5;
});
/** -0.2 … 1.2: values outside [0, 1] too. */
const ramp = Float32Array.from({ length: 1401 }, (_, i) => -0.2 + i / 1000);

test('toneMap: at strength 0, or without a curve, the input itself', () => {
  assert.equal(toneMap(ramp, gamma, 0), ramp);
  assert.equal(toneMap(ramp, null, 1), ramp);
  assert.equal(toneCurve(null), null);
  assert.equal(toneCurve({ points: [0.5], page_default: 0.5 }), null, 'one point is no curve');
  assert.equal(pageDefault(null), 0);
  const c = toneCurve({ points: Array.from(gamma), page_default: 0.4 });
  assert.ok(c instanceof Float32Array && c.length === 256);
  assert.equal(pageDefault({ points: [0, 1], page_default: 0.4 }), 0.4);
});

test('toneMap: strength 1 is the curve, at its points, between them and at its ends', () => {
  const knots = Float32Array.from({ length: 256 }, (_, i) => i / 255);
  const out = toneMap(knots, gamma, 1);
  assert.ok(out instanceof Float32Array && out !== knots);
  assertPixels(Array.from(out), Array.from(gamma), 1e-6, 'at x = i/255');
  const mids = Float32Array.from({ length: 255 }, (_, i) => (i + 0.5) / 255);
  assertPixels(Array.from(toneMap(mids, gamma, 1)), Array.from(mids, (_, i) => (gamma[i] + gamma[i + 1]) / 2), 1e-6, 'halfway between points');
  // the ends, and x outside [0, 1] clamped before the curve
  const three = Float32Array.of(0.1, 0.5, 0.9);
  assertPixels(Array.from(toneMap(Float32Array.of(0, 1, 0.25, -0.5, 1.5), three, 1)), [0.1, 0.9, 0.3, 0.1, 0.9], 1e-6, 'ends');
  for (const x of [0, 0.1, 0.25, 0.5, 0.8, 1]) assert.ok(Math.abs(curveAt(gamma, x) - toneMap(Float32Array.of(x), gamma, 1)[0]) < 1e-6, `curveAt(${x})`);
  // between 0 and 1 the blend of the two; over 1 the curve
  assertPixels(Array.from(toneMap(knots, gamma, 0.5)), Array.from(knots, (x, i) => (x + gamma[i]) / 2), 1e-6, 'strength 0.5');
  assertPixels(Array.from(toneMap(knots, gamma, 2)), Array.from(gamma), 1e-6, 'strength 2 (clamped to 1)');
});

test('toneMap: a monotone curve gives a monotone map at every strength', () => {
  for (const curve of [gamma, squeezing]) {
    for (const s of [0.1, 0.35, 0.5, 0.9, 1]) {
      const out = toneMap(ramp, curve, s);
      for (let i = 1; i < out.length; i++) assert.ok(out[i] >= out[i - 1], `strength ${s}: falls at x = ${ramp[i]}`);
      // strictly below 1: the identity's share keeps even a flat stretch rising
      if (s < 1) for (let i = 1; i < out.length; i++) assert.ok(out[i] > out[i - 1], `strength ${s}: flat at x = ${ramp[i]}`);
    }
  }
});

// ---- the page -----------------------------------------------------------------------------
/** The result shown: its engine values, its values as drawn, its curve and tone (window.dxrViewer, app.js). */
const shown = (page) => page.evaluate(() => {
  const v = window.dxrViewer; const c = v.current;
  return { after: Array.from(c.after), shown: Array.from(v.shownAfter()), curve: c.toneCurve && Array.from(c.toneCurve),
    tone: c.settings.tone, width: c.afterWidth, height: c.afterHeight };
});
/** What has run: the page's marks of the last step and the last result, and the queue's states. */
const runs = (page) => page.evaluate(() => ({ step: document.body.dataset.lastStep, restore: document.body.dataset.lastRestore,
  states: [...document.querySelectorAll('#queue li')].map((li) => li.dataset.state) }));
/** After the slider's redraw, which app.js makes on the next animation frame. */
const nextFrame = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
/** The viewer's grey for value v at window 1, level 0.5. */
const grey8 = (v) => Math.round(Math.min(1, Math.max(0, v)) * 255);
/** A canvas's pixels, row-major: its red channel, and its grey (null where a nodule box is drawn over the image). */
const canvasPixels = (page, id) => page.evaluate((id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const n = c.width * c.height;
  return { width: c.width, height: c.height, red: Array.from({ length: n }, (_, i) => d[4 * i]),
    grey: Array.from({ length: n }, (_, i) => (d[4 * i] === d[4 * i + 1] && d[4 * i] === d[4 * i + 2] ? d[4 * i] : null)) };
}, id);
/** Asserts that the canvas's grey pixels (all but the boxes) draw `values`. */
function assertDrawn(canvas, values, what) {
  const at = canvas.grey.flatMap((g, i) => (g === null ? [] : [i]));
  assert.ok(at.length > 0.9 * canvas.grey.length, `${what}: only ${at.length} of ${canvas.grey.length} pixels are grey`);
  assertPixels(at.map((i) => canvas.grey[i]), at.map((i) => grey8(values[i])), 1, what);
}
const status = (page, which = '[aria-current="true"]') => page.textContent(`#queue li${which} .status`);

/** `info` of the default model from a worker of its own (the worker's protocol, as in queue.test.mjs). */
function defaultInfo(page) {
  return page.evaluate(async () => {
    const w = new Worker('www/worker.js', { type: 'module' });
    let id = 0;
    const call = (msg, transfer = []) => new Promise((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.postMessage({ ...msg, id: ++id }, transfer);
    });
    try {
      const init = await call({ type: 'init', preferGpu: false });
      if (!init.ok) return init;
      const bytes = await (await fetch('www/models/default.safetensors')).arrayBuffer();
      return await call({ type: 'load', bytes }, [bytes]);
    } finally { w.terminate(); }
  });
}

test('the tone slider re-maps the result shown without restoring again, earlier results too; 0 gives them back', async () => {
  const { ctx, page, errors } = await open();
  try {
    // The default model carries a tone curve: the slider is on, where the model suggests.
    const answer = await defaultInfo(page);
    assert.ok(answer.ok, answer.error);
    const { tone } = answer.result;
    assert.ok(tone && tone.points.length >= 2, `the default model has no tone curve (info.tone is ${JSON.stringify(tone)})`);
    assert.equal(await page.isDisabled('#tone'), false);
    assert.equal(await page.inputValue('#tone'), String(Math.round(tone.page_default * 100)));
    assert.equal(await page.textContent('#tone-out'), await page.inputValue('#tone'));

    // An example restored at tone 0: shown as the engine gave it.
    await page.waitForSelector('#examples button.example', { timeout: 60000 });
    await setRange(page, 'tone', 0);
    await setRange(page, 'steps', 2);
    await page.click('#examples button.example >> nth=0');
    await waitForText(page, 'progress-text', /Done/, 600000);
    const ran = await runs(page);
    const progress = await page.textContent('#progress-text');
    const at0 = await shown(page);
    assert.equal(at0.tone, 0);
    assert.deepEqual(at0.curve, Array.from(Float32Array.from(tone.points)), "the result's curve is not the model's");
    assert.deepEqual(at0.shown, at0.after, 'at tone 0 the result is not shown as restored');
    const canvas0 = await canvasPixels(page, 'canvas-after');
    assert.deepEqual([canvas0.width, canvas0.height], [at0.width, at0.height]);
    assertDrawn(canvas0, at0.after, 'the result drawn at tone 0');
    assert.doesNotMatch(await status(page), /tone/);

    // 100 %: the curve itself, drawn at once; no step ran, no restoration, the queue as it was.
    const curve = Float32Array.from(at0.curve);
    const expected = Array.from(toneMap(Float32Array.from(at0.after), curve, 1));
    const moves = expected.reduce((m, v, i) => Math.max(m, Math.abs(v - at0.after[i])), 0);
    assert.ok(moves > 2 / 255, `the tone curve moves this result's values by ${moves} at most`);
    await setRange(page, 'tone', 100);
    await nextFrame(page);
    assert.equal(await page.textContent('#tone-out'), '100');
    const at100 = await shown(page);
    assert.equal(at100.tone, 1);
    assert.deepEqual(at100.after, at0.after, 'the restoration itself changed');
    assertPixels(at100.shown, expected, 1e-6, 'the values shown at 100 %');
    const canvas100 = await canvasPixels(page, 'canvas-after');
    assertDrawn(canvas100, expected, 'the result drawn at 100 %');
    assert.ok(canvas100.red.some((v, i) => v !== canvas0.red[i]), 'the drawn result did not change');
    assert.deepEqual(await runs(page), ran, 'a restoration ran');
    assert.equal(await page.textContent('#progress-text'), progress);
    assert.match(await status(page), /^done · .*, tone 100 %$/);
    // the download is what is shown
    const png = readPng((await download(page, '#download16')).bytes);
    assert.deepEqual([png.width, png.height, png.bits], [at0.width, at0.height, 16]);
    assertPixels(Array.from({ length: png.width * png.height }, (_, i) => png.at(i % png.width, Math.floor(i / png.width))),
      expected.map((v) => Math.round(Math.min(1, Math.max(0, v)) * 65535)), 1, 'the 16-bit download at 100 %');

    // A second image takes the slider's strength; at 50 % the example, viewed again, re-maps too.
    await page.selectOption('#restore-scale', 'image');
    await restore(page, fixtureImage, { steps: 1, tone: 100 }); // the form's settings, the slider kept at 100 %
    await page.waitForFunction(() => document.querySelectorAll('#queue li[data-state="done"]').length === 2, null, { timeout: 300000 });
    assert.equal((await shown(page)).tone, 1);
    await setRange(page, 'tone', 50);
    await nextFrame(page);
    assert.equal((await shown(page)).tone, 0.5);
    assert.match(await status(page, ':nth-child(1)'), /, tone 100 %$/, 'the example not shown changed its tone');
    const ranBoth = await runs(page);
    await page.click('#queue li:nth-child(1) button.view');
    const again = await shown(page);
    assert.deepEqual(again.after, at0.after, 'not the example');
    assert.equal(again.tone, 0.5);
    assertPixels(again.shown, Array.from(toneMap(Float32Array.from(at0.after), curve, 0.5)), 1e-6, 'the example shown again at 50 %');
    assert.match(await status(page, ':nth-child(1)'), /, tone 50 %$/);

    // Back to 0: the example exactly as restored, on the canvas too; still nothing ran.
    await setRange(page, 'tone', 0);
    await nextFrame(page);
    const back = await shown(page);
    assert.equal(back.tone, 0);
    assert.deepEqual(back.shown, at0.after);
    assert.deepEqual((await canvasPixels(page, 'canvas-after')).red, canvas0.red, 'the drawn result at 0 is not the first one');
    assert.doesNotMatch(await status(page, ':nth-child(1)'), /tone/);
    assert.deepEqual(await runs(page), ranBoth, 'a restoration ran');

    // A model without a tone curve turns the slider off and says why; results keep their tone.
    await setRange(page, 'tone', 40);
    await nextFrame(page);
    const tiny = join(shared, 'fixtures', 'cheff', 'tiny');
    await page.setInputFiles('#model-file', [join(tiny, 'weights.pt'), join(tiny, 'config.json')]);
    await waitForText(page, 'model-status', /weights\.pt \(cheff/, 60000);
    assert.equal(await page.isDisabled('#tone'), true);
    assert.match(await page.getAttribute('#tone', 'title'), /no tone curve/);
    assert.equal(await page.inputValue('#tone'), '0');
    assert.equal((await shown(page)).tone, 0.4);
    assert.match(await status(page, ':nth-child(1)'), /, tone 40 %$/);
    assert.equal(await page.isHidden('#model-about'), true, "a user's checkpoint shows the default model's card");
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test("the default model is introduced by its card; its note and recipe are behind 'details'", async () => {
  const meta = JSON.parse(readFileSync(join(root, 'www/models/default.json'), 'utf8'));
  const { ctx, page, errors } = await open();
  try {
    assert.match(await page.textContent('#model-status'), /^Default model \(/);
    assert.equal(await page.isVisible('#model-card'), true);
    assert.equal(await page.textContent('#model-card'), meta.card || meta.note);
    const separateNote = Boolean(meta.card && meta.note && meta.card !== meta.note);
    assert.equal(await page.isVisible('#model-note'), false, 'the note shows before "details" is opened');
    await page.click('#model-details summary');
    assert.equal(await page.isVisible('#model-note'), separateNote);
    if (separateNote) assert.equal(await page.textContent('#model-note'), meta.note);
    if (meta.recipe) {
      assert.equal(await page.isVisible('#model-recipe'), true);
      assert.equal(await page.textContent('#model-recipe code'), meta.recipe);
    }
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});
