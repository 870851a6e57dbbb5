// One image through the engine: decode, plan, restore (progress, previews, Cancel through an
// AbortSignal), and PNG encoding for a download. The result it builds is what the viewer shows
// and the queue keeps:
//   { name (file name without extension), width, height, before (input values),
//     after, afterWidth, afterHeight (the restoration, or its latest preview),
//     boxes (nodule boxes in input pixels, or null), settings, elapsed, complete }

import { IMAGE_BYTES, checkSize } from './limits.js';

const stem = (fileName) => fileName.replace(/\.[^.]+$/, '');

/** The settings of a run in a few words, e.g. "ddim, 3 steps, seed 5". */
export function describeSettings(s) {
  return `${s.sampler}, ${s.steps} step${s.steps === 1 ? '' : 's'}, seed ${s.seed}${s.keepPixels ? ', own pixels' : ''}`;
}

/**
 * Restores `file`. `settings(pixelMm)`: the restore settings, read once the image is decoded;
 * `onImage(result)`: the decoded input, before any restoration; `onPlan(plan)`; `onStep(progress,
 * result)` after each step (`result.after` then holds the latest preview, if any).
 */
export async function restoreFile(engine, file, { boxes = null, settings, signal, onImage, onPlan, onStep }) {
  checkSize(file, IMAGE_BYTES, 'images');
  const bytes = await file.arrayBuffer();
  const img = await engine.call('decode', { bytes }, { transfer: [bytes], signal });
  const { width, height } = img;
  const result = { name: stem(file.name), width, height, before: img.data, after: null, afterWidth: width,
    afterHeight: height, boxes, settings: settings(img.pixelMm), elapsed: null, complete: false };
  onImage(result);
  const request = { data: img.data, width, height, settings: result.settings }; // postMessage copies it
  const plan = await engine.call('plan', request, { signal });
  onPlan(plan);
  const out = await engine.call('restore', request, {
    signal,
    onProgress: (progress) => {
      if (progress.preview) Object.assign(result, { after: progress.preview, afterWidth: plan.output[0], afterHeight: plan.output[1] });
      onStep(progress, result);
    },
  });
  return Object.assign(result, { after: out.data, afterWidth: out.width, afterHeight: out.height, elapsed: out.elapsed, complete: true });
}

/** Encodes a finished result as an 8- or 16-bit PNG and hands it to the browser as a download. */
export async function downloadPng(engine, result, bits) {
  const png = await engine.call('encode', { data: result.after, width: result.afterWidth, height: result.afterHeight, bits });
  const url = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
  const a = document.createElement('a');
  a.href = url; a.download = `${result.name}_restored_${bits}bit.png`;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
