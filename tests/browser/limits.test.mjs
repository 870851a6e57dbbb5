// The page refuses files over its size limits (www/limits.js) from `File.size`, before reading
// them: a sparse file of 600 MiB (an image) or 1.1 GiB (a checkpoint) costs no disk here and would
// cost the page the whole copy; the refusal names the file and the limit, and the page goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, ftruncateSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratch, open, restore, greyPng } from './helpers.mjs';

const sparse = (name, bytes) => {
  const path = join(scratch, name);
  const fd = openSync(path, 'w'); ftruncateSync(fd, bytes); closeSync(fd);
  return path;
};

test('files over the page limits are refused by name before they are read, and the page keeps working', async () => {
  const bigImage = sparse('huge.png', 600 * 2 ** 20);
  const bigModel = sparse('huge.safetensors', 1100 * 2 ** 20);
  const small = join(scratch, 'fine.png');
  writeFileSync(small, greyPng(32, 32, (x, y) => (x + y) % 256));
  const { ctx, page } = await open();
  try {
    const modelBefore = await page.textContent('#model-status');
    await page.setInputFiles('#model-file', bigModel);
    await page.waitForFunction(() => /over the 1024 MiB limit/.test(document.getElementById('error').textContent), null, { timeout: 60000 });
    assert.match(await page.textContent('#error'), /^huge\.safetensors: the file has 1153433600 bytes, over the 1024 MiB limit for checkpoints in the page$/);
    assert.equal(await page.textContent('#model-status'), modelBefore, 'the loaded model was touched');

    await page.selectOption('#restore-scale', 'image');
    await restore(page, [bigImage, small], { sampler: 'ddim', steps: 2, seed: 1 });
    const item = (name) => `#queue li[data-name="${name}"]`;
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.state === 'done', item('fine.png'), { timeout: 300000 });
    assert.equal(await page.getAttribute(item('huge.png'), 'data-state'), 'failed');
    assert.match(await page.textContent(`${item('huge.png')} .status`), /the file has 629145600 bytes, over the 512 MiB limit for images in the page/);
  } finally {
    await ctx.close();
  }
});
