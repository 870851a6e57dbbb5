// The viewer in a real browser, on a test image whose every pixel is known: the pixel readout,
// window/level/invert on the pixels actually drawn, wheel and key zoom anchored where they should
// be, the split line (keys, drag) and what the screen shows on either side of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratch, open, setRange, restore, waitForText, download, canvasRed, assertPixels, pixelArray, greyPng, readPng } from './helpers.mjs';

const W = 64, H = 48;
const value = (x, y) => (x * 4 + y * 5) % 256; // the test image's 8-bit samples

/** The before canvas's placement: stage origin on screen, and translate/scale of the image. */
async function geometry(page) {
  await page.locator('#stage').scrollIntoViewIfNeeded();
  return page.evaluate(() => {
    const stage = document.getElementById('stage');
    const r = stage.getBoundingClientRect();
    const m = /translate\(([-\d.e]+)px, ([-\d.e]+)px\) scale\(([-\d.e]+)\)/.exec(document.getElementById('canvas-before').style.transform);
    return { left: r.left + stage.clientLeft, top: r.top + stage.clientTop, width: stage.clientWidth, height: stage.clientHeight,
      x: Number(m[1]), y: Number(m[2]), scale: Number(m[3]) };
  });
}
/** The image point (in input pixels) under screen point (sx, sy). */
const imagePoint = (g, sx, sy) => [(sx - g.left - g.x) / g.scale, (sy - g.top - g.y) / g.scale];
/** The screen point at the centre of input pixel (ix, iy). */
const screenPoint = (g, ix, iy) => [g.left + g.x + (ix + 0.5) * g.scale, g.top + g.y + (iy + 0.5) * g.scale];

/** The grey the viewer should draw for value v in [0, 1] at window `win`, level `level`. */
const windowed = (v, win, level, invert = false) => {
  const t = Math.min(1, Math.max(0, (v - (level - win / 2)) / win));
  return Math.round((invert ? 1 - t : t) * 255);
};

/** The screen's grey (red channel) at screen point (sx, sy). */
async function screenGrey(page, sx, sy) {
  const png = readPng(await page.screenshot({ clip: { x: Math.floor(sx), y: Math.floor(sy), width: 1, height: 1 } }));
  return png.at(0, 0, 0);
}

test('the viewer: pixel readout, window/level on the drawn pixels, zoom at the pointer and by keys, the split line', async () => {
  const file = join(scratch, 'ramp.png');
  writeFileSync(file, greyPng(W, H, value));
  const { ctx, page, errors } = await open();
  try {
    await page.selectOption('#restore-scale', 'image');
    await restore(page, file, { steps: 1 });
    await waitForText(page, 'progress-text', /Done/);
    // The restored values, from the page's own 16-bit download of this result.
    const restored = readPng((await download(page, '#download16')).bytes);
    assert.deepEqual([restored.width, restored.height, restored.bits], [W, H, 16]);
    const restoredValue = (x, y) => restored.at(x, y) / 65535;

    // Pixel readout at the centre of pixel (10, 20): the input's known value, the result's value.
    let g = await geometry(page);
    await page.mouse.move(...screenPoint(g, 10, 20));
    const m = /^x (\d+), y (\d+) · input ([\d.]+) · restored ([\d.]+)$/.exec(await page.textContent('#pixel'));
    assert.ok(m, await page.textContent('#pixel'));
    assert.deepEqual([Number(m[1]), Number(m[2])], [10, 20]);
    assert.equal(m[3], (value(10, 20) / 255).toFixed(4));
    assert.ok(Math.abs(Number(m[4]) - restoredValue(10, 20)) <= 1.01e-4, `restored ${m[4]} vs ${restoredValue(10, 20)}`);

    // Window/level/invert on the canvases' pixels: at window 1, level 0.5 the input's own bytes.
    const inputs = pixelArray(W, H, (x, y) => value(x, y) / 255);
    const outputs = pixelArray(W, H, restoredValue);
    const before = await canvasRed(page, 'canvas-before');
    assert.deepEqual([before.width, before.height], [W, H]);
    assert.deepEqual(before.red, inputs.map((v) => Math.round(v * 255)));
    for (const [win, level, invert] of [[0.5, 0.25, false], [0.2, 0.6, false], [0.5, 0.25, true]]) {
      await setRange(page, 'window', win);
      await setRange(page, 'level', level);
      await page.setChecked('#invert', invert);
      const what = `window ${win}, level ${level}${invert ? ', inverted' : ''}`;
      assertPixels((await canvasRed(page, 'canvas-before')).red, inputs.map((v) => windowed(v, win, level, invert)), 1, `input at ${what}`);
      assertPixels((await canvasRed(page, 'canvas-after')).red, outputs.map((v) => windowed(v, win, level, invert)), 1, `result at ${what}`);
    }
    // it did change the picture: at window 0.2, level 0.6 a third of the ramp is black
    assert.ok(inputs.filter((v) => windowed(v, 0.2, 0.6) === 0).length > W * H / 3);
    await page.setChecked('#invert', false);
    await setRange(page, 'window', 1);
    await setRange(page, 'level', 0.5);

    // Wheel zoom keeps the image point under the pointer where it is.
    g = await geometry(page);
    // (at whole screen pixels: a wheel event's clientX/Y are whole numbers)
    const [sx, sy] = [Math.round(g.left + g.x + 40.3 * g.scale), Math.round(g.top + g.y + 12.7 * g.scale)];
    await page.mouse.move(sx, sy);
    const under = imagePoint(g, sx, sy);
    const fitScale = g.scale;
    for (const [delta, factor] of [[-100, 1.2], [-100, 1.44], [100, 1.2]]) {
      await page.mouse.wheel(0, delta);
      await page.waitForFunction((s) => Math.abs(Number(/scale\(([-\d.e]+)\)/.exec(document.getElementById('canvas-before').style.transform)[1]) - s) > 1e-9, g.scale);
      const z = await geometry(page);
      assert.ok(Math.abs(z.scale / fitScale - factor) < 1e-3, `zoom ×${z.scale / fitScale} after wheel ${delta}, expected ×${factor}`);
      const now = imagePoint(z, sx, sy);
      assert.ok(Math.hypot(now[0] - under[0], now[1] - under[1]) < 0.01, `the point under the pointer moved from ${under} to ${now}`);
      assert.match(await page.textContent('#pixel'), /^x 40, y 12 · /);
      g = z;
    }

    // Keys, as the stage's description says: + zooms in at the centre, ArrowLeft pans by 20 px.
    const help = await page.evaluate(() => document.getElementById(document.getElementById('stage').getAttribute('aria-describedby')).textContent);
    assert.match(help, /\+ or = zooms in/); assert.match(help, /- zooms out/); assert.match(help, /arrow keys pan by 20 px/);
    await page.focus('#stage');
    const centre = [g.left + g.width / 2, g.top + g.height / 2]; // where the stage's keys zoom
    const atCentre = imagePoint(g, ...centre);
    await page.keyboard.press('+');
    const k = await geometry(page);
    assert.ok(Math.abs(k.scale / g.scale - 1.2) < 1e-3, `+ zoomed by ${k.scale / g.scale}`);
    const nowAtCentre = imagePoint(k, ...centre);
    assert.ok(Math.hypot(nowAtCentre[0] - atCentre[0], nowAtCentre[1] - atCentre[1]) < 0.01, '+ zooms at the centre');
    await page.keyboard.press('ArrowLeft');
    assert.ok(Math.abs((await geometry(page)).x - (k.x + 20)) < 0.01, 'ArrowLeft pans by 20 px');

    // The split line: its keys (as its description says), a drag, and what the screen shows.
    await page.click('#reset-view');
    g = await geometry(page);
    assert.match(await page.evaluate(() => document.getElementById(document.getElementById('split-handle').getAttribute('aria-describedby')).textContent),
      /← and → move it by 5 %/);
    assert.equal(await page.getAttribute('#split-handle', 'aria-valuenow'), '50');
    await page.focus('#split-handle');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.getAttribute('#split-handle', 'aria-valuenow'), '60');
    const clip = await page.evaluate(() => document.getElementById('canvas-after').style.clipPath);
    const clipX = Number(/inset\(0(?:px)? 0(?:px)? 0(?:px)? ([\d.]+)px\)/.exec(clip)[1]);
    assert.ok(Math.abs(clipX - (0.6 * g.width - g.x) / g.scale) < 0.01, `clip ${clip}`);
    const box = await page.locator('#split-handle').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(g.left + 0.25 * g.width, box.y + box.height / 2, { steps: 4 });
    await page.mouse.up();
    assert.equal(await page.getAttribute('#split-handle', 'aria-valuenow'), '25');
    // Left of the line the screen shows the input, right of it the result (window 1, level 0.5).
    const line = (0.25 * g.width - g.x) / g.scale; // the split in input pixels
    const [left, right, row] = [Math.floor(line) - 3, Math.ceil(line) + 3, 30];
    assert.ok(left >= 0 && right < W, `split at input x ${line}`);
    await page.mouse.move(0, 0); // no pointer over the stage
    for (const [ix, expected, what] of [[left, value(left, row), 'input'], [right, Math.round(restoredValue(right, row) * 255), 'result']]) {
      const grey = await screenGrey(page, ...screenPoint(g, ix, row));
      assert.ok(Math.abs(grey - expected) <= 2, `screen at input pixel (${ix}, ${row}) shows ${grey}, the ${what} is ${expected}`);
    }
    assert.deepEqual(errors, [], 'console errors');
  } finally { await ctx.close(); }
});
