// The queue in a real browser: several images each keep their result (view again, download,
// re-run with other settings), and a Cancel sent before a restoration starts is not lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  scratch, defaultModel, fixtureImage, open, setSettings, restore, waitForText, download, nativeRestore, compare,
  canvasRed, assertPixels, pixelArray, greyPng, readPng,
} from './helpers.mjs';

const images = [
  { name: 'qa.png', w: 64, h: 64, value: (x, y) => (x * 3 + y) % 256 },
  { name: 'qb.png', w: 48, h: 32, value: (x, y) => (x * 5 + y * 7) % 256 },
  { name: 'qc.png', w: 32, h: 48, value: (x, y) => 255 - ((x + 2 * y) % 256) },
];
const item = (name) => `#queue li[data-name="${name}"]`;
const itemState = (page, name) => page.getAttribute(item(name), 'data-state');
const canvasSize = async (page, id) => { const c = await canvasRed(page, id); return [c.width, c.height]; };
const native = (file, { sampler, steps, seed }) => nativeRestore(file, ['--weights', defaultModel, '--keep-pixels',
  '--sampler', sampler, '--steps', String(steps), '--seed', String(seed), '--bits', '16']);

test('a queue of three images: each keeps its result; an earlier one is viewed, downloaded and re-run with other settings', async () => {
  const files = images.map((im) => {
    const path = join(scratch, im.name);
    writeFileSync(path, greyPng(im.w, im.h, im.value));
    return path;
  });
  const first = { sampler: 'ddim', steps: 2, seed: 5 };
  const { ctx, page, errors } = await open();
  try {
    await page.selectOption('#restore-scale', 'image');
    await restore(page, files, first);
    await page.waitForFunction(() => document.querySelectorAll('#queue li[data-state="done"]').length === 3, null, { timeout: 600000 });
    assert.deepEqual(await page.$$eval('#queue li', (lis) => lis.map((li) => li.dataset.name)), images.map((im) => im.name));
    for (const im of images) assert.match(await page.textContent(`${item(im.name)} .status`), /^done · ddim, 2 steps, seed 5, own pixels$/);
    // The viewer shows the last one.
    assert.deepEqual(await canvasSize(page, 'canvas-before'), [32, 48]);
    assert.equal(await page.getAttribute(item('qc.png'), 'aria-current'), 'true');

    // View the first again: its input and its result are back in the viewer.
    await page.click(`${item('qa.png')} button.view`);
    assert.equal(await page.getAttribute(item('qa.png'), 'aria-current'), 'true');
    assert.equal(await page.getAttribute(item('qc.png'), 'aria-current'), null);
    assert.deepEqual(await canvasSize(page, 'canvas-before'), [64, 64]);
    assert.deepEqual(await canvasSize(page, 'canvas-after'), [64, 64]);
    const qa = images[0];
    assert.deepEqual((await canvasRed(page, 'canvas-before')).red, pixelArray(64, 64, qa.value));

    // Download the first from its list entry: the CLI's result for the same file and settings, and
    // what the viewer draws (window 1, level 0.5) is that result.
    const qa16 = await download(page, `${item('qa.png')} button.download[data-bits="16"]`);
    assert.equal(qa16.name, 'qa_restored_16bit.png');
    const cmp = compare(qa16.path, native(files[0], first));
    assert.ok(cmp.max_abs_8bit <= 1, `qa: page and CLI differ by ${cmp.max_abs_8bit}/255`);
    const qaResult = readPng(qa16.bytes);
    assertPixels((await canvasRed(page, 'canvas-after')).red,
      pixelArray(64, 64, (x, y) => Math.round(qaResult.at(x, y) / 257)), 1, "the viewer's result vs qa's download");
    // The viewer's own buttons download the result shown: qa's, byte for byte.
    const shown16 = await download(page, '#download16');
    assert.equal(shown16.name, 'qa_restored_16bit.png');
    assert.ok(shown16.bytes.equals(qa16.bytes), "the viewer's download is not qa's result");
    const qa8 = await download(page, `${item('qa.png')} button.download[data-bits="8"]`);
    assert.deepEqual([qa8.name, readPng(qa8.bytes).bits], ['qa_restored_8bit.png', 8]);

    // Re-run the second with other settings: its new result follows them, the others keep theirs.
    const qbBefore = await download(page, `${item('qb.png')} button.download[data-bits="16"]`);
    const other = { sampler: 'dpmpp', steps: 3, seed: 9 };
    await setSettings(page, other);
    await page.click(`${item('qb.png')} button.rerun`);
    await page.waitForFunction((sel) => document.querySelector(sel).dataset.state === 'done'
      && /dpmpp, 3 steps, seed 9/.test(document.querySelector(`${sel} .status`).textContent), item('qb.png'), { timeout: 300000 });
    assert.equal(await page.getAttribute(item('qb.png'), 'aria-current'), 'true');
    assert.deepEqual(await canvasSize(page, 'canvas-after'), [48, 32]);
    const qbAfter = await download(page, `${item('qb.png')} button.download[data-bits="16"]`);
    assert.ok(!qbAfter.bytes.equals(qbBefore.bytes), 'the re-run gave the same result as the first run');
    const cmpB = compare(qbAfter.path, native(files[1], other));
    assert.ok(cmpB.max_abs_8bit <= 1, `qb re-run: page and CLI differ by ${cmpB.max_abs_8bit}/255`);
    const qaAgain = await download(page, `${item('qa.png')} button.download[data-bits="16"]`);
    assert.ok(qaAgain.bytes.equals(qa16.bytes), "qa's result changed");
    assert.equal(await itemState(page, 'qc.png'), 'done');
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('a Cancel sent before the restoration starts is not lost, and applies to its own request only', async () => {
  const { ctx, page, errors } = await open();
  try {
    // The worker's protocol: a cancelled request that has not started (the engine is still
    // loading in a fresh worker) is answered "cancelled"; the next one runs; a cancel of an
    // id that is not open changes nothing.
    const answers = await page.evaluate(async (png) => {
      const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
      const w = new Worker('www/worker.js', { type: 'module' });
      const got = [];
      const all = new Promise((resolve) => {
        w.onmessage = (e) => { got.push(e.data); if (got.length === 2) resolve(); };
      });
      w.postMessage({ type: 'decode', id: 1, bytes: bytes.slice().buffer });
      w.postMessage({ type: 'cancel', target: 1 });
      w.postMessage({ type: 'cancel', target: 7 });
      w.postMessage({ type: 'decode', id: 2, bytes: bytes.slice().buffer });
      await all;
      w.terminate();
      return got.map(({ id, ok, error, result }) => ({ id, ok, error, size: result && [result.width, result.height] }));
    }, readFileSync(fixtureImage).toString('base64'));
    assert.deepEqual(answers, [
      { id: 1, ok: false, error: 'cancelled', size: undefined },
      { id: 2, ok: true, error: undefined, size: [64, 64] },
    ]);

    // The page: Cancel pressed while the image is still being read and decoded stops it before
    // any plan or step; the same image then restores when run again.
    const big = join(scratch, 'big-noise.png');
    writeFileSync(big, greyPng(4096, 4096, (x, y) => (x * 7919 + y * 104729) % 251));
    await page.selectOption('#restore-scale', 'image');
    await setSettings(page, { steps: 1 });
    await page.setInputFiles('#image-file', big);
    await page.evaluate(() => { document.getElementById('run').click(); setTimeout(() => document.getElementById('cancel').click(), 20); });
    await waitForText(page, 'progress-text', /Cancelled/, 60000);
    assert.equal(await itemState(page, 'big-noise.png'), 'cancelled');
    assert.equal(await page.textContent('#plan-text'), '', 'a plan was made after Cancel');
    assert.equal(await page.evaluate(() => document.body.dataset.lastStep), undefined, 'a step ran after Cancel');
    assert.equal(await page.isDisabled('#cancel'), true);

    await page.setInputFiles('#image-file', fixtureImage);
    await page.click('#run');
    await waitForText(page, 'progress-text', /Done/);
    assert.equal(await itemState(page, 'public_0_blur_64x64_ref.png'), 'done');
    assert.equal(await itemState(page, 'big-noise.png'), 'cancelled', 'a cancelled image ran again without Re-run');
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});
