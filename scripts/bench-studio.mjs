// The DRR studio's speed in headless Chromium (WebGPU, and the CPU fallback) against native
// `dxr drr-bench` on the same machine in the same run: CT load time (bytes → ready to render),
// medians of the render time at 256² and 512² (trace only, and the whole render with nodules
// and labels), and the rate of coarse re-renders while a slider is dragged.
// Usage: node scripts/bench-studio.mjs [--repeats 5] [--ct data/ct/cxr.nii.gz]
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { arg, dxr, median, openPage, root, scratchDir, servePage } from './bench-page.mjs';

const repeats = Number(arg('repeats', 5));
const ct = resolve(arg('ct', join(root, 'data/ct/cxr.nii.gz')));
const scratch = scratchDir('bench-studio');
const { port, server } = await servePage();

async function browserRun(webgpu) {
  const { ctx, page } = await openPage(scratch, webgpu);
  await page.goto(`http://127.0.0.1:${port}/index.html`);
  await page.waitForFunction(() => window.dxrStudio, null, { timeout: 120000 });
  await page.setInputFiles('#ct-file', ct);
  await page.waitForSelector('#studio[data-state="ready"]', { timeout: 900000 });
  const loadMs = Number(await page.getAttribute('#studio', 'data-load-ms'));
  const renderer = await page.textContent('#studio-status');
  // renders straight through the engine, each with a slightly different pose
  const times = await page.evaluate(async ({ repeats }) => {
    const s = window.dxrStudio;
    const out = {};
    for (const [pixels, nodules] of [[256, 0], [512, 0], [256, 3], [512, 3]]) {
      const trace = []; const total = [];
      for (let k = 0; k <= repeats; k++) {
        const settings = { ...s.settings(), pixels, nodules, seed: k, rotation_deg: [0, 0, 0.1 * k] };
        const t0 = performance.now();
        const r = await s.engine.call('studioRender', { settings, preferGpu: s.preferGpu });
        const t = performance.now() - t0;
        if (k > 0) { trace.push(r.trace_ms); total.push(t); } // the first one warms up (pipelines)
      }
      out[`${pixels}/${nodules}`] = { trace, total };
    }
    // a drag: coarse renders back to back, as the slider's input events ask for them
    const t0 = performance.now(); let n = 0;
    while (performance.now() - t0 < 3000) {
      const settings = { ...s.settings({ coarse: true }), rotation_deg: [0, 0, (n % 40) - 20] };
      await s.engine.call('studioRender', { settings, preferGpu: s.preferGpu });
      n++;
    }
    out.drag = n / ((performance.now() - t0) / 1000);
    return out;
  }, { repeats });
  await ctx.close();
  return { loadMs, renderer: renderer.split(' on ')[1]?.split(' in ')[0] ?? renderer, times };
}

const gpu = await browserRun(true);
const cpu = await browserRun(false);
server.kill();

// native: the same CT and sizes (traversal medians over `repeats` views)
const nativeOut = execFileSync(dxr, ['drr-bench', '--ct', ct, '--size', '256', '512', '--repeats', String(repeats), '--any-adapter'],
  { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const native = {};
for (const line of nativeOut.split('\n')) {
  const m = /^\| (\d+)² \| Siddon–Jacobs traversal, (CPU|GPU)[^|]* \| ([\d.]+) \|/.exec(line);
  if (m) native[`${m[1]}/${m[2]}`] = 1000 * Number(m[3]);
}
const t0 = Date.now();
execFileSync(dxr, ['drr', '--ct', ct, '--out', join(scratch, 'native'), '--count', '1', '--device', 'cpu'], { stdio: 'ignore' });
const nativeLoad = Date.now() - t0;

const f = (ms) => (ms === undefined ? '—' : ms.toFixed(1));
console.log(`DRR studio, ${ct}, medians of ${repeats} renders after a warm-up`);
console.log(`CT load (bytes → ready): page WebGPU ${(gpu.loadMs / 1000).toFixed(1)} s, page CPU ${(cpu.loadMs / 1000).toFixed(1)} s; `
  + `native \`dxr drr --count 1\` (load + one view + files) ${(nativeLoad / 1000).toFixed(1)} s`);
console.log('| size | page WebGPU trace ms | page CPU trace ms | native CPU ms | native GPU ms | page WebGPU / native CPU | page CPU / native CPU | page WebGPU whole render (3 nodules) ms | page CPU whole render (3 nodules) ms |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const px of [256, 512]) {
  const g = median(gpu.times[`${px}/0`].trace); const c = median(cpu.times[`${px}/0`].trace);
  const n = native[`${px}/CPU`];
  console.log(`| ${px}² | ${f(g)} | ${f(c)} | ${f(n)} | ${f(native[`${px}/GPU`])} | ${(g / n).toFixed(2)} | ${(c / n).toFixed(2)} | `
    + `${f(median(gpu.times[`${px}/3`].total))} | ${f(median(cpu.times[`${px}/3`].total))} |`);
}
console.log(`drag (coarse 128² re-renders back to back): WebGPU ${gpu.times.drag.toFixed(1)}/s, CPU ${cpu.times.drag.toFixed(1)}/s`);
console.log(`page renderers: ${gpu.renderer} | ${cpu.renderer}`);
