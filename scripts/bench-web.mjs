// Browser vs native benchmark: first-load time of the page, per-step restoration time in headless
// Chromium (WebGPU, and the CPU fallback) and natively (`dxr bench`) on the same machine, their
// ratio, and the wasm size before/after wasm-opt (npm binaryen), raw and gzipped.
// Usage: node scripts/bench-web.mjs [--size 64] [--steps 5] [--config FILE]
import { execFileSync } from 'node:child_process';
import { writeFileSync, statSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { deflateSync, gzipSync, crc32 } from 'node:zlib';
import { arg, dxr, openPage, root, scratchDir, servePage } from './bench-page.mjs';

const size = Number(arg('size', 64));
const steps = Number(arg('steps', 5));
const shared = process.env.DXR_SHARED || resolve(root, '..', 'shared');
const config = arg('config', join(shared, 'fixtures/cheff/small/config.json'));
const scratch = scratchDir('bench');

function png(w, h) {
  const raw = Buffer.alloc((w + 1) * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = (x * 7 + y * 3) % 256;
  const chunk = (type, data) => {
    const b = Buffer.alloc(12 + data.length);
    b.writeUInt32BE(data.length, 0); b.write(type, 4); data.copy(b, 8);
    b.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type), data])) >>> 0, 8 + data.length);
    return b;
  };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
const image = join(scratch, `bench_${size}.png`);
writeFileSync(image, png(size, size));

const { port, server } = await servePage();

async function browserRun(webgpu) {
  const { ctx, page } = await openPage(scratch, webgpu);
  const t0 = Date.now();
  await page.goto(`http://127.0.0.1:${port}/index.html`);
  await page.waitForFunction(() => /parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 300000 });
  const firstLoad = Date.now() - t0;
  const run = async (n) => {
    await page.evaluate((n) => { const el = document.getElementById('steps'); el.value = String(n); el.dispatchEvent(new Event('input')); }, n);
    await page.selectOption('#sampler', 'ddim');
    await page.selectOption('#restore-scale', 'image');
    await page.setInputFiles('#image-file', image);
    const before = await page.evaluate(() => document.body.dataset.lastRestore || '');
    await page.click('#run');
    await page.waitForFunction((b) => (document.body.dataset.lastRestore || '') !== b, before, { timeout: 1800000 });
    const text = await page.textContent('#progress-text');
    return Number(/\((\d+) ms\/step\)/.exec(text)[1]);
  };
  await run(1); // warm-up: shader compilation, allocation
  const msPerStep = await run(steps);
  const adapter = await page.textContent('#adapter');
  await ctx.close();
  return { firstLoad, msPerStep, adapter };
}

const gpu = await browserRun(true);
const cpu = await browserRun(false);
server.kill();

const nativeOut = execFileSync(dxr, ['bench', '--config', config, '--size', String(size), '--runs', String(steps),
  '--device', 'ndarray', 'flex', 'gpu']).toString();
const native = {};
for (const line of nativeOut.split('\n')) {
  const m = /^\| [^|]+ \| \d+² \| (ndarray|flex|wgpu) \| ([\d.]+) \|/.exec(line);
  if (m) native[m[1]] = Number(m[2]);
}

// build-web.sh optimises the wasm with wasm-opt and records both sizes
const wasm = join(root, 'www/pkg/dxr_bg.wasm');
const sizes = JSON.parse(readFileSync(join(root, 'www/pkg/sizes.json'), 'utf8'));
const raw = sizes.raw; const opt = statSync(wasm).size;
const optGz = gzipSync(readFileSync(wasm)).length;
const mb = (b) => (b / 1048576).toFixed(1);
console.log(`model ${config}, ${size}×${size}, DDIM, ${steps} timed steps after a 1-step warm-up`);
console.log('| where | ms/step | ratio to native CPU |');
console.log('|---|---|---|');
for (const [name, ms] of [['native CPU (ndarray)', native.ndarray], ['native CPU (flex)', native.flex], ['native wgpu', native.wgpu], [`browser WebGPU (${gpu.adapter})`, gpu.msPerStep], ['browser CPU fallback (flex in wasm, SIMD128, 1 thread)', cpu.msPerStep]]) {
  if (ms !== undefined) console.log(`| ${name} | ${ms.toFixed(0)} | ${(ms / native.flex).toFixed(2)} (to flex) |`);
}
console.log(`first load (page + wasm + model, cold cache): WebGPU ${gpu.firstLoad} ms, CPU ${cpu.firstLoad} ms`);
console.log(`wasm: ${mb(raw)} MB after wasm-bindgen; ${mb(opt)} MB (${mb(optGz)} MB gzipped) served, after wasm-opt -Oz`);
