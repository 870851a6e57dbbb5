// The queue: every image added stays listed with its state and keeps its last finished result,
// so that any earlier result can be viewed again, downloaded, or restored again with other
// settings. Images run one at a time, in the order they were added (a re-run goes back in line).
// Cancel stops the run: the image running and those still waiting are marked cancelled.
//
// DOM, stable for tests and styles (style.css colours the states):
//   #queue li[data-id="N"][data-name="file name"][data-state="queued|running|done|failed|cancelled"]
//     aria-current="true" on the item whose image the viewer shows
//     span.name     the file's name
//     span.status   the state in words, the settings of its last finished run (with the tone
//                   it is shown and downloaded at), or the error
//     button.view                       shows its last result in the viewer
//     button.download[data-bits="8"]    downloads its last result as an 8-bit PNG
//     button.download[data-bits="16"]   … as a 16-bit PNG
//     button.rerun                      queues it again with the settings now in the form
// View and the downloads are enabled once an item has a result; Re-run when it is neither
// queued nor running (and a model is loaded).
import { isCancelled } from './rpc.js';
import { describeSettings } from './restore.js';

function button(cls, text, onClick, attrs = {}) {
  const b = document.createElement('button');
  b.type = 'button'; b.className = cls; b.textContent = text;
  for (const [k, v] of Object.entries(attrs)) b.setAttribute(k, v);
  b.addEventListener('click', onClick);
  return b;
}

export class Queue {
  /**
   * `list`: the <ol id="queue">. `hooks`: restore(item, signal) resolves to the item's result;
   * show(result) puts a result in the viewer; download(result, bits); failed(item, error);
   * cancelled(); started() when a run begins; changed() after any change of state.
   */
  constructor(list, hooks) {
    this.list = list;
    this.hooks = hooks;
    this.items = [];
    this.nextId = 1;
    this.running = false;
    this.controller = null;
    this.canRun = false; // a model is loaded
  }

  get hasQueued() { return this.items.some((i) => i.state === 'queued'); }

  /** Adds files (with nodule boxes, for an example or a studio DRR, and the pixel pitch in mm
   * when known) in state "queued". */
  add(files, boxes = null, { pixelMm = null } = {}) {
    for (const file of files) {
      const item = { id: this.nextId++, file, boxes, pixelMm, state: 'queued', result: null, error: '' };
      item.li = document.createElement('li');
      item.li.dataset.id = String(item.id);
      item.li.dataset.name = file.name;
      const name = document.createElement('span');
      name.className = 'name'; name.textContent = file.name;
      item.status = document.createElement('span');
      item.status.className = 'status';
      item.buttons = {
        view: button('view', 'View', () => this.show(item, item.result), { 'aria-label': `View ${file.name}` }),
        d8: button('download', '8-bit', () => this.hooks.download(item.result, 8), { 'data-bits': '8', 'aria-label': `Download ${file.name} as an 8-bit PNG` }),
        d16: button('download', '16-bit', () => this.hooks.download(item.result, 16), { 'data-bits': '16', 'aria-label': `Download ${file.name} as a 16-bit PNG` }),
        rerun: button('rerun', 'Re-run', () => this.rerun(item), { 'aria-label': `Restore ${file.name} again with the settings above` }),
      };
      item.li.append(name, ' ', item.status, ' ', ...Object.values(item.buttons));
      this.list.append(item.li);
      this.items.push(item);
      this.render(item);
    }
    this.hooks.changed();
  }

  /** Puts `result` (of `item`) in the viewer and marks the item as the one shown. */
  show(item, result) {
    for (const i of this.items) i.li.removeAttribute('aria-current');
    item.li.setAttribute('aria-current', 'true');
    this.hooks.show(result);
  }

  /** Re-renders the items whose last result is `result` (its settings changed: its tone). */
  refresh(result) {
    for (const item of this.items) if (item.result === result) this.render(item);
  }

  setState(item, state, error = '') {
    item.state = state; item.error = error;
    this.render(item);
    this.hooks.changed();
  }

  render(item) {
    const { li, status, buttons, result } = item;
    li.dataset.state = item.state;
    const last = result ? describeSettings(result.settings) : '';
    status.textContent = [item.state, item.error, last && `${item.state === 'done' ? '' : 'last result: '}${last}`]
      .filter(Boolean).join(' · ');
    buttons.view.disabled = buttons.d8.disabled = buttons.d16.disabled = !result;
    this.renderRerun(item);
  }

  renderRerun(item) {
    item.buttons.rerun.disabled = !this.canRun || item.state === 'queued' || item.state === 'running';
  }

  /** Whether a model is loaded (runs and re-runs need one). */
  setCanRun(canRun) {
    this.canRun = canRun;
    for (const item of this.items) this.renderRerun(item);
  }

  rerun(item) {
    this.setState(item, 'queued');
    this.start();
  }

  /** Runs the queued images one after another until none is left or Cancel is pressed. */
  async start() {
    if (this.running || !this.canRun) return;
    this.running = true;
    this.controller = new AbortController();
    const { signal } = this.controller;
    this.hooks.started();
    this.hooks.changed();
    for (let item; !signal.aborted && (item = this.items.find((i) => i.state === 'queued'));) {
      this.setState(item, 'running');
      try {
        const result = await this.hooks.restore(item, signal);
        item.result = result;
        this.setState(item, 'done');
      } catch (e) {
        if (isCancelled(e)) {
          this.setState(item, 'cancelled');
        } else {
          this.setState(item, 'failed', e.message);
          this.hooks.failed(item, e);
        }
      }
    }
    if (signal.aborted) {
      for (const waiting of this.items.filter((i) => i.state === 'queued')) this.setState(waiting, 'cancelled');
      this.hooks.cancelled();
    }
    this.running = false;
    this.hooks.changed();
  }

  cancel() { this.controller?.abort(); }
}
