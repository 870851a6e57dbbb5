// Soak: the page restores a queue of 50 images with its memory flat — the engine's linear memory
// (in the worker; it can only grow, so a leak there shows), the page's JS heap after a garbage
// collection, and one worker throughout. GPU buffers live inside the engine's wgpu memory pool,
// which the page cannot see; the linear memory holds the pool's bookkeeping, not the buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratch, open, restore, greyPng } from './helpers.mjs';

const n = 50;

test(`a queue of ${n} images restores with flat memory and no leaked workers`, async () => {
  const files = Array.from({ length: n }, (_, k) => {
    const path = join(scratch, `soak${String(k).padStart(2, '0')}.png`);
    writeFileSync(path, greyPng(32, 32, (x, y) => (x * (k % 7 + 1) + y * 3 + k) % 256));
    return path;
  });
  const { ctx, page, errors } = await open();
  try {
    const cdp = await ctx.newCDPSession(page);
    const measure = async () => {
      await cdp.send('HeapProfiler.collectGarbage');
      const { usedSize } = await cdp.send('Runtime.getHeapUsage');
      const workers = page.workers();
      const wasm = workers.length ? await workers[0].evaluate(() => self.engineMemory?.buffer.byteLength ?? 0) : 0;
      return { heap: usedSize, wasm, workers: workers.length };
    };
    const doneCount = () => page.$$eval('#queue li[data-state="done"]', (l) => l.length);
    await page.selectOption('#restore-scale', 'image');
    await restore(page, files, { sampler: 'ddim', steps: 2, seed: 1 });
    await page.waitForFunction(() => document.querySelectorAll('#queue li[data-state="done"]').length >= 10, null, { timeout: 600000 });
    const early = { done: await doneCount(), ...(await measure()) };
    await page.waitForFunction((n) => document.querySelectorAll('#queue li[data-state="done"]').length === n, n, { timeout: 1200000 });
    const late = { done: await doneCount(), ...(await measure()) };
    console.log(`soak (page): after ${early.done} images heap ${(early.heap / 2 ** 20).toFixed(1)} MiB, engine memory `
      + `${(early.wasm / 2 ** 20).toFixed(1)} MiB, ${early.workers} worker(s); after ${late.done}: heap `
      + `${(late.heap / 2 ** 20).toFixed(1)} MiB, engine ${(late.wasm / 2 ** 20).toFixed(1)} MiB, ${late.workers} worker(s)`);
    assert.equal(await page.$$eval('#queue li[data-state="failed"]', (l) => l.length), 0);
    assert.ok(early.wasm > 0, 'the engine memory was not readable');
    assert.equal(late.workers, 1, 'workers leaked');
    // the engine's memory does not grow past what the first images needed (1 MiB of slack)
    assert.ok(late.wasm <= early.wasm + 2 ** 20, `engine memory grew ${early.wasm} → ${late.wasm}`);
    // every item keeps its result by design (32² each: ~10 KB with its PNGs); beyond that, flat
    assert.ok(late.heap <= early.heap + 40 * 16 * 1024 + 4 * 2 ** 20, `JS heap grew ${early.heap} → ${late.heap}`);
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
  }
});
