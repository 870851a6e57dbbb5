// The page in a real browser: Debian's Chromium (headless, WebGPU on SwiftShader via
// --enable-unsafe-webgpu) driven by playwright-core. Run by `make test` after `make web`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  root, shared, dxr, defaultModel, artifacts, fixtureImage, scratch, origin, open, setRange, restore, waitForText, download,
  nativeRestore, compare,
} from './helpers.mjs';

test('loads without console errors, shows the adapter, restores like the CLI', async () => {
  const { ctx, page, errors, requests } = await open();
  try {
    const adapter = await page.textContent('#adapter');
    assert.match(adapter, /WebGPU adapter/, `expected a WebGPU adapter, got: ${adapter}`);
    await restore(page, fixtureImage);
    await waitForText(page, 'progress-text', /Done/);
    const fromPage = (await download(page, '#download16')).path;
    await page.screenshot({ path: join(artifacts, 'result.png') });

    // The same checkpoint, seed, sampler and steps through the native CLI.
    const native = nativeRestore(fixtureImage, ['--weights', defaultModel, '--sampler', 'ddim', '--steps', '3', '--seed', '5', '--bits', '16']);
    const cmp = compare(fromPage, native);
    console.log(`browser vs native: max |diff| = ${cmp.max_abs_8bit.toFixed(4)} / 255`);
    assert.ok(cmp.max_abs_8bit <= 1, `browser and native differ by ${cmp.max_abs_8bit}/255`);

    assert.deepEqual(errors, [], 'console errors');
    const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(foreign, [], 'requests to other origins');
  } finally { await ctx.close(); }
});

test('the default model is the one its manifest describes, and the page names it', async () => {
  const meta = JSON.parse(readFileSync(join(root, 'www/models/default.json'), 'utf8'));
  const bytes = readFileSync(defaultModel);
  assert.ok(bytes.length <= 25 * 1024 * 1024, `default model is ${bytes.length} bytes, over 25 MB`);
  // the hash keys the page's model cache: a stale hash would keep serving an old model
  if (meta.sha256) assert.equal(createHash('sha256').update(bytes).digest('hex'), meta.sha256);
  const { ctx, page, errors } = await open();
  try {
    const status = await page.textContent('#model-status');
    assert.ok(status.startsWith('Default model'), status);
    if (meta.parameters) {
      assert.ok(status.replace(/[^0-9 ]/g, '').includes(String(meta.parameters)), `${status} vs ${meta.parameters}`);
    }
    // the card a teacher reads (the note when there is none), the note and recipe behind "details"
    const card = await page.textContent('#model-card');
    assert.equal(card.trim(), (meta.card || meta.note).trim());
    if (meta.card) assert.equal((await page.textContent('#model-note')).trim(), meta.note.trim());
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('Cancel stops the run and the next run works; a bad file shows an error', async () => {
  const { ctx, page } = await open();
  try {
    await restore(page, fixtureImage, { sampler: 'ddpm', steps: 200 });
    await waitForText(page, 'progress-text', /Step \d+\//, 120000);
    await page.click('#cancel');
    await waitForText(page, 'progress-text', /Cancelled/, 60000);

    const bad = join(scratch, 'notes.png');
    writeFileSync(bad, 'this is text, not an image');
    await restore(page, bad);
    await waitForText(page, 'error', /unrecognised format/, 60000);

    await restore(page, fixtureImage, { steps: 2 });
    await waitForText(page, 'progress-text', /Done/, 300000);
  } finally { await ctx.close(); }
});

test("a user's .pt checkpoint with its config loads, and a 16-bit PNG restores", async () => {
  const { ctx, page, errors } = await open();
  try {
    const tiny = join(shared, 'fixtures', 'cheff', 'tiny');
    await page.setInputFiles('#model-file', [join(tiny, 'weights.pt'), join(tiny, 'config.json')]);
    await waitForText(page, 'model-status', /weights\.pt \(cheff, 57,317 parameters/, 60000);
    // A 16-bit input made by the CLI.
    const sixteen = nativeRestore(fixtureImage, ['--weights', join(tiny, 'weights.pt'), '--config', join(tiny, 'config.json'),
      '--steps', '1', '--bits', '16']);
    await restore(page, sixteen, { steps: 2 });
    await waitForText(page, 'progress-text', /Done/, 300000);
    // A checkpoint that is not one: a clear error, and the loaded model stays.
    const junk = join(scratch, 'junk.safetensors');
    writeFileSync(junk, 'not a checkpoint at all');
    await page.setInputFiles('#model-file', junk);
    await waitForText(page, 'error', /junk\.safetensors: .*(checkpoint|unrecognised)/, 60000);
    assert.match(await page.textContent('#model-status'), /Kept the previous model/);
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('a model that records its sampler steps sets the steps slider when it loads', async () => {
  const tiny = join(shared, 'fixtures', 'cheff', 'tiny');
  const stepped = join(scratch, 'stepped.safetensors');
  execFileSync(dxr, ['convert', join(tiny, 'weights.pt'), stepped, '--config', join(tiny, 'config.json'), '--steps', '13']);
  const { ctx, page, errors } = await open();
  try {
    await waitForText(page, 'model-status', /parameters/, 60000);
    assert.notEqual(await page.inputValue('#steps'), '13');
    await page.setInputFiles('#model-file', stepped);
    await waitForText(page, 'model-status', /stepped\.safetensors \(cheff, 57,317 parameters/, 60000);
    assert.equal(await page.inputValue('#steps'), '13');
    assert.equal(await page.textContent('#steps-out'), '13');
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('a .bin checkpoint is a checkpoint everywhere: in the accept list, picked, and dropped with its config', async () => {
  const { ctx, page, errors } = await open();
  try {
    assert.ok((await page.getAttribute('#model-file', 'accept')).split(',').includes('.bin'));
    assert.match(await page.textContent('#model-panel label'), /\.bin/);
    const tiny = join(shared, 'fixtures', 'cheff', 'tiny');
    const asBin = join(scratch, 'tiny.bin');
    writeFileSync(asBin, readFileSync(join(tiny, 'weights.pt')));
    await page.setInputFiles('#model-file', [asBin, join(tiny, 'config.json')]);
    await waitForText(page, 'model-status', /^tiny\.bin \(cheff, 57,317 parameters/, 60000);
    // Dropped on the page: the .bin goes to the model, not to the image queue.
    await page.evaluate(([bin, config]) => {
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(atob(bin), (c) => c.charCodeAt(0))], 'dropped.bin'));
      dt.items.add(new File([config], 'config.json'));
      window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, [readFileSync(asBin).toString('base64'), readFileSync(join(tiny, 'config.json'), 'utf8')]);
    await waitForText(page, 'model-status', /^dropped\.bin \(cheff, 57,317 parameters/, 60000);
    assert.equal(await page.locator('#queue li').count(), 0, 'the .bin was queued as an image');
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('falls back to the CPU without WebGPU', async () => {
  const { ctx, page } = await open({ webgpu: false });
  try {
    assert.match(await page.textContent('#adapter'), /CPU/);
    await page.selectOption('#restore-scale', 'image');
    await restore(page, fixtureImage, { sampler: 'ddim', steps: 2, seed: 4 });
    await waitForText(page, 'progress-text', /Done/, 300000);
    // burn-flex in the worker gives the CLI's result for the same file and settings
    const got = await download(page, '#download16');
    const want = nativeRestore(fixtureImage, ['--weights', defaultModel, '--keep-pixels', '--sampler', 'ddim',
      '--steps', '2', '--seed', '4', '--bits', '16']);
    const cmp = compare(got.path, want);
    assert.ok(cmp.max_abs_8bit <= 1, `CPU fallback and CLI differ by ${cmp.max_abs_8bit}/255`);
  } finally { await ctx.close(); }
});

test('progress counts steps the GPU has finished: the last step is reported close to the result', async () => {
  const { ctx, page } = await open();
  try {
    const dir = join(scratch, 'big');
    execFileSync(dxr, ['resize', fixtureImage, '-o', dir, '--width', '256'], { stdio: 'pipe' });
    const file = join(dir, 'public_0_blur_64x64_ref.png');
    await page.selectOption('#restore-scale', 'image'); // the 256² image as it is
    await page.selectOption('#sampler', 'dpmpp');
    await setRange(page, 'steps', 2);
    await page.setInputFiles('#image-file', file);
    const t0 = Date.now();
    await page.click('#run');
    let lastStepAt = null;
    for (;;) {
      const text = await page.textContent('#progress-text');
      if (lastStepAt === null && /Step 2\/2/.test(text)) lastStepAt = Date.now();
      if (/Done/.test(text)) break;
      if (Date.now() - t0 > 600000) throw new Error(`no result after 10 min: ${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const doneAt = Date.now();
    lastStepAt ??= doneAt;
    const share = (lastStepAt - t0) / (doneAt - t0);
    console.log(`256² on WebGPU: last step reported at ${((lastStepAt - t0) / 1000).toFixed(1)} s, result at ${((doneAt - t0) / 1000).toFixed(1)} s (${(100 * share).toFixed(0)} %)`);
    assert.ok(share >= 0.8, `the last step was reported at ${(100 * share).toFixed(0)} % of the time to the result`);
  } finally { await ctx.close(); }
});

test('a first visit restores an example with one click, at the model scale, boxes drawn', async () => {
  const { ctx, page, errors } = await open();
  try {
    await page.waitForSelector('#examples button.example', { timeout: 60000 });
    assert.match(await page.textContent('#model-scale'), /model's scale \(lung fields ~\d+ px wide/);
    await setRange(page, 'steps', 2);
    await page.click('#examples button.example >> nth=0');
    await waitForText(page, 'progress-text', /Done/, 600000);
    const plan = await page.textContent('#plan-text');
    assert.match(plan, /256×256 restored at \d+×\d+/, plan);
    assert.match(plan, /DRR|estimated|model's/, plan);
    await page.screenshot({ path: join(artifacts, 'example.png') });
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('artifacts exist', () => {
  assert.ok(existsSync(join(artifacts, 'result.png')), 'screenshot written');
});
