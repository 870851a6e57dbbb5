// What the page tells a user about the engine before they wait: WebGPU on a GPU, WebGPU on a
// software renderer (SwiftShader, llvmpipe, WARP: the GPU is not used), or the CPU fallback, with
// the time a denoising step of the default model takes there.

/**
 * Seconds per denoising step of the default model on a 256×256 model input, by engine; quoted in
 * the notice where measured (`node scripts/measure-engines.mjs` on an otherwise idle machine).
 * Not filled in yet: the only run so far shared the machine with a fuzzer (115 s a step on
 * SwiftShader), so the notice says only that it is much slower than a GPU.
 */
export const SECONDS_PER_STEP_256 = { software: null, cpu: null };

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|\bwarp\b|basic render/i;

/** `{kind, name}`: kind 'gpu', 'software' or 'cpu' for the engine the worker opened. */
export async function engineKind(backend) {
  if (backend === 'cpu' || !('gpu' in navigator)) return { kind: 'cpu', name: '' };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    const info = adapter?.info || {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
    const software = info.isFallbackAdapter === true || SOFTWARE.test(name);
    return { kind: software ? 'software' : 'gpu', name };
  } catch {
    return { kind: 'gpu', name: '' };
  }
}

/** Seconds per step for `pixels` model-input pixels on `kind`, or null where not measured. */
export function secondsPerStep(kind, pixels = 256 * 256) {
  const s = SECONDS_PER_STEP_256[kind];
  return s ? s * (pixels / (256 * 256)) : null;
}

function fmtSeconds(s) {
  return s < 10 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`;
}

/** The sentence the page shows; `steps` is the step count a restoration will take. */
export function engineNotice({ kind, name }, steps) {
  if (kind === 'gpu') return '';
  const per = secondsPerStep(kind);
  const time = per === null
    ? 'a restoration to take much longer than on a GPU'
    : `about ${fmtSeconds(per)} per step for a 256×256 image (${fmtSeconds(per * steps)} for ${steps} steps), longer for larger images`;
  if (kind === 'software') {
    return `This browser offers WebGPU only through a software renderer (${name || 'no GPU'}), so your GPU is not used: expect ${time}.`;
  }
  return `No WebGPU here: the page runs on the CPU (one thread), so expect ${time}.`;
}
