#!/usr/bin/env python3
"""The origin behind Meridian in the kTLS VM test.

GET /NAME    sends the file NAME from the served directory (sendfile)
GET /healthz answers "ok"
POST /upload answers "<sha256 hex> <bytes>" of the request body (Content-Length or chunked)

Usage: origin.py ADDRESS PORT DIRECTORY
"""

import hashlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            return self.answer(200, b"ok\n")
        path = os.path.join(self.server.root, os.path.basename(self.path))
        if not os.path.isfile(path):
            return self.answer(404, b"not found\n")
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.flush()
        with open(path, "rb") as f:
            sent = 0
            while sent < size:
                sent += os.sendfile(self.connection.fileno(), f.fileno(), sent, size - sent)

    def do_POST(self):
        h, n = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                h.update(self.rfile.read(size))
                n += size
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        self.answer(200, f"{h.hexdigest()} {n}\n".encode())

    def log_message(self, fmt, *args):
        sys.stderr.write("origin: " + (fmt % args) + "\n")


def main():
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = ThreadingHTTPServer((addr, port), Handler)
    server.root = root
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
