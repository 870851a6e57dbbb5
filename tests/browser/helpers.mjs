// Shared by the browser tests: the page served from the repository (scripts/serve.py), Debian's
// Chromium through playwright-core (headless, WebGPU on SwiftShader via --enable-unsafe-webgpu),
// the page's inputs, downloads, and small grey PNGs written and read here (no image library).
import { before, after } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, inflateSync, crc32 } from 'node:zlib';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const shared = process.env.DXR_SHARED || resolve(root, '..', 'shared');
const targetDir = process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache', 'dxr-target');
export const dxr = join(targetDir, 'release', 'dxr');
export const defaultModel = join(root, 'www/models/default.safetensors');
export const artifacts = process.env.DXR_ARTIFACTS || join(root, 'out', 'browser');
export const fixtureImage = join(shared, 'fixtures', 'metrics', 'public_0_blur_64x64_ref.png');
export const scratch = mkdtempSync(join(tmpdir(), 'dxr-browser-'));
mkdirSync(artifacts, { recursive: true });

const port = 18000 + Math.floor(Math.random() * 1000);
export const origin = `http://127.0.0.1:${port}`;
const baseArgs = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];

// One server per test file, up before its first test.
let server;
before(async () => {
  server = spawn('python3', [join(root, 'scripts', 'serve.py'), String(port)], { env: { ...process.env, DXR_SERVE_QUIET: '1' }, stdio: 'pipe' });
  for (let i = 0; i < 100; i++) {
    try { const r = await fetch(`${origin}/index.html`); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start');
});
after(() => server?.kill());

/** A fresh browser profile on the page (`url`: ours by default), once the default model has loaded. */
export async function open({ webgpu = true, url = `${origin}/index.html` } = {}) {
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
  await page.goto(url);
  await waitForModel(page);
  return { ctx, page, errors, requests };
}

/** Waits until the page says which model it loaded. */
export async function waitForModel(page) {
  await page.waitForFunction(() => /parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 120000 });
}

export async function setRange(page, id, value) {
  await page.evaluate(([id, value]) => {
    const el = document.getElementById(id); el.value = String(value);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, [id, value]);
}

/** Sets the sampler, steps, seed and tone (0: the restoration as the CLI gives it by default). */
export async function setSettings(page, { sampler = 'ddim', steps = 3, seed = 5, tone = 0 } = {}) {
  await page.selectOption('#sampler', sampler);
  await setRange(page, 'steps', steps);
  await setRange(page, 'tone', tone);
  await page.fill('#seed', String(seed));
}

/** Sets the settings, queues `files` and presses Restore. */
export async function restore(page, files, settings = {}) {
  await setSettings(page, settings);
  await page.setInputFiles('#image-file', files);
  await page.click('#run');
}

/** Waits until element `id`'s text matches `pattern`. */
export async function waitForText(page, id, pattern, timeout = 300000) {
  await page.waitForFunction(([id, source, flags]) => new RegExp(source, flags).test(document.getElementById(id).textContent),
    [id, pattern.source, pattern.flags], { timeout });
}

/** Clicks `selector` and saves the download it starts: {name, path, bytes}. */
export async function download(page, selector) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const name = d.suggestedFilename();
  const path = join(mkdtempSync(join(scratch, 'download-')), name);
  await d.saveAs(path);
  return { name, path, bytes: readFileSync(path) };
}

/** A canvas's size and the red channel of its pixels, row-major: {width, height, red}. */
export function canvasRed(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return { width: c.width, height: c.height, red: Array.from({ length: c.width * c.height }, (_, i) => d[4 * i]) };
  }, id);
}

/** `f(x, y)` for every pixel of a w×h image, row-major. */
export const pixelArray = (w, h, f) => Array.from({ length: w * h }, (_, i) => f(i % w, Math.floor(i / w)));

/** Asserts that two arrays of pixel values differ by at most `tolerance` anywhere. */
export function assertPixels(actual, expected, tolerance, what) {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} pixels, expected ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tolerance, `${what}: the pixels differ from the expected ones by up to ${worst}`);
}

/** Restores `file` with the native CLI into a fresh folder and returns the output's path. */
export function nativeRestore(file, args) {
  const out = mkdtempSync(join(scratch, 'native-'));
  execFileSync(dxr, ['restore', file, '-o', out, ...args], { stdio: 'pipe' });
  return join(out, basename(file));
}

/** `dxr compare a b` as JSON ({max_abs_8bit, …}). */
export function compare(a, b) {
  return JSON.parse(execFileSync(dxr, ['compare', a, b]).toString());
}

// ---- PNG ------------------------------------------------------------------------------------
const SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
const CHANNELS = { 0: 1, 2: 3, 4: 2, 6: 4 }; // by colour type: grey, RGB, grey+alpha, RGBA

function chunk(type, data) {
  const b = Buffer.alloc(12 + data.length);
  b.writeUInt32BE(data.length, 0); b.write(type, 4, 'latin1'); data.copy(b, 8);
  b.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])) >>> 0, 8 + data.length);
  return b;
}

/** A grey PNG of `bits` (8 or 16) whose sample at (x, y) is the integer `value(x, y)`. */
export function greyPng(width, height, value, bits = 8) {
  const bytes = bits / 8;
  const raw = Buffer.alloc((1 + width * bytes) * height); // filter byte 0 (none) on each row
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = y * (1 + width * bytes) + 1 + x * bytes;
      if (bits === 16) raw.writeUInt16BE(value(x, y), at); else raw[at] = value(x, y);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4); ihdr[8] = bits; ihdr[9] = 0;
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const paeth = (a, b, c) => {
  const p = a + b - c; const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
};

/**
 * Reads an 8- or 16-bit, non-interlaced grey or RGB(A) PNG: {width, height, bits, channels,
 * at(x, y, channel = 0)} with samples as integers.
 */
export function readPng(buf) {
  if (!buf.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  let off = 8; let header; const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off); const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), bits: data[8], colour: data[9], interlace: data[12] };
    if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const { width, height, bits, colour, interlace } = header;
  const channels = CHANNELS[colour];
  if (!channels || (bits !== 8 && bits !== 16) || interlace) throw new Error(`unsupported PNG: colour ${colour}, ${bits} bits, interlace ${interlace}`);
  const bpp = channels * bits / 8; const stride = width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i];
      const a = i >= bpp ? px[y * stride + i - bpp] : 0;
      const b = y > 0 ? px[(y - 1) * stride + i] : 0;
      const c = i >= bpp && y > 0 ? px[(y - 1) * stride + i - bpp] : 0;
      const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      px[y * stride + i] = (x + predictor) & 0xff;
    }
  }
  const at = (x, y, channel = 0) => {
    const i = y * stride + x * bpp + channel * bits / 8;
    return bits === 16 ? px.readUInt16BE(i) : px[i];
  };
  return { width, height, bits, channels, at };
}
