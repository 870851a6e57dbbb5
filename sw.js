// The offline copy of the page. Only a `make dist` build registers it, after filling in VERSION
// (a hash of every file's content) and FILES (the app shell, the engine, the model's manifest and
// the examples). A visit installs that version's files in one cache; a later online visit that
// finds a changed file gets a new sw.js, installs the new version, removes the old one and tells
// the page (which says so). The model's bytes are cached by the page itself (www/models.js, keyed
// by their SHA-256 from the manifest), so the manifest is asked of the network first: a new
// default model is picked up on the first online visit.
const VERSION = 'dev';
const FILES = [];
const CACHE = `dxr-app-${VERSION}`;
const NETWORK_FIRST = new Set(['www/models/default.json']);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // 'reload': the files themselves, not what the HTTP cache kept of an older version
    await cache.addAll(FILES.map((f) => new Request(f, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith('dxr-app-') && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

/** The app file a request names (relative to the scope), or null for anything else. */
function appFile(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  const scope = new URL(self.registration.scope);
  if (url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return null;
  const rel = url.pathname.slice(scope.pathname.length) || 'index.html';
  return FILES.includes(rel) ? rel : null;
}

self.addEventListener('fetch', (event) => {
  const rel = appFile(event.request);
  if (!rel) return; // the network, as without a service worker
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    if (NETWORK_FIRST.has(rel)) {
      try {
        const fresh = await fetch(event.request, { cache: 'no-store' });
        if (fresh.ok) { await cache.put(rel, fresh.clone()); return fresh; }
      } catch { /* offline: the cached copy */ }
    }
    return (await cache.match(rel)) || fetch(event.request);
  })());
});
