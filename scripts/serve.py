"""Serves the web app on 127.0.0.1 (PORT, default 8080): only the app's own files, with a
Content-Security-Policy that lets the page talk to its own origin and nothing else.

What is served: `/` and `/index.html`, the files under `www/` (the page's modules, the wasm
engine in www/pkg, the default model in www/models, the examples in www/examples), and the
studio's example CT (`/data/ct/cxr.nii.gz`, fetched at setup into the git-ignored data folder).
Everything else in the checkout (`/.git/config`, `/Cargo.toml`, `/src/...`, the rest of
`/data/...`) is 404, as is any path with a dot-segment or a hidden name, so that a link cannot
walk out of `www/`.
"""
import http.server
import os
import posixpath
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Only this origin for scripts, workers, wasm, fetches and images (data:/blob: for the icon,
# the canvases' exports and the downloads made in the page); no plugins, no framing, no <base>.
# 'wasm-unsafe-eval' is what compiling WebAssembly needs under a CSP; it allows no JS eval.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
       "connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; font-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# The example data the page may fetch (the studio's "Example CT" button): exact paths only.
DATA_FILES = {"data/ct/cxr.nii.gz"}


def allowed(url_path):
    """The file under ROOT that `url_path` names when it is one of the app's, else None."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    if path in ("", "/"):
        path = "/index.html"
    parts = path.split("/")[1:]
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None
    if "/".join(parts) in DATA_FILES:
        full = os.path.join(ROOT, *parts)
        return full if os.path.isfile(full) else None
    if parts != ["index.html"] and (len(parts) < 2 or parts[0] != "www"):
        return None
    full = os.path.realpath(os.path.join(ROOT, *parts))
    www = os.path.realpath(os.path.join(ROOT, "www"))
    if full != os.path.join(os.path.realpath(ROOT), "index.html") and not full.startswith(www + os.sep):
        return None
    return full if os.path.isfile(full) else None


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
                      ".safetensors": "application/octet-stream", ".dcm": "application/dicom", ".gz": "application/gzip"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def translate_path(self, path):
        # a path that is not an app file maps to no file: the base handler answers 404 (and
        # never lists a folder, since only files are returned)
        return allowed(path) or posixpath.join(ROOT, "www", ".not-an-app-file")

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("DXR_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def main():
    port = int(os.environ.get("PORT", sys.argv[1] if len(sys.argv) > 1 else 8080))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"DiffusionXRay is served on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
