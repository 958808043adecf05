#!/usr/bin/env python3
"""A stand-in for `meridian`, only to exercise stage 2 of tests/vm/ktls.sh before Meridian
terminates TLS itself. NOT a proof of anything about Meridian.

    MERIDIAN_BIN=tests/vm/fake_meridian.py MERIDIAN_KTLS_STAGES=all tests/vm/ktls.sh

It answers the slice of Meridian's interface that the test uses: `serve --config FILE` (prints
the ready line, writes <data_dir>/initial-admin-password), `config validate --file FILE`, and on
admin_bind POST /api/v1/tokens, POST /api/v1/certificates, PUT /api/v1/config (TOML). Each
listener with a `tls` table proxies bytes to the first member of its route's pool: after a TLS
1.3 handshake in Python's ssl it hands the socket to the kernel (ktls_handoff.py) unless the
listener says ktls = "off".
"""

import base64
import json
import os
import select
import socket
import ssl
import sys
import tempfile
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from ktls_handoff import SOL_TLS, handoff  # noqa: E402

TLS_GET_RECORD_TYPE = 2
APPLICATION_DATA = 23
PASSWORD = "fake-admin-password"
TOKEN = "mrd_fake"
certificates = {}  # name -> (cert path, key path)


def serve_listener(bind, cert_name, ktls, upstream):
    host, port = bind.rsplit(":", 1)
    lsock = socket.create_server((host, int(port)))

    def connection(conn):
        cert, key = certificates[cert_name]
        keylog = tempfile.NamedTemporaryFile(prefix="fake-keylog.", delete=False).name
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.num_tickets = 0
        ctx.keylog_filename = keylog
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            if ktls == "off":
                client, read = tls, lambda: tls.recv(65536)
            else:
                client, _ = handoff(tls, keylog)

                def read():
                    data, anc, _, _ = client.recvmsg(65536, socket.CMSG_SPACE(1))
                    for level, kind, value in anc:
                        if level == SOL_TLS and kind == TLS_GET_RECORD_TYPE and value[0] != APPLICATION_DATA:
                            return b""  # an alert (close_notify): the client is done
                    return data
            up = socket.create_connection(upstream)
            while True:
                ready = [client] if ktls == "off" and client.pending() else []
                if not ready:
                    ready, _, _ = select.select([client, up], [], [])
                if client in ready:
                    data = read()
                    if not data:
                        break
                    up.sendall(data)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
            up.close()
            client.close()
        except (OSError, ssl.SSLError) as e:
            print(f"fake-meridian: {bind}: {e}", file=sys.stderr, flush=True)
        finally:
            os.unlink(keylog)

    def accept():
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def apply_config(cfg):
    pools = {p["name"]: p for p in cfg.get("pools", [])}
    for listener in cfg.get("listeners", []):
        tls = listener.get("tls")
        if not tls:
            continue
        route = next(r for r in cfg["routes"] if r["listener"] == listener["name"])
        host, port = pools[route["pool"]]["members"][0]["address"].rsplit(":", 1)
        serve_listener(listener["bind"], tls["certificates"][0], tls.get("ktls", "auto"), (host, int(port)))


class Admin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def authorized(self):
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def do_POST(self):
        body = self.body()
        if self.path == "/api/v1/tokens":
            basic = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != basic:
                return self.answer(401, {"error": "unauthorized"})
            return self.answer(201, {"id": "1", "name": json.loads(body)["name"], "role": "admin", "token": TOKEN})
        if self.path == "/api/v1/certificates" and self.authorized():
            req = json.loads(body)
            paths = []
            for part in ("cert_pem", "key_pem"):
                f = tempfile.NamedTemporaryFile("w", prefix=f"fake-{part}.", delete=False)
                f.write(req[part])
                f.close()
                paths.append(f.name)
            certificates[req["name"]] = tuple(paths)
            return self.answer(201, {"name": req["name"]})
        self.answer(404, {"error": "not found"})

    def do_PUT(self):
        body = self.body()
        if self.path != "/api/v1/config" or not self.authorized():
            return self.answer(404, {"error": "not found"})
        if self.headers.get("If-Match") is None:
            return self.answer(428, {"error": "If-Match required"})
        apply_config(tomllib.loads(body.decode()))
        self.answer(200, {"revision": 1})

    def log_message(self, fmt, *args):
        pass


def main():
    args = sys.argv[1:]
    if args[:2] == ["config", "validate"]:
        print(f"{args[-1]}: valid (fake meridian)")
        return
    if args[:1] != ["serve"]:
        print("fake meridian: serve --config FILE | config validate --file FILE", file=sys.stderr)
        sys.exit(2)
    with open(args[args.index("--config") + 1], "rb") as f:
        node = tomllib.load(f)
    os.makedirs(node["data_dir"], mode=0o700, exist_ok=True)
    with open(os.path.join(node["data_dir"], "initial-admin-password"), "w") as f:
        f.write(PASSWORD + "\n")
    host, port = node["admin_bind"].rsplit(":", 1)
    admin = ThreadingHTTPServer((host, int(port)), Admin)
    print(f"meridian ready: admin=http://{node['admin_bind']} (FAKE meridian, tests/vm/fake_meridian.py)", flush=True)
    admin.serve_forever()


if __name__ == "__main__":
    main()
