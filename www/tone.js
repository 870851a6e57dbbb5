// Tone is a choice separate from the restoration: the network keeps the DRR's grey scale and
// restores detail, and a model that carries a tone curve (`info.tone` from the engine's load:
// `{points, page_default}` or null) lets the page move a result toward a radiograph's grey scale
// with a slider, without running the network again. The same map as the CLI's `dxr restore
// --tone` (ToneSpec::map in src/spec/tone.rs). Pure functions (no DOM), shared by the page and
// the tests.

/** The curve of `info.tone` as a Float32Array, or null when the model has none. */
export function toneCurve(tone) {
  const points = tone?.points;
  return points && points.length >= 2 ? Float32Array.from(points) : null;
}

/** The strength the model suggests for the page, in [0, 1]; 0 without a curve. */
export function pageDefault(tone) {
  const s = Number(tone?.page_default);
  return toneCurve(tone) && Number.isFinite(s) ? Math.min(1, Math.max(0, s)) : 0;
}

/** curve(x): `points` interpolated linearly, points[i] at x = i/(n−1), x clamped to [0, 1]. */
export function curveAt(points, x) {
  const last = points.length - 1;
  const t = Math.min(1, Math.max(0, x)) * last;
  const i = Math.min(last - 1, Math.floor(t)), f = t - i;
  return points[i] * (1 - f) + points[i + 1] * f;
}

/**
 * `data` moved toward the curve by `strength` s in [0, 1]: y = x + s·(curve(x) − x), in a new
 * Float32Array; `data` itself when s is 0 or there is no curve (nothing to copy or redraw).
 */
export function toneMap(data, points, strength) {
  if (!points || !(strength > 0)) return data;
  const s = Math.min(1, strength);
  const last = points.length - 1;
  const out = new Float32Array(data.length);
  for (let k = 0; k < data.length; k++) {
    const x = data[k];
    const t = Math.min(1, Math.max(0, x)) * last; // curveAt, inlined: this runs per pixel
    const i = Math.min(last - 1, Math.floor(t)), f = t - i;
    out[k] = x + s * (points[i] * (1 - f) + points[i + 1] * f - x);
  }
  return out;
}
