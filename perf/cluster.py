#!/usr/bin/env python3
"""Three Meridian nodes on loopback, as separate processes: how fast a change reaches every
node's data plane, how many small changes the cluster commits per second, and how long writes
are unavailable after the leader is killed.

    perf/cluster.py [--bin target/release/meridian] [--changes 1000] [--seconds 10]
                    [--writers 16,32] [--kills 3] [--client wrk|python] [--storage sled|redb]
                    [--results perf/RESULTS.md]

1. Propagation: each of --changes writes (PUT /api/v1/config on the leader, a new address for
   one GSLB name) is timed from its 200 to the moment all three nodes' DNS answer the new
   address (each node polled over UDP). p50/p99/max.
2. Throughput: for each count in --writers (default 16 and 32), that many keep-alive
   connections to the leader (wrk, or with --client python as many threads) rewrite pools
   (PUT /api/v1/pools/NAME, If-Match: *, a new member address or admin state each time) for
   --seconds; config revisions committed per second.
3. Recovery: kill -9 the leader, then write to a follower in a loop (no wait between tries);
   the time from the kill to the first 200. Repeated --kills times (the killed node restarts
   and catches up in between).

Standard library only; the numbers are appended to the results file with the date and command.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

NAME = "p.bench.test"


def log(msg):
    print(f"[cluster-perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Node:
    storage = "sled"

    def __init__(self, binary, base, node_id, extra="", cluster_bind="127.0.0.1:0"):
        self.binary, self.base, self.node_id = binary, base, node_id
        self.data = os.path.join(base, f"n{node_id}")
        self.conf = self.data + ".toml"
        self.extra = extra + f'\nstorage = "{Node.storage}"'
        self.start(cluster_bind)

    def start(self, cluster_bind):
        with open(self.conf, "w") as f:
            f.write(
                f'node_id = {self.node_id}\nname = "bench-{self.node_id}"\n'
                f'data_dir = "{self.data}"\nadmin_bind = "127.0.0.1:0"\n'
                f'cluster_bind = "{cluster_bind}"\ndns_bind = "127.0.0.1:0"\n{self.extra}\n'
            )
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.conf],
            stdout=subprocess.PIPE,
            stderr=open(self.data + ".log", "a"),
            env={**os.environ, "RUST_LOG": "warn"},
            text=True,
        )
        deadline = time.time() + 60
        for line in self.proc.stdout:
            if line.startswith("meridian ready: "):
                fields = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
                self.admin = fields["admin"].removeprefix("http://")
                self.cluster = fields["cluster"]
                host, port = fields["dns"].rsplit(":", 1)
                self.dns = (host, int(port))
                break
            if time.time() > deadline:
                raise SystemExit(f"node {self.node_id} not ready")
        else:
            raise SystemExit(f"node {self.node_id} exited; see {self.data}.log")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class Api:
    """One keep-alive connection to a node's API."""

    def __init__(self, node, token=None, basic=None):
        self.node = node
        self.headers = {"content-type": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        if basic:
            self.headers["authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        self.conn = None

    def call(self, method, path, body=None, headers=None, timeout=15):
        for attempt in range(2):
            if self.conn is None:
                host, port = self.node.admin.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                data = body if body is None or isinstance(body, bytes) else body.encode()
                self.conn.request(method, path, body=data, headers={**self.headers, **(headers or {})})
                resp = self.conn.getresponse()
                payload = resp.read()
                return resp.status, payload
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def dns_query(name, qid):
    header = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return header + q + struct.pack(">HH", 1, 1)


def dns_a(sock, addr, name, qid):
    """The A addresses answered for `name` (UDP), or None without an answer in 0.2 s."""
    sock.sendto(dns_query(name, qid), addr)
    sock.settimeout(0.2)
    try:
        while True:
            data, _ = sock.recvfrom(4096)
            if struct.unpack(">H", data[:2])[0] == qid:
                break
    except socket.timeout:
        return None
    ancount = struct.unpack(">H", data[6:8])[0]
    pos = 12
    while data[pos] != 0:  # the question's name
        pos += data[pos] + 1
    pos += 5
    out = []
    for _ in range(ancount):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos] != 0:
                pos += data[pos] + 1
            pos += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(data[pos : pos + rdlen]))
        pos += rdlen
    return out


def config(address, pools):
    members = "\n".join(
        f'[[pools]]\nname = "w{i}"\nmembers = [{{ address = "127.0.0.1:{20000 + i}" }}]\n'
        for i in range(pools)
    )
    return f"""api_version = "meridian/v1"
{members}
[[zones]]
name = "bench.test"
soa = {{ mname = "ns1", rname = "hostmaster" }}

[[gslb_records]]
name = "{NAME}"
ttl = 5
sites = [{{ name = "only", address = "{address}" }}]
"""


def addr_of(i):
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs)) - 1))]


WRK_WRITER = """
local i = 0
request = function()
  i = i + 1
  local k = i % WRITERS
  local body = string.format(
    '{"name":"w%d","members":[{"address":"127.0.0.1:%d"}]}', k, 20000 + (i % 30000))
  return wrk.format("PUT", "/api/v1/pools/w" .. k,
    {["Authorization"] = "Bearer TOKEN", ["If-Match"] = "*",
     ["Content-Type"] = "application/json"}, body)
end
"""


def throughput_wrk(n1, token, leader, writers, seconds, nodes):
    """wrk with `writers` keep-alive connections to the leader, each request rewriting pool
    `w(i mod writers)` with a new member address (always a change): commits/s, answers not
    2xx, answers 2xx. wrk's event loop costs the shared cores a fraction of Python's threads."""
    log(f"throughput (wrk): {writers} connections rewriting pools for {seconds} s")
    script = os.path.join(n1.base, "writer.lua")
    with open(script, "w") as f:
        f.write(WRK_WRITER.replace("WRITERS", str(writers)).replace("TOKEN", token))
    if os.environ.get("PERF_PID_FILE"):  # for `perf record -p` during this phase
        open(os.environ["PERF_PID_FILE"], "w").write(" ".join(str(n.proc.pid) for n in nodes))
    _, rev_before = leader.call("GET", "/api/v1/status")
    rev_before = json.loads(rev_before)["revision"]
    t0 = time.time()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{writers}", f"-d{seconds}s", "-s", script, f"http://{n1.admin}"],
        capture_output=True, text=True, check=True,
    ).stdout
    took = time.time() - t0
    _, rev_after = leader.call("GET", "/api/v1/status")
    rev_after = json.loads(rev_after)["revision"]
    total = int(out.split(" requests in ")[0].split()[-1])
    failed = 0
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            failed = int(line.split(":")[1])
    rate = (rev_after - rev_before) / took
    log("throughput %.0f commits/s (%d answers not 2xx, %d answered 2xx)" % (rate, failed, total - failed))
    return rate, failed, total - failed


def throughput(n1, token, leader, writers, seconds, nodes):
    """`writers` threads rewriting their own pool on the leader for `seconds`: commits/s,
    answers not 200, answers 200."""
    log(f"throughput: {writers} writers rewriting their own pool for {seconds} s")
    counts = [[0, 0] for _ in range(writers)]
    stop_at = time.time() + seconds

    def writer(k):
        api = Api(n1, token)
        state = ["disabled", "enabled"]
        j = 0
        while time.time() < stop_at:
            pool = {"name": f"w{k}", "members": [{"address": f"127.0.0.1:{20000 + k}", "state": state[j % 2]}]}
            st, _ = api.call("PUT", f"/api/v1/pools/w{k}", json.dumps(pool), {"if-match": "*"})
            j += 1
            counts[k][0 if st == 200 else 1] += 1

    if os.environ.get("PERF_PID_FILE"):  # for `perf record -p` during this phase
        open(os.environ["PERF_PID_FILE"], "w").write(" ".join(str(n.proc.pid) for n in nodes))
    _, rev_before = leader.call("GET", "/api/v1/status")
    rev_before = json.loads(rev_before)["revision"]
    t0 = time.time()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - t0
    _, rev_after = leader.call("GET", "/api/v1/status")
    rev_after = json.loads(rev_after)["revision"]
    ok = sum(c[0] for c in counts)
    failed = sum(c[1] for c in counts)
    rate = (rev_after - rev_before) / took
    log("throughput %.0f commits/s (%d answers not 200, %d answered 200)" % (rate, failed, ok))
    return rate, failed, ok


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "meridian"))
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--writers", default="16,32", help="writer counts, comma-separated")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--results", default=os.path.join(here, "RESULTS.md"))
    ap.add_argument("--storage", default="sled", choices=["sled", "redb"])
    ap.add_argument("--client", default="wrk", choices=["wrk", "python"],
                    help="the throughput phase's writers: wrk connections or Python threads")
    args = ap.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk, or use --client python")
    Node.storage = args.storage
    writer_counts = [int(w) for w in args.writers.split(",")]
    pools = max(writer_counts)

    base = tempfile.mkdtemp(prefix="meridian-cluster-perf-")
    nodes = []
    try:
        n1 = Node(args.bin, base, 1)
        nodes.append(n1)
        join = f'join = "{n1.cluster}"\ncluster_secret_file = "{n1.data}/cluster.secret"'
        nodes += [Node(args.bin, base, i, join) for i in (2, 3)]
        password = open(os.path.join(n1.data, "initial-admin-password")).read().strip()
        st, body = Api(n1, basic=f"admin:{password}").call("POST", "/api/v1/tokens", json.dumps({"name": "bench"}))
        assert st == 201, body
        token = json.loads(body)["token"]
        results = {}

        # --- 1. propagation -----------------------------------------------------------------
        log(f"propagation: {args.changes} changes, each until all three DNS planes answer it")
        leader = Api(n1, token)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lat, qid = [], 1
        for i in range(1, args.changes + 1):
            want = addr_of(i)
            st, body = leader.call("PUT", "/api/v1/config", config(want, pools), {"if-match": "*", "content-type": "application/toml"})
            assert st == 200, (st, body)
            acked = time.perf_counter()
            pending = list(nodes)
            while pending:
                if time.perf_counter() - acked > 5:
                    raise SystemExit(f"change {i} not served by every node within 5 s")
                still = []
                for n in pending:
                    qid = (qid + 1) & 0xFFFF
                    if dns_a(sock, n.dns, NAME, qid) != [want]:
                        still.append(n)
                pending = still
            lat.append((time.perf_counter() - acked) * 1000)
        results["prop"] = (statistics.median(lat), pct(lat, 99), max(lat))
        log("propagation p50 %.2f ms, p99 %.2f ms, max %.2f ms" % results["prop"])

        # --- 2. throughput ------------------------------------------------------------------
        run = throughput_wrk if args.client == "wrk" else throughput
        results["tput"] = [
            (w, *run(n1, token, leader, w, args.seconds, nodes)) for w in writer_counts
        ]

        # --- 3. recovery --------------------------------------------------------------------
        recov = []
        for k in range(args.kills):
            # The node that says it leads (another's view of the leader may be stale).
            lead = None
            while lead is None:
                for n in nodes:
                    st, body = Api(n, token).call("GET", "/api/v1/status")
                    if st == 200 and json.loads(body)["raft"]["state"] == "Leader":
                        lead = n
                time.sleep(0.1)
            lead_id = lead.node_id
            other = next(n for n in nodes if n.node_id != lead_id)
            api = Api(other, token)
            api.call("GET", "/api/v1/status")  # connection open before the kill
            cluster_addr = lead.cluster
            lead.kill9()
            killed = time.perf_counter()
            i = 0
            while True:
                i += 1
                st, _ = api.call("PUT", "/api/v1/config", config(addr_of(100000 + k * 1000 + i), pools), {"if-match": "*", "content-type": "application/toml"})
                if st == 200:
                    break
                if time.perf_counter() - killed > 30:
                    raise SystemExit("no write within 30 s of the leader kill")
            recov.append(time.perf_counter() - killed)
            log(f"recovery {k + 1}: {recov[-1]:.2f} s (leader {lead_id}, {i} tries)")
            lead.start(cluster_addr)
            time.sleep(3)  # let it catch up before the next round
        results["recov"] = recov or [float("nan")]

        tput_rows = "".join(
            f"| small-change writes ({w} {'wrk connections' if args.client == 'wrk' else 'Python writers'} on the leader, {args.seconds} s) | {c:.0f} commits/s (new config revisions; {ok} writes answered 2xx, {bad} not) | ≥ 1,000/s |\n"
            for (w, c, bad, ok) in results["tput"]
        )
        date = time.strftime("%Y-%m-%d")
        cmd = "perf/cluster.py " + " ".join(sys.argv[1:])
        out = f"""
## Cluster: propagation, write throughput, leader-loss recovery ({date})

`{cmd.strip()}`; three `meridian serve` processes ({os.path.basename(os.path.dirname(os.path.abspath(args.bin)))} build) on loopback, default Raft
timeouts, storage {args.storage}; {os.cpu_count()} cores shared by the nodes and the client.

| measure | result | target |
|---|---|---|
| propagation, acknowledged write → all three DNS planes answer it ({args.changes} changes) | p50 {results['prop'][0]:.2f} ms, p99 {results['prop'][1]:.2f} ms, max {results['prop'][2]:.2f} ms | p99 < 50 ms |
{tput_rows}| leader kill -9 → first accepted write on a follower | {', '.join(f'{r:.2f} s' for r in results['recov'])} (max {max(results['recov']):.2f} s) | < 2 s |
"""
        print(out)
        with open(args.results, "a") as f:
            f.write(out)
    finally:
        for n in nodes:
            n.stop()
        if os.environ.get("KEEP_TMP"):
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
