// The model: fetching the default one (kept in the Cache Storage `dxr-models-v1`, keyed by the
// model's SHA-256 from default.json so that a new default model is fetched again instead of a
// stale cached one, which is then removed; without a hash nothing is cached), loading a user's checkpoint + config, and
// remembering the last model that loaded (bytes, config, label, about) to load it again into a
// fresh engine after a crash.
import { isCheckpoint, isConfig, checkpointTypesText } from './files.js';
import { CHECKPOINT_BYTES, CONFIG_BYTES, checkSize } from './limits.js';

const CACHE_NAME = 'dxr-models-v1';
const DEFAULT_MODEL = 'www/models/default.safetensors';
const DEFAULT_MANIFEST = 'www/models/default.json';

/**
 * Fetches `url` reporting `onProgress(fraction)`; cached under `version` when there is one, and
 * then any other cached version of it removed. Resolves to `{bytes, updated}`: `updated` when
 * an older version was cached (the model changed since the last visit).
 */
async function fetchModel(url, version, onProgress) {
  const cache = version && 'caches' in self ? await caches.open(CACHE_NAME) : null;
  const key = `${url}?v=${version}`;
  const hit = cache && await cache.match(key);
  if (hit) { onProgress(1); return { bytes: new Uint8Array(await hit.arrayBuffer()), updated: false }; }
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get('content-length')) || 0;
  const reader = resp.body.getReader();
  const chunks = []; let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value); got += value.length;
    if (total) onProgress(got / total);
  }
  const bytes = new Uint8Array(got); let off = 0;
  for (const c of chunks) { bytes.set(c, off); off += c.length; }
  onProgress(1);
  let updated = false;
  if (cache) {
    await cache.put(key, new Response(bytes.slice(), { headers: { 'content-type': 'application/octet-stream' } }));
    const base = new URL(url, location.href).href;
    const current = new URL(key, location.href).href;
    for (const old of await cache.keys()) {
      if (old.url.split('?')[0] === base && old.url !== current) { await cache.delete(old); updated = true; }
    }
  }
  return { bytes, updated };
}

export class Models {
  constructor(engine) {
    this.engine = engine;
    this.last = null; // { bytes: ArrayBuffer, config, label, about } of the model loaded last
  }

  /**
   * Loads into the engine; resolves to `{info, label, about}`: info `{family, parameters,
   * timesteps, scale, steps, tone}` (tone: `{points, page_default}` or null, see tone.js), and
   * what the page says about the model (`{card, note, recipe}` or null).
   */
  async load(bytes, config, label, about = null) {
    const keep = bytes.slice(0);
    const info = await this.engine.call('load', { bytes, config }, { transfer: [bytes] });
    this.last = { bytes: keep, config, label, about };
    return { info, label, about };
  }

  /**
   * The default model and what its manifest (default.json, optional) says about it: `card`, two
   * plain sentences for a reader who is not its trainer (the note when there is none), and the
   * full `note` and `recipe`.
   */
  async loadDefault(onProgress) {
    let meta = {};
    try { meta = await (await fetch(DEFAULT_MANIFEST)).json(); } catch { /* optional */ }
    const { bytes, updated } = await fetchModel(DEFAULT_MODEL, meta.sha256, onProgress);
    const card = meta.card || meta.note;
    const about = card || meta.recipe ? { card: card || '', note: meta.note || '', recipe: meta.recipe || '' } : null;
    return { ...await this.load(bytes.buffer, undefined, 'Default model', about), updated };
  }

  /** A user's checkpoint and optional config among `files`; `onStart(name)` once one is found. */
  async loadFiles(files, onStart) {
    const ckpt = files.find(isCheckpoint);
    const cfg = files.find(isConfig);
    if (!ckpt) throw new Error(`Pick a checkpoint (${checkpointTypesText}), optionally with its config (.json).`);
    checkSize(ckpt, CHECKPOINT_BYTES, 'checkpoints');
    if (cfg) checkSize(cfg, CONFIG_BYTES, 'configs');
    onStart(ckpt.name);
    try {
      const config = cfg ? await cfg.text() : undefined;
      return await this.load(await ckpt.arrayBuffer(), config, ckpt.name);
    } catch (e) {
      throw new Error(`${ckpt.name}: ${e.message}`);
    }
  }

  /** The last model again (into a fresh engine); null when none had loaded. */
  reload() {
    const m = this.last;
    return m ? this.load(m.bytes.slice(0), m.config, m.label, m.about) : Promise.resolve(null);
  }
}
