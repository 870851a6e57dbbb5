// What the page benchmarks share: arguments, the native `dxr` binary, a scratch folder, the
// page served by scripts/serve.py on a random local port, and headless Chromium with or without
// WebGPU.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The value after `--name` on the command line, or `dflt`. */
export const arg = (name, dflt) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };

/** The release `dxr` that `make build` writes. */
export const dxr = join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/dxr-target'), 'release/dxr');

export const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

/** A fresh temporary folder named after the benchmark. */
export const scratchDir = (name) => mkdtempSync(join(tmpdir(), `dxr-${name}-`));

/** Serves the page; returns its port and the server process (kill it when done). */
export async function servePage() {
  const port = 19000 + Math.floor(Math.random() * 900);
  const server = spawn('python3', [join(root, 'scripts/serve.py'), String(port)], { env: { ...process.env, DXR_SERVE_QUIET: '1' } });
  await new Promise((r) => setTimeout(r, 800));
  return { port, server };
}

const flags = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** A Chromium with a fresh profile under `scratch`, WebGPU on or off; its first page. */
export async function openPage(scratch, webgpu) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(scratch, 'p-')), {
    executablePath: '/usr/bin/chromium', headless: true, args: webgpu ? [...flags, '--enable-unsafe-webgpu'] : flags,
  });
  return { ctx, page: ctx.pages()[0] };
}
