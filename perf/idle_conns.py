#!/usr/bin/env python3
"""Open many idle TCP connections to one loopback port and hold them (perf/run.sh's memory test).

Connections are spread over several loopback source addresses so that they never run out of
ephemeral ports. Each one either sends nothing (`silent`), half a request line (`partial`), or
one complete request whose response is read before the connection is left idle (`keepalive`).

Protocol with the harness: prints `open N` on stdout once all N connections are established,
then holds them until SIGTERM/SIGINT (or --hold seconds, so it always stops by itself), then
prints `alive A closed C` (C connections the server had closed or answered meanwhile), closes
everything and exits 0. Prints `error ...` and exits 1 when it cannot open all of them.
Standard library only.
"""

import argparse
import resource
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"error: need {need} file descriptors, hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))


def read_response(sock, host_header):
    """Sends one GET and reads the whole response (Content-Length or chunked-free bodies only)."""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 2"):
        status_line = head.split(b"\r\n", 1)[0]
        raise ConnectionError(f"unexpected status: {status_line!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--sources", default="127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4",
                    help="comma-separated loopback source addresses, used round-robin")
    ap.add_argument("--mode", choices=("silent", "partial", "keepalive"), default="silent")
    ap.add_argument("--hold", type=float, default=120.0,
                    help="seconds to hold the connections at most before closing them anyway")
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    args = ap.parse_args()

    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for s in sources + [args.host]:
        if not s.startswith("127."):
            raise SystemExit(f"error: {s} is not a loopback address")
    raise_fd_limit(args.count + 64)

    stop = False

    def on_signal(_signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    socks = []
    started = time.monotonic()
    try:
        for i in range(args.count):
            if stop:
                raise ConnectionError("interrupted")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            # Let connect() pick the source port for the full 4-tuple, not bind().
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((sources[i % len(sources)], 0))
            s.settimeout(args.connect_timeout)
            s.connect((args.host, args.port))
            if args.mode == "partial":
                s.sendall(b"GET / HTTP/1.1\r\n")
            elif args.mode == "keepalive":
                read_response(s, f"{args.host}:{args.port}")
    except (OSError, ConnectionError, ValueError) as e:
        print(f"error after {len(socks) - 1} connections: {e}", flush=True)
        for s in socks:
            s.close()
        return 1
    print(f"open {len(socks)} in {time.monotonic() - started:.1f}s", flush=True)

    deadline = time.monotonic() + args.hold
    while not stop and time.monotonic() < deadline:
        time.sleep(0.05)

    alive = closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(1, socket.MSG_PEEK)
            closed += 1  # b"" is EOF; data means the server answered (e.g. a 408) or gave up
            del data
        except BlockingIOError:
            alive += 1
        except OSError:
            closed += 1
    print(f"alive {alive} closed {closed}", flush=True)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
