// A GPU device lost in the middle of a restoration (the test destroys it): the page names what
// happened, the engine is restarted with the model, and the next run works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratch, open, restore, setSettings, greyPng } from './helpers.mjs';

test('a GPU device lost mid-run is reported by name and the next run works', async () => {
  const file = join(scratch, 'lost.png');
  writeFileSync(file, greyPng(64, 64, (x, y) => (x * 3 + y * 5) % 256));
  const { ctx, page, errors } = await open();
  try {
    const worker = page.workers()[0];
    assert.ok(await worker.evaluate(() => self.gpuDevices.length) > 0, 'the engine opened no GPU device');
    await page.selectOption('#restore-scale', 'image');
    await restore(page, [file], { sampler: 'ddim', steps: 60, seed: 2 });
    // once the run is under way, the device goes
    await page.waitForFunction(() => document.getElementById('progress').value > 0, null, { timeout: 300000 });
    await worker.evaluate(() => self.gpuDevices.forEach((d) => d.destroy()));
    const item = '#queue li[data-name="lost.png"]';
    await page.waitForFunction((sel) => document.querySelector(sel).dataset.state === 'failed', item, { timeout: 300000 });
    const status = await page.textContent(`${item} .status`);
    const shown = await page.textContent('#error');
    console.log(`device loss: item "${status}"; page "${shown}"`);
    assert.match(status, /the GPU device was lost \(destroyed/);
    // the restarted engine has the model again, and a run completes
    // a fresh worker replaced the broken one
    for (let t = 0; t < 600 && page.workers().every((w) => w === worker); t++) await page.waitForTimeout(100);
    assert.ok(page.workers().some((w) => w !== worker), 'the broken worker was not replaced');
    await page.waitForFunction(() => /parameters/.test(document.getElementById('model-status').textContent), null, { timeout: 300000 });
    await setSettings(page, { sampler: 'ddim', steps: 2, seed: 2 });
    await page.waitForFunction(() => !document.querySelector('#queue li button.rerun').disabled, null, { timeout: 300000 });
    await page.click(`${item} button.rerun`);
    await page.waitForFunction((sel) => document.querySelector(sel).dataset.state === 'done', item, { timeout: 300000 });
    assert.match(await page.textContent(`${item} .status`), /^done · ddim, 2 steps, seed 2/);
    const fresh = page.workers().find((w) => w !== worker);
    assert.ok(await fresh.evaluate(() => self.gpuDevices.length) > 0, 'the restarted engine has no GPU device');
    // the only console errors are the lost device's own
    assert.deepEqual(errors.filter((e) => !/device|destroy|lost|unreachable|engine|panicked|RuntimeError/i.test(e)), []);
  } finally {
    await ctx.close();
  }
});
