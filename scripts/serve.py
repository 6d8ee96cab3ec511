#!/usr/bin/env python3
"""Serves the lab on 127.0.0.1: www/ at /, the model files at /models/.

Files are served whole, or one byte range at a time (HTTP Range requests): the page streams a
model larger than its memory (a 7B GGUF) to the GPU in parts.

Standard library only. Usage: scripts/serve.py [--port 8000] [--host 127.0.0.1]
"""
import argparse
import functools
import http.server
import os
import re
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

    def send_head(self):
        """A GET or HEAD; with a single `Range: bytes=a-b` (or `a-`, `-n`) on a file, 206 with
        that part. Anything else (no range, several ranges) gets the whole file."""
        self.range_left = None
        path = self.translate_path(self.path)
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (self.headers.get("Range") or "").strip())
        if not m or m[1] == m[2] == "" or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        if m[1] == "":
            start, end = max(0, size - int(m[2])), size - 1
        else:
            start, end = int(m[1]), min(size - 1, int(m[2])) if m[2] else size - 1
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        # As the whole file's answer has it: the page keeps parts per version of the file.
        self.send_header("Last-Modified", self.date_time_string(os.path.getmtime(path)))
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.range_left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        if self.range_left is None:
            return super().copyfile(source, outputfile)
        while self.range_left > 0:
            buf = source.read(min(1 << 20, self.range_left))
            if not buf:
                break
            outputfile.write(buf)
            self.range_left -= len(buf)

    def end_headers(self):
        # No inline script or eval anywhere: only the page's own files, and wasm compilation.
        # connect-src stays open to http(s) because a user may load a model from any URL.
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Accept-Ranges", "bytes")
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
