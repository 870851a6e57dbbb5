// Seconds per denoising step of the default model in the page, on the engines a machine without a
// GPU offers: WebGPU on the browser's software adapter, and the CPU fallback. It restores the
// first example (a 256×256 DRR) with 4 steps after a 1-step warm-up and prints the medians that
// www/engine-notice.js quotes. Usage: node scripts/measure-engines.mjs [--repeats 3]
import { arg, median, openPage, scratchDir, servePage } from './bench-page.mjs';

const repeats = Number(arg('repeats', 3));
const scratch = scratchDir('measure-engines');
const { port, server } = await servePage();

async function secondsPerStep(webgpu) {
  const { ctx, page } = await openPage(scratch, webgpu);
  page.on('crash', () => console.error('page crashed'));
  page.on('close', () => console.error('page closed'));
  page.on('pageerror', (e) => console.error('pageerror', String(e)));
  await page.goto(`http://127.0.0.1:${port}/index.html`);
  await page.waitForFunction(() => /parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 300000 });
  await page.waitForSelector('#examples button.example', { timeout: 60000 });
  const run = async (steps) => {
    await page.evaluate((n) => { const el = document.getElementById('steps'); el.value = String(n); el.dispatchEvent(new Event('input')); }, steps);
    const before = await page.evaluate(() => document.body.dataset.lastRestore || '');
    await page.click('#examples button.example >> nth=0');
    await page.waitForFunction((b) => (document.body.dataset.lastRestore || '') !== b, before, { timeout: 1800000 });
    return Number(/\((\d+) ms\/step\)/.exec(await page.textContent('#progress-text'))[1]) / 1000;
  };
  console.error(`${webgpu ? "webgpu" : "cpu"}: model loaded`);
  await run(1);
  console.error("warm-up done");
  const times = [];
  for (let k = 0; k < repeats; k++) times.push(await run(4));
  const engine = await page.getAttribute('#adapter', 'data-engine');
  await ctx.close();
  return { engine, times };
}

const gpu = await secondsPerStep(true);
const cpu = await secondsPerStep(false);
server.kill();
for (const r of [gpu, cpu]) {
  console.log(`${r.engine}: median ${median(r.times).toFixed(2)} s/step (${r.times.map((t) => t.toFixed(2)).join(', ')})`);
}
