#!/usr/bin/env python3
"""Kernel TLS without Meridian: what Meridian does, in a hundred lines of Python.

A TLS 1.3 handshake runs in user space (Python's ssl, OpenSSL); the server then hands its socket
to the kernel (TCP_ULP "tls" plus TLS_TX/TLS_RX keys derived from the traffic secrets, read from
the key log) and only uses plain send/sendfile/recv from there on. The client stays in OpenSSL,
so the bytes it decrypts prove the kernel wrote real TLS records, and the bytes the server reads
prove the kernel decrypted OpenSSL's records.

Usage: ktls_handoff.py CERT KEY [DOWN_MB [UP_MB]]
Runs one connection per TLS 1.3 suite (chosen through OPENSSL_CONF in a child process) and
prints one line per connection; exits non-zero on any mismatch.
"""

import hashlib
import hmac
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading

TCP_ULP = 31
SOL_TLS = 282
TLS_TX, TLS_RX = 1, 2
TLS_1_3_VERSION = 0x0304
# suite: (kernel cipher type, key length, hash)
SUITES = {
    "TLS_AES_128_GCM_SHA256": (51, 16, hashlib.sha256),
    "TLS_AES_256_GCM_SHA384": (52, 32, hashlib.sha384),
    "TLS_CHACHA20_POLY1305_SHA256": (54, 32, hashlib.sha256),
}


def hkdf_expand_label(secret, label, length, hash_fn):
    info = struct.pack(">H", length) + bytes([len(b"tls13 " + label)]) + b"tls13 " + label + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hash_fn).digest()
        out += block
        i += 1
    return out[:length]


def crypto_info(suite, secret):
    """struct tls12_crypto_info_* for a TLS 1.3 traffic secret at record sequence 0."""
    cipher, key_len, hash_fn = SUITES[suite]
    key = hkdf_expand_label(secret, b"key", key_len, hash_fn)
    iv = hkdf_expand_label(secret, b"iv", 12, hash_fn)
    seq = bytes(8)
    head = struct.pack("=HH", TLS_1_3_VERSION, cipher)
    if cipher == 54:  # ChaCha20-Poly1305: a 12-byte iv, no salt
        return head + iv + key + seq
    return head + iv[4:] + key + iv[:4] + seq


def handoff(tls, keylog):
    """Moves an established TLS 1.3 server connection (an ssl.SSLSocket whose context logged
    its keys to `keylog` and sent no session tickets) to the kernel. Returns the plain socket,
    which now encrypts on send and decrypts on recv, and the suite."""
    suite = tls.cipher()[0]
    with open(keylog) as f:
        secrets = dict(l.split()[0::2] for l in f if l.strip() and not l.startswith("#"))
    raw = socket.socket(fileno=tls.detach())  # from here on OpenSSL is out of the way
    raw.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
    raw.setsockopt(SOL_TLS, TLS_TX, crypto_info(suite, bytes.fromhex(secrets["SERVER_TRAFFIC_SECRET_0"])))
    raw.setsockopt(SOL_TLS, TLS_RX, crypto_info(suite, bytes.fromhex(secrets["CLIENT_TRAFFIC_SECRET_0"])))
    return raw, suite


def tls_stat():
    with open("/proc/net/tls_stat") as f:
        return dict((k, int(v)) for k, v in (line.split() for line in f))


def recv_exact(recv, n):
    h, got = hashlib.sha256(), 0
    while got < n:
        chunk = recv(min(1 << 16, n - got))
        if not chunk:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        h.update(chunk)
        got += len(chunk)
    return h.hexdigest()


def one_connection(cert, key, down, up):
    """Runs in a child whose OPENSSL_CONF pins one suite. Returns a report line."""
    keylog = tempfile.NamedTemporaryFile(prefix="keylog.", delete=False).name
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sctx.num_tickets = 0  # no post-handshake records: both directions start at sequence 0
    sctx.keylog_filename = keylog
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    down_file = tempfile.NamedTemporaryFile(prefix="down.", delete=False)
    down_file.write(os.urandom(down))
    down_file.close()
    down_sha = hashlib.sha256(open(down_file.name, "rb").read()).hexdigest()
    up_data = os.urandom(up)
    result = {}

    def server():
        conn, _ = lsock.accept()
        raw, suite = handoff(sctx.wrap_socket(conn, server_side=True), keylog)
        result["suite"] = suite
        result["during"] = tls_stat()
        result["ss"] = subprocess.run(["ss", "-tnie", "state", "established", f"( sport = :{port} )"],
                                      capture_output=True, text=True).stdout
        with open(down_file.name, "rb") as f:  # sendfile: the kernel encrypts page-cache pages
            sent = 0
            while sent < down:
                sent += os.sendfile(raw.fileno(), f.fileno(), sent, down - sent)
        result["up_sha"] = recv_exact(raw.recv, up)
        raw.sendall(bytes.fromhex(result["up_sha"]))
        raw.close()

    t = threading.Thread(target=server)
    t.start()
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(cert)
    cctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port)) as s, cctx.wrap_socket(s) as c:
        got_down = recv_exact(c.recv, down)
        c.sendall(up_data)
        echoed = b""
        while len(echoed) < 32:
            chunk = c.recv(32 - len(echoed))
            if not chunk:
                break
            echoed += chunk
    t.join()
    os.unlink(down_file.name)
    os.unlink(keylog)
    up_sha = hashlib.sha256(up_data).hexdigest()
    ok = got_down == down_sha and result["up_sha"] == up_sha and echoed.hex() == up_sha
    during = result["during"]
    ulp = re.search(r"tcp-ulp-tls.*", result["ss"])
    ulp = ulp.group(0).strip() if ulp else None
    line = (f"{result['suite']}: down {down >> 20} MB sha256 {'ok' if got_down == down_sha else 'MISMATCH'}, "
            f"up {up >> 20} MB sha256 {'ok' if result['up_sha'] == up_sha else 'MISMATCH'}, "
            f"digest back {'ok' if echoed.hex() == up_sha else 'MISMATCH'}, "
            f"while open TlsCurrTxSw={during['TlsCurrTxSw']} TlsCurrRxSw={during['TlsCurrRxSw']}; ss: {ulp or '(no ulp info)'}")
    return ok, line


def main():
    cert, key = sys.argv[1], sys.argv[2]
    down = int(sys.argv[3] if len(sys.argv) > 3 else 16) << 20
    up = int(sys.argv[4] if len(sys.argv) > 4 else 4) << 20
    if os.environ.get("KTLS_HANDOFF_CHILD"):
        ok, line = one_connection(cert, key, down, up)
        print(line, flush=True)
        sys.exit(0 if ok else 1)
    failed = 0
    for suite in SUITES:
        conf = tempfile.NamedTemporaryFile("w", prefix="openssl.", suffix=".cnf", delete=False)
        conf.write("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
                   f"[sys]\nCiphersuites = {suite}\n")
        conf.close()
        env = dict(os.environ, OPENSSL_CONF=conf.name, KTLS_HANDOFF_CHILD="1")
        rc = subprocess.run([sys.executable] + sys.argv, env=env).returncode
        os.unlink(conf.name)
        if rc != 0:
            print(f"{suite}: FAILED (exit {rc})", flush=True)
            failed += 1
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
