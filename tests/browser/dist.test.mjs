// `make dist` as a static site: served by a plain static server (Python's http.server, no headers
// of ours), under a subfolder, and by one that sends the `_headers` file, the example restores
// with no console error and no request leaving the origin; after one visit the page loads and
// restores offline; a new default model is picked up online and replaces the cached one. And the
// engine notice: a software WebGPU adapter and the CPU fallback are named.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, extname, normalize, sep } from 'node:path';
import { open, waitForModel, waitForText, setRange, root, scratch } from './helpers.mjs';

const dist = join(scratch, 'dist');

before(() => {
  execFileSync(join(root, 'scripts/build-dist.sh'), { env: { ...process.env, DXR_DIST_OUT: dist }, stdio: 'pipe' });
});

const freePort = () => 17000 + Math.floor(Math.random() * 1000);

/** Python's http.server on `dir`: files as they are, none of our headers. */
async function plainServer(dir) {
  const port = freePort();
  const proc = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir], { stdio: 'ignore' });
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try { await fetch(origin); return { origin, stop: () => proc.kill() }; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  throw new Error('http.server did not start');
}

/** A static server that sends what `dir/_headers` says (Netlify / Cloudflare Pages format). */
async function headersServer(dir) {
  const rules = [];
  for (const line of readFileSync(join(dir, '_headers'), 'utf8').split('\n')) {
    if (!line.trim()) continue;
    if (!/^\s/.test(line)) rules.push({ pattern: line.trim(), headers: [] });
    else { const i = line.indexOf(':'); rules.at(-1).headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]); }
  }
  const matches = (pattern, path) => new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`).test(path);
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.png': 'image/png' };
  const server = createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(dir, path));
    if (!file.startsWith(dir + sep) || !existsSync(file) || !statSync(file).isFile()) { res.writeHead(404); res.end(); return; }
    res.setHeader('Content-Type', types[extname(file)] || 'application/octet-stream');
    for (const r of rules) if (matches(r.pattern, path)) for (const [k, v] of r.headers) res.setHeader(k, v);
    res.end(readFileSync(file));
  });
  const port = freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${port}`, stop: () => server.close() };
}

/** Restores the first example (1 step: software WebGPU is slow) and waits for it. */
async function restoreExample(page) {
  await page.waitForSelector('#examples button.example', { timeout: 60000 });
  await setRange(page, 'steps', 1);
  await page.click('#examples button.example >> nth=0');
  await waitForText(page, 'progress-text', /Done/, 600000);
}

test('dist/ restores from a plain static server, under a subfolder and with its _headers, all from its origin', async () => {
  const site = join(scratch, 'site');
  mkdirSync(site, { recursive: true });
  cpSync(dist, join(site, 'app'), { recursive: true });
  for (const [what, start, path] of [
    ['plain', () => plainServer(dist), '/'],
    ['subfolder', () => plainServer(site), '/app/'],
    ['_headers', () => headersServer(dist), '/index.html'],
  ]) {
    const server = await start();
    const { ctx, page, errors, requests } = await open({ url: `${server.origin}${path}` });
    try {
      await restoreExample(page);
      assert.deepEqual(errors, [], `${what}: console errors`);
      const away = requests.filter((u) => !u.startsWith(server.origin) && !u.startsWith('data:') && !u.startsWith('blob:'));
      assert.deepEqual(away, [], `${what}: requests that left the origin`);
      if (what === '_headers') {
        const resp = await page.evaluate(async () => (await fetch('index.html')).headers.get('content-security-policy'));
        assert.match(resp || '', /default-src 'self'/, 'the CSP header from _headers');
      }
    } finally { await ctx.close(); server.stop(); }
  }
  // only the app's own files are in it
  const top = execFileSync('ls', ['-A', dist]).toString().trim().split('\n').sort();
  assert.deepEqual(top.filter((f) => f !== 'data'), ['_headers', 'index.html', 'sw.js', 'www']);
});

test('after one visit the page loads and restores offline, and a new default model replaces the cached one', async () => {
  const copy = join(scratch, 'offline');
  cpSync(dist, copy, { recursive: true });
  const server = await plainServer(copy);
  const { ctx, page, errors } = await open({ url: `${server.origin}/index.html` });
  try {
    await waitForText(page, 'update-note', /works offline/, 600000);
    await ctx.setOffline(true);
    await page.reload();
    await waitForModel(page);
    await restoreExample(page);
    // online again, with a new default model (its manifest names other bytes)
    await ctx.setOffline(false);
    const manifest = join(copy, 'www/models/default.json');
    const meta = JSON.parse(readFileSync(manifest, 'utf8'));
    meta.sha256 = 'f'.repeat(64);
    writeFileSync(manifest, JSON.stringify(meta));
    await page.reload();
    await waitForModel(page);
    await waitForText(page, 'update-note', /new default model/, 60000);
    const keys = await page.evaluate(async () => (await (await caches.open('dxr-models-v1')).keys()).map((r) => r.url));
    assert.equal(keys.length, 1, `one cached model: ${keys}`);
    assert.match(keys[0], /v=f{64}$/);
    assert.deepEqual(errors.filter((e) => !/ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(e)), [], 'console errors');
  } finally { await ctx.close(); server.stop(); }
});

test('the engine notice names a software WebGPU adapter and the CPU fallback', async () => {
  for (const [webgpu, kind, says] of [[true, 'software', /software renderer \(.*swiftshader.*\).*GPU is not used/i], [false, 'cpu', /No WebGPU here: the page runs on the CPU/]]) {
    const { ctx, page } = await open({ webgpu });
    try {
      assert.equal(await page.getAttribute('#adapter', 'data-engine'), kind);
      assert.equal(await page.isVisible('#engine-notice'), true);
      assert.match(await page.textContent('#engine-notice'), says);
    } finally { await ctx.close(); }
  }
});
