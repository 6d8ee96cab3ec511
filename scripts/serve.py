#!/usr/bin/env python3
"""Serves the lab on 127.0.0.1: www/ at /, the model files at /models/.

Standard library only. Usage: scripts/serve.py [--port 8000] [--host 127.0.0.1]
"""
import argparse
import functools
import http.server
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WWW = os.path.join(ROOT, "www")
MODELS = os.path.join(ROOT, "models")
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
       "style-src 'self'; img-src 'self' blob: data:; connect-src 'self' https: http:; "
       "object-src 'none'; base-uri 'none'; form-action 'none'")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".gguf": "application/octet-stream",
        ".json": "application/json",
    }

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean.startswith("/models/"):
            name = os.path.basename(clean)
            return os.path.join(MODELS, name)
        return super().translate_path(path)

    def end_headers(self):
        # No inline script or eval anywhere: only the page's own files, and wasm compilation.
        # connect-src stays open to http(s) because a user may load a model from any URL.
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("PROBELAB_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=int(os.environ.get("PROBELAB_PORT", 8000)))
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(WWW, "pkg", "probelab_bg.wasm")):
        sys.exit("www/pkg is missing: build the wasm module first (./lab does)")
    handler = functools.partial(Handler, directory=WWW)
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as httpd:
        print(f"Probelab is at http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
        httpd.serve_forever()


if __name__ == "__main__":
    main()
