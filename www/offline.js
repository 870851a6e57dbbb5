// The offline copy, in a `make dist` build only (its index.html says data-offline="on"): registers
// the service worker (sw.js, beside index.html) and says when it has made the page work offline
// or installed a new version of it.
export function registerOffline(say) {
  if (document.documentElement.dataset.offline !== 'on' || !('serviceWorker' in navigator)) return;
  const hadController = Boolean(navigator.serviceWorker.controller);
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    say(hadController
      ? 'A new version of this page has been downloaded: reload to use it.'
      : 'This page now works offline: after this visit it loads and restores without a network.');
  });
  navigator.serviceWorker.register('sw.js').catch((e) => say(`Offline use is not available here (${e.message}).`));
}
