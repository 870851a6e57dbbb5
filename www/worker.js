// The Web Worker that owns the wasm engine: the page never blocks while a model runs.
import init, * as dxr from './pkg/dxr.js';

let cancelled = false;
const ready = init();

function post(msg, transfer = []) {
  self.postMessage(msg, transfer);
}

self.onmessage = async (event) => {
  const msg = event.data;
  if (msg.type === 'cancel') {
    cancelled = true;
    return;
  }
  const { id } = msg;
  try {
    await ready;
    switch (msg.type) {
      case 'init': {
        post({ id, ok: true, result: JSON.parse(await dxr.init(msg.preferGpu)) });
        break;
      }
      case 'load': {
        const info = dxr.load_model(new Uint8Array(msg.bytes), msg.config ?? undefined);
        post({ id, ok: true, result: JSON.parse(info) });
        break;
      }
      case 'defaults': {
        post({ id, ok: true, result: JSON.parse(dxr.sampler_defaults()) });
        break;
      }
      case 'decode': {
        const img = dxr.decode_image(new Uint8Array(msg.bytes));
        const data = img.data;
        const pixelMm = img.pixel_mm;
        post({ id, ok: true, result: { width: img.width, height: img.height, data, pixelMm } }, [data.buffer]);
        img.free();
        break;
      }
      case 'plan': {
        const plan = dxr.plan_restore(msg.data, msg.width, msg.height, JSON.stringify(msg.settings));
        post({ id, ok: true, result: JSON.parse(plan) });
        break;
      }
      case 'restore': {
        cancelled = false;
        const start = performance.now();
        // Each step is reported once the device has finished it (the engine waits for it).
        const out = await dxr.restore(msg.data, msg.width, msg.height, JSON.stringify(msg.settings),
          (step, total, preview) => {
            post({ id, progress: { step, total, elapsed: performance.now() - start, preview } });
            return !cancelled;
          });
        const result = { data: out.data, width: out.width, height: out.height, plan: JSON.parse(out.plan),
          elapsed: performance.now() - start };
        post({ id, ok: true, result }, [out.data.buffer]);
        break;
      }
      case 'encode': {
        const png = dxr.encode_png(msg.data, msg.width, msg.height, msg.bits);
        post({ id, ok: true, result: png }, [png.buffer]);
        break;
      }
      default:
        throw new Error(`unknown request ${msg.type}`);
    }
  } catch (e) {
    post({ id, ok: false, error: String(e && e.message ? e.message : e) });
  }
};
