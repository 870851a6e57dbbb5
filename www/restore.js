// One image through the engine: decode, plan, restore (progress, previews, Cancel through an
// AbortSignal), and PNG encoding for a download. The result it builds is what the viewer shows
// and the queue keeps:
//   { name (file name without extension), width, height, before (input values),
//     after, afterWidth, afterHeight (the restoration, or its latest preview, as the engine
//     gave it: never tone-mapped),
//     toneCurve (the tone curve of the model that restored it, or null; tone.js),
//     boxes (nodule boxes in input pixels, or null), settings, elapsed, complete,
//     presets (the file's own windows for the viewer: [{label, level, width}]) }
// settings.tone is the strength of the tone curve the result is shown and downloaded at: the
// page's choice, not the engine's, so it is not sent to the engine (which refuses unknown settings).

import { IMAGE_BYTES, checkSize } from './limits.js';
import { toneMap } from './tone.js';

const stem = (fileName) => fileName.replace(/\.[^.]+$/, '');

/** The settings of a run in a few words, e.g. "ddim, 3 steps, seed 5, tone 40 %". */
export function describeSettings(s) {
  return `${s.sampler}, ${s.steps} step${s.steps === 1 ? '' : 's'}, seed ${s.seed}${s.keepPixels ? ', own pixels' : ''}${
    s.tone > 0 ? `, tone ${Math.round(s.tone * 100)} %` : ''}`;
}

/** What a result shows and downloads: its `after` through its tone curve at `settings.tone`. */
export const tonedAfter = (result) => toneMap(result.after, result.toneCurve, result.settings.tone);

/**
 * Restores `file`. `settings(pixelMm)`: the engine's restore settings, read once the image is
 * decoded; `toneCurve`: the model's tone curve (the result starts at tone 0: the page sets
 * `settings.tone` when it shows it); `onImage(result)`: the decoded input, before any
 * restoration; `onPlan(plan)`; `onStep(progress, result)` after each step (`result.after` then
 * holds the latest preview, if any).
 */
export async function restoreFile(engine, file, { boxes = null, settings, toneCurve = null, signal, onImage, onPlan, onStep }) {
  checkSize(file, IMAGE_BYTES, 'images');
  const bytes = await file.arrayBuffer();
  const img = await engine.call('decode', { bytes }, { transfer: [bytes], signal });
  const { width, height } = img;
  const engineSettings = settings(img.pixelMm);
  const result = { name: stem(file.name), width, height, before: img.data, after: null, afterWidth: width,
    afterHeight: height, toneCurve, boxes, settings: { ...engineSettings, tone: 0 }, elapsed: null, complete: false,
    presets: img.presets };
  onImage(result);
  // a colour DICOM image: shown, never restored
  if (img.refused) throw new Error(img.refused);
  const request = { data: img.data, width, height, settings: engineSettings }; // postMessage copies it
  const plan = await engine.call('plan', request, { signal });
  // a multi-frame DICOM: the first frame is restored, and the plan says so
  if (img.frames > 1) plan.text = `frame 1 of ${img.frames} (dxr restore --frame N restores another); ${plan.text}`;
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

/** Encodes a finished result (at its tone) as an 8- or 16-bit PNG and hands it to the browser as a download. */
export async function downloadPng(engine, result, bits) {
  const png = await engine.call('encode', { data: tonedAfter(result), width: result.afterWidth, height: result.afterHeight, bits });
  const url = URL.createObjectURL(new Blob([png], { type: 'image/png' }));
  const a = document.createElement('a');
  a.href = url; a.download = `${result.name}_restored_${bits}bit.png`;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
