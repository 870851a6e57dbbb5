// The page's request protocol (www/rpc.js) without a browser: a fake Worker records what is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';

globalThis.Worker = class {
  constructor() { this.sent = []; }
  postMessage(msg) { this.sent.push(msg); }
  terminate() {}
};
const { Engine } = await import('../../www/rpc.js');

test('an answer reaches the request with its id; payload fields travel beside it', async () => {
  const engine = new Engine('worker.js', { onRestart: () => {} });
  const a = engine.call('studioRemove', { nodule: 7 });
  const b = engine.call('studioPlace', { x: 1, y: 2 });
  const [ma, mb] = engine.worker.sent;
  assert.equal(ma.nodule, 7);
  assert.notEqual(ma.id, mb.id);
  engine.receive({ id: mb.id, ok: true, result: 'b' });
  engine.receive({ id: ma.id, ok: false, error: 'no nodule 7' });
  assert.equal(await b, 'b');
  await assert.rejects(a, /no nodule 7/);
});

test('a payload field named like the addressing (id, type) is refused, not silently lost', async () => {
  const engine = new Engine('worker.js', { onRestart: () => {} });
  await assert.rejects(engine.call('studioRemove', { id: 1 }), /payload field "id" is reserved/);
  await assert.rejects(engine.call('x', { type: 'y' }), /payload field "type" is reserved/);
  assert.equal(engine.worker.sent.length, 0);
});
