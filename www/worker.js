// The Web Worker that owns the wasm engine: the page never blocks while a model runs.
// Protocol (the page's side is rpc.js): `{type, id, ...}` is answered by `{id, ok: true, result}`
// or `{id, ok: false, error}`, after `{id, progress}` messages for a restoration.
// `{type: 'cancel', target: id}` cancels request `id`: one that has not started yet (it waits
// for the engine to load) is answered "cancelled" without running; a restoration stops with
// "cancelled" at its next step. A cancel for a request already answered is ignored.
import init, * as dxr from './pkg/dxr.js';

// The GPU devices the engine opens (a test destroys one mid-run), and how the first was lost: the
// engine only sees a failed read-back then, so the answer names the loss instead, which tells the
// page (rpc.js) to replace this worker.
const gpuDevices = [];
self.gpuDevices = gpuDevices;
let lost = null;
const lostSignals = [];
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    gpuDevices.push(device);
    lostSignals.push(device.lost.then((info) => { lost ??= info; }));
    return device;
  };
}

/** The error of a failed request, named as a device loss when the GPU went away. */
async function failure(e) {
  const text = String(e && e.message ? e.message : e);
  // the loss is reported asynchronously: give it a moment to arrive
  if (!lost && lostSignals.length) await Promise.race([...lostSignals, new Promise((r) => setTimeout(r, 200))]);
  if (!lost) return text;
  return `the GPU device was lost (${lost.reason || 'unknown'}${lost.message ? `: ${lost.message}` : ''}); `
    + `the engine restarts. Details: ${text.split('\n')[0]}`;
}

// The engine is built with WebAssembly SIMD (.cargo/config.toml): a browser without it would
// only say that the module failed to compile, so name what is missing instead.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]); // (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)
const ready = WebAssembly.validate(SIMD_PROBE) ? init() : Promise.reject(new Error(
  "this browser's WebAssembly has no SIMD (128-bit), which the engine needs: use Chrome 91, Firefox 89, Safari 16.4 or later"));
// The engine's linear memory (it only grows): read by the soak test to show it stays flat.
ready.then((engine) => { self.engineMemory = engine.memory; }, () => {});
const open = new Set(); // ids received and not answered yet
const cancelled = new Set(); // those of them the page cancelled

// Each request type: (message, id) -> { result, transfer } (or a promise of it).
const handlers = {
  init: async (msg) => ({ result: JSON.parse(await dxr.init(msg.preferGpu)) }),
  load: (msg) => ({ result: JSON.parse(dxr.load_model(new Uint8Array(msg.bytes), msg.config ?? undefined)) }),
  defaults: () => ({ result: JSON.parse(dxr.sampler_defaults()) }),
  decode: (msg) => {
    const img = dxr.decode_image(new Uint8Array(msg.bytes));
    const result = { width: img.width, height: img.height, data: img.data, pixelMm: img.pixel_mm, frames: img.frames,
      presets: JSON.parse(img.presets), refused: img.refused };
    img.free();
    return { result, transfer: [result.data.buffer] };
  },
  plan: (msg) => ({ result: JSON.parse(dxr.plan_restore(msg.data, msg.width, msg.height, JSON.stringify(msg.settings))) }),
  restore: async (msg, id) => {
    const start = performance.now();
    // Each step is reported once the device has finished it (the engine waits for it); the
    // engine stops with "cancelled" when this returns false.
    const out = await dxr.restore(msg.data, msg.width, msg.height, JSON.stringify(msg.settings),
      (step, total, preview) => {
        self.postMessage({ id, progress: { step, total, elapsed: performance.now() - start, preview } });
        return !cancelled.has(id);
      });
    const result = { data: out.data, width: out.width, height: out.height, plan: JSON.parse(out.plan),
      elapsed: performance.now() - start };
    return { result, transfer: [out.data.buffer] };
  },
  // the DRR studio (www/studio.js): one CT in the engine, one render at a time
  studioLoad: async (msg, id) => {
    const files = msg.files.map(([name, bytes]) => [name, bytes]);
    const info = await dxr.studio_load(files, msg.mask ?? null, JSON.stringify(msg.cleanup), (stage, done, total) => {
      self.postMessage({ id, progress: { stage, done, total } });
      return !cancelled.has(id);
    });
    return { result: JSON.parse(info) };
  },
  studioRender: async (msg) => {
    const out = JSON.parse(await dxr.studio_render(JSON.stringify(msg.settings), msg.preferGpu));
    out.image = dxr.studio_image(false);
    return { result: out, transfer: [out.image.buffer] };
  },
  studioIntegrals: (msg) => {
    const data = dxr.studio_integrals(msg.clean);
    return { result: data, transfer: [data.buffer] };
  },
  studioPng16: (msg) => {
    const png = dxr.studio_png16(msg.clean);
    return { result: png, transfer: [png.buffer] };
  },
  studioLabel: () => ({ result: dxr.studio_label() }),
  studioCoco: () => ({ result: dxr.studio_coco() }),
  studioPlace: (msg) => ({ result: dxr.studio_place(msg.x, msg.y) }),
  studioRemove: (msg) => ({ result: dxr.studio_remove(msg.nodule) }),
  encode: (msg) => {
    const png = dxr.encode_png(msg.data, msg.width, msg.height, msg.bits);
    return { result: png, transfer: [png.buffer] };
  },
};

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'cancel') {
    if (open.has(msg.target)) cancelled.add(msg.target);
    return;
  }
  const { id } = msg;
  open.add(id);
  try {
    await ready;
    if (cancelled.has(id)) throw new Error('cancelled'); // cancelled before it started
    const handler = handlers[msg.type];
    if (!handler) throw new Error(`unknown request ${msg.type}`);
    const { result, transfer = [] } = await handler(msg, id);
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: await failure(e) });
  } finally {
    open.delete(id);
    cancelled.delete(id);
  }
};
