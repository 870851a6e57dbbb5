// Talking to the engine in worker.js: every request carries an id and is answered once
// (`{id, ok, result | error}`), after any number of `{id, progress}` messages. A request made
// with an AbortSignal is cancelled when the signal aborts: the worker is told which id
// (`{type: 'cancel', target: id}`), skips it if it has not started and stops it at its next step
// if it has; either way the request rejects with the error "cancelled" (see isCancelled).
// A panic inside wasm, a lost GPU device or an out-of-memory leave the engine unusable: the
// worker is then replaced by a fresh one and `onRestart(reason)` brings it back to the state the
// page needs (device, model).

const FATAL = /unreachable|RuntimeError|device (is |was )?lost|out of memory|poison/i;
const CANCELLED = 'cancelled';

/** Whether an error is a request's cancellation (not a failure to report). */
export const isCancelled = (e) => e?.message === CANCELLED;

export class Engine {
  /** `url`: the worker module; `onRestart(reason)`: async, run on each fresh worker after a crash. */
  constructor(url, { onRestart }) {
    this.url = url;
    this.onRestart = onRestart;
    this.pending = new Map(); // id -> { resolve, reject, onProgress, signal, detach }
    this.nextId = 1;
    this.restarting = null;
    this.worker = null;
    this.startWorker();
  }

  startWorker() {
    this.worker = new Worker(this.url, { type: 'module' });
    this.worker.onmessage = (event) => this.receive(event.data);
    this.worker.onerror = (e) => { e.preventDefault?.(); this.restart(e.message || 'the engine crashed'); };
  }

  receive(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    const aborted = p.signal?.aborted;
    if (msg.progress) { if (!aborted) p.onProgress?.(msg.progress); return; }
    this.pending.delete(msg.id);
    p.detach();
    // An answer to a cancelled request is dropped: the caller asked not to have it.
    if (aborted) p.reject(new Error(CANCELLED));
    else if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(msg.error));
  }

  /**
   * Sends request `type` with `payload` (fields of the message); `transfer`: buffers to hand
   * over; `onProgress(progress)`: progress messages; `signal`: an AbortSignal that cancels it.
   */
  call(type, payload = {}, { transfer = [], onProgress, signal } = {}) {
    if (signal?.aborted) return Promise.reject(new Error(CANCELLED));
    // `type` and `id` address the message: a payload field of that name would be lost (a
    // request whose id is overwritten never gets its answer)
    for (const key of ['type', 'id']) {
      if (key in payload) return Promise.reject(new Error(`request ${type}: payload field "${key}" is reserved`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const cancel = () => this.worker.postMessage({ type: 'cancel', target: id });
      signal?.addEventListener('abort', cancel, { once: true });
      const detach = () => signal?.removeEventListener('abort', cancel);
      this.pending.set(id, { resolve, reject, onProgress, signal, detach });
      this.worker.postMessage({ type, id, ...payload }, transfer);
    }).catch((e) => {
      if (FATAL.test(e.message)) this.restart(e.message);
      throw e;
    });
  }

  /** Replaces a broken worker (once, however many requests fail at the same time). */
  restart(reason) {
    if (this.restarting) return this.restarting;
    for (const p of this.pending.values()) { p.detach(); p.reject(new Error(`the engine stopped: ${reason}`)); }
    this.pending.clear();
    this.worker?.terminate();
    this.startWorker();
    this.restarting = Promise.resolve(this.onRestart(reason)).finally(() => { this.restarting = null; });
    return this.restarting;
  }
}
