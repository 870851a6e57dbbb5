// The page in a real browser: Debian's Chromium (headless, WebGPU on SwiftShader via
// --enable-unsafe-webgpu) driven by playwright-core. Run by `make test` after `make web`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shared = process.env.SHARED || resolve(root, '..', 'shared');
const targetDir = process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache', 'dxr-target');
const dxr = join(targetDir, 'release', 'dxr');
const artifacts = process.env.DXR_ARTIFACTS || join(root, 'out', 'browser');
const fixtureImage = join(shared, 'fixtures', 'metrics', 'public_0_blur_64x64_ref.png');
const port = 18000 + Math.floor(Math.random() * 1000);
const origin = `http://127.0.0.1:${port}`;
const baseArgs = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];

let server;
const scratch = mkdtempSync(join(tmpdir(), 'dxr-browser-'));
mkdirSync(artifacts, { recursive: true });

before(async () => {
  server = spawn('python3', [join(root, 'scripts', 'serve.py'), String(port)], { env: { ...process.env, DXR_SERVE_QUIET: '1' }, stdio: 'pipe' });
  for (let i = 0; i < 100; i++) {
    try { const r = await fetch(`${origin}/index.html`); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start');
});
after(() => server?.kill());

async function open({ webgpu = true } = {}) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(scratch, 'profile-')), {
    executablePath: '/usr/bin/chromium', headless: true, acceptDownloads: true,
    args: webgpu ? [...baseArgs, '--enable-unsafe-webgpu'] : baseArgs,
    viewport: { width: 1280, height: 800 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = []; const requests = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  ctx.on('request', (r) => requests.push(r.url()));
  await page.goto(`${origin}/index.html`);
  await page.waitForFunction(() => /parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 120000 });
  return { ctx, page, errors, requests };
}

async function setRange(page, id, value) {
  await page.evaluate(([id, value]) => {
    const el = document.getElementById(id); el.value = String(value);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, [id, value]);
}

async function restore(page, file, { sampler = 'ddim', steps = 3, seed = 5 } = {}) {
  await page.selectOption('#sampler', sampler);
  await setRange(page, 'steps', steps);
  await page.fill('#seed', String(seed));
  await page.setInputFiles('#image-file', file);
  await page.click('#run');
}

test('loads without console errors, shows the adapter, restores like the CLI', async () => {
  const { ctx, page, errors, requests } = await open();
  try {
    const adapter = await page.textContent('#adapter');
    assert.match(adapter, /WebGPU adapter/, `expected a WebGPU adapter, got: ${adapter}`);
    await restore(page, fixtureImage);
    await page.waitForFunction(() => /Done/.test(document.getElementById('progress-text').textContent), null, { timeout: 300000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download16')]);
    const fromPage = join(scratch, 'page.png');
    await download.saveAs(fromPage);
    await page.screenshot({ path: join(artifacts, 'result.png') });

    // The same checkpoint, seed, sampler and steps through the native CLI.
    const outDir = join(scratch, 'native');
    execFileSync(dxr, ['restore', fixtureImage, '-o', outDir, '--weights', join(root, 'www/models/default.safetensors'),
      '--sampler', 'ddim', '--steps', '3', '--seed', '5', '--bits', '16'], { stdio: 'pipe' });
    const cmp = JSON.parse(execFileSync(dxr, ['compare', fromPage, join(outDir, 'public_0_blur_64x64_ref.png')]).toString());
    console.log(`browser vs native: max |diff| = ${cmp.max_abs_8bit.toFixed(4)} / 255`);
    assert.ok(cmp.max_abs_8bit <= 1, `browser and native differ by ${cmp.max_abs_8bit}/255`);

    assert.deepEqual(errors, [], 'console errors');
    const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:'));
    assert.deepEqual(foreign, [], 'requests to other origins');
  } finally { await ctx.close(); }
});

test('the default model is the one its manifest describes, and the page names it', async () => {
  const meta = JSON.parse(readFileSync(join(root, 'www/models/default.json'), 'utf8'));
  const bytes = readFileSync(join(root, 'www/models/default.safetensors'));
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
    assert.ok(status.includes(meta.note), `${status} lacks the manifest's note`);
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('Cancel stops the run and the next run works; a bad file shows an error', async () => {
  const { ctx, page } = await open();
  try {
    await restore(page, fixtureImage, { sampler: 'ddpm', steps: 200 });
    await page.waitForFunction(() => /Step \d+\//.test(document.getElementById('progress-text').textContent), null, { timeout: 120000 });
    await page.click('#cancel');
    await page.waitForFunction(() => /Cancelled/.test(document.getElementById('progress-text').textContent), null, { timeout: 60000 });

    const bad = join(scratch, 'notes.png');
    writeFileSync(bad, 'this is text, not an image');
    await restore(page, bad);
    await page.waitForFunction(() => /unrecognised format/.test(document.getElementById('error').textContent), null, { timeout: 60000 });

    await restore(page, fixtureImage, { steps: 2 });
    await page.waitForFunction(() => /Done/.test(document.getElementById('progress-text').textContent), null, { timeout: 300000 });
  } finally { await ctx.close(); }
});

test("a user's .pt checkpoint with its config loads, and a 16-bit PNG restores", async () => {
  const { ctx, page, errors } = await open();
  try {
    const tiny = join(shared, 'fixtures', 'cheff', 'tiny');
    await page.setInputFiles('#model-file', [join(tiny, 'weights.pt'), join(tiny, 'config.json')]);
    await page.waitForFunction(() => /weights\.pt \(cheff, 57,317 parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 60000 });
    // A 16-bit input made by the CLI.
    const outDir = join(scratch, 'sixteen');
    execFileSync(dxr, ['restore', fixtureImage, '-o', outDir, '--weights', join(tiny, 'weights.pt'), '--config', join(tiny, 'config.json'),
      '--steps', '1', '--bits', '16'], { stdio: 'pipe' });
    await restore(page, join(outDir, 'public_0_blur_64x64_ref.png'), { steps: 2 });
    await page.waitForFunction(() => /Done/.test(document.getElementById('progress-text').textContent), null, { timeout: 300000 });
    // A checkpoint that is not one: a clear error, and the loaded model stays.
    const junk = join(scratch, 'junk.safetensors');
    writeFileSync(junk, 'not a checkpoint at all');
    await page.setInputFiles('#model-file', junk);
    await page.waitForFunction(() => /junk\.safetensors: .*(checkpoint|unrecognised)/.test(document.getElementById('error').textContent), null, { timeout: 60000 });
    assert.match(await page.textContent('#model-status'), /Kept the previous model/);
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});

test('falls back to the CPU without WebGPU', async () => {
  const { ctx, page } = await open({ webgpu: false });
  try {
    assert.match(await page.textContent('#adapter'), /CPU/);
    await restore(page, fixtureImage, { steps: 1 });
    await page.waitForFunction(() => /Done/.test(document.getElementById('progress-text').textContent), null, { timeout: 300000 });
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
    await page.waitForFunction(() => /Done/.test(document.getElementById('progress-text').textContent), null, { timeout: 600000 });
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
