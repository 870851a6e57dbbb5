// `make serve` hands out the app and nothing else, under a Content-Security-Policy that keeps the
// page on its own origin: checked with plain requests and in Chromium (the page works under the
// policy; a fetch or script from elsewhere is refused by it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { origin, open, restore, waitForText, fixtureImage } from './helpers.mjs';

const get = (path) => fetch(`${origin}${path}`, { redirect: 'manual' });

test("only the app's files are served; the checkout, dot-files and walks out of www/ are 404", async () => {
  for (const path of ['/', '/index.html', '/www/app.js', '/www/pkg/dxr_bg.wasm', '/www/models/default.safetensors']) {
    const r = await get(path);
    assert.equal(r.status, 200, `${path} is an app file`);
    await r.arrayBuffer();
  }
  assert.equal((await get('/www/pkg/dxr_bg.wasm')).headers.get('content-type'), 'application/wasm');
  const refused = ['/.git/config', '/.git/HEAD', '/Cargo.toml', '/Cargo.lock', '/src/lib.rs', '/scripts/serve.py',
    '/README.md', '/data/cxr/RG1_UNCR.dcm', '/models/default.safetensors', '/www/', '/www', '/www/../Cargo.toml',
    '/www/%2e%2e/Cargo.toml', '/www/..%2fCargo.toml', '/www/%2e%2e%2f.git/config', '/www/.hidden', '/tests/browser/serve.test.mjs'];
  for (const path of refused) {
    // node's fetch would normalise the dot-segments away: send the path as written
    assert.equal(await rawGet(path), 404, `${path} must not be served`);
  }
});

test('every response carries the same-origin policy', async () => {
  for (const path of ['/', '/www/app.js', '/www/pkg/dxr_bg.wasm', '/Cargo.toml']) {
    const csp = (await get(path)).headers.get('content-security-policy') || '';
    assert.match(csp, /default-src 'self'/, `${path}: ${csp}`);
    assert.match(csp, /connect-src 'self'/, `${path}: ${csp}`);
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'(;|$)/, `${path}: ${csp}`);
    assert.match(csp, /object-src 'none'/, `${path}: ${csp}`);
    assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'|\*/, `${path}: ${csp}`);
  }
});

test('the page restores under the policy, and the policy refuses what leaves the origin', async () => {
  const { ctx, page, errors } = await open();
  try {
    await restore(page, fixtureImage);
    await waitForText(page, 'progress-text', /Done/);
    assert.deepEqual(errors, [], 'the app itself breaks no rule of its policy');
    // (eval is not tried here: code run through the test driver is exempt from the page's CSP;
    // the header test above checks that the policy allows no 'unsafe-eval')
    const blocked = await page.evaluate(async () => {
      const seen = [];
      document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
      let fetched = 'fetched';
      try { await fetch('http://127.0.0.2:9/x'); } catch { fetched = 'refused'; }
      const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s);
      await new Promise((r) => setTimeout(r, 200));
      return { fetched, inline: window.__inline === 1 ? 'ran' : 'refused', seen };
    });
    assert.equal(blocked.fetched, 'refused');
    assert.equal(blocked.inline, 'refused');
    assert.ok(blocked.seen.some((d) => d.startsWith('connect-src')), `violations: ${blocked.seen}`);
    assert.ok(blocked.seen.some((d) => d.startsWith('script-src')), `violations: ${blocked.seen}`);
  } finally { await ctx.close(); }
});

/** The status of a GET of `path` sent byte for byte (no client-side normalisation). */
async function rawGet(path) {
  const net = await import('node:net');
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`);
    });
    let head = '';
    sock.on('data', (d) => { head += d.toString('latin1'); });
    sock.on('end', () => resolve(Number(head.split(' ')[1])));
    sock.on('error', reject);
  });
}
