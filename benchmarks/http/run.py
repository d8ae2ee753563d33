#!/usr/bin/env python3
"""HTTP benchmark of writeapi-server against an nginx ceiling, with wrk.

    benchmarks/http/run.py [--duration S] [--out DIR] [--smoke] [--connections 1,16,64,256]
                           [--kinds nginx,writeapi-never,writeapi-always,asio-never,asio-always]

Builds nothing itself: run it through benchmarks/http/run.sh, which installs
wrk, nginx and gnuplot from Debian and builds Release first.

For each scenario (single-item or 100-item batches; keep-alive or
Connection: close; 1, 16, 64 and 256 connections) it runs wrk against
  - writeapi-server --fsync never,
  - writeapi-server --fsync always (write-ahead log, group commit),
  - writeapi-asio-server (examples/asio-server: the library on Boost.Beast)
    with --fsync never and always, when it was built: where the library's
    own ceiling is, under another HTTP stack,
  - nginx answering `return 204;` on the same URL (no parsing, no storage:
    the most this machine can do over HTTP),
and records requests/s, items/s, p50/p99 latency, server CPU (cores used)
and peak RSS. Results go to DIR/http.jsonl and DIR/http.md; plots are made by
benchmarks/http/plot.sh.

--smoke runs each server kind for one second on two scenarios and checks the
answers (no non-2xx, every acknowledged item stored); it asserts no timing.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.path.join(ROOT, "build", "bin", "writeapi-server")
ASIO_SERVER = os.path.join(ROOT, "build", "bin", "writeapi-asio-server")
KEYS = os.path.join(ROOT, "examples", "demo-keys.json")
ACCESS_KEY = "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238"
HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def proc_cpu_seconds(pid):
    """utime + stime of a process and its children threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def parse_latency(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port, script, connections, duration, close):
    threads = min(2, connections)
    env = dict(os.environ, WRITEAPI_CLOSE="1" if close else "0")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script,
           f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = parse_latency(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return result


def unlimited_keys(workdir):
    """demo-keys.json with device limits far above what wrk sends: the
    default limits (10 requests/s per deviceId) would measure 429s."""
    with open(KEYS) as f:
        keys = json.load(f)
    unlimited = {"rate": 1e9, "burst": 1e9}
    keys["buckets"]["homelab"]["limits"] = {"anonymous": unlimited, "device": unlimited}
    path = os.path.join(workdir, "keys.json")
    with open(path, "w") as f:
        json.dump(keys, f)
    return path


class WriteApiServer:
    def __init__(self, fsync, workdir, asio=False):
        self.port = free_port()
        self.data = tempfile.mkdtemp(prefix="data-", dir=workdir)
        args = [ASIO_SERVER if asio else SERVER, "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", self.data, "--keys", unlimited_keys(workdir), "--fsync", fsync]
        if not asio:
            args += ["--access-log", "off"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def stored_lines(self):
        total = 0
        for dirpath, _, files in os.walk(self.data):
            for name in files:
                if name.endswith(".jsonl"):
                    with open(os.path.join(dirpath, name), "rb") as f:
                        total += f.read().count(b"\n")
        return total


class Nginx:
    def __init__(self, workdir):
        self.port = free_port()
        prefix = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes auto;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{self.port};
    location /write/v3/bucket/ {{ return 204; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", prefix], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        self.proc.wait(timeout=30)


def nginx_pids(root_pid):
    pids = [root_pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == root_pid:
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def measure(kind, scenario, connections, duration, workdir):
    body, close = scenario
    script = os.path.join(HERE, f"{body}.lua")
    items = 100 if body == "batch100" else 1
    if kind == "nginx":
        server = Nginx(workdir)
        pids = lambda: nginx_pids(server.proc.pid)
    else:
        front, fsync = kind.split("-")
        server = WriteApiServer(fsync, workdir, asio=front == "asio")
        pids = lambda: [server.proc.pid]
    try:
        cpu_before = sum(proc_cpu_seconds(p) for p in pids())
        start = time.time()
        result = run_wrk(server.port, script, connections, duration, close)
        elapsed = time.time() - start
        cpu_after = sum(proc_cpu_seconds(p) for p in pids())
        result["server_cpu_cores"] = (cpu_after - cpu_before) / elapsed
        result["server_peak_rss_mib"] = max(proc_peak_rss_mib(p) for p in pids())
        if kind != "nginx":
            result["stored_lines"] = server.stored_lines()
    finally:
        server.stop()
    if kind != "nginx":
        # Lines are counted after a clean stop, so every acknowledged item is in.
        result["stored_lines"] = server.stored_lines()
    result.update(kind=kind, body=body, keep_alive=not close, connections=connections,
                  items_per_s=result["requests_per_s"] * items, items_per_request=items)
    return result


def markdown(results):
    lines = ["| server | body | keep-alive | conns | req/s | items/s | p50 ms | p99 ms | CPU cores | peak RSS MiB | errors |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['kind']} | {r['body']} | {'yes' if r['keep_alive'] else 'no'} | {r['connections']} | "
            f"{r['requests_per_s']:.0f} | {r['items_per_s']:.0f} | {r['p50_ms'] or 0:.2f} | {r['p99_ms'] or 0:.2f} | "
            f"{r['server_cpu_cores']:.2f} | {r['server_peak_rss_mib']:.1f} | {r['non_2xx'] + r['socket_errors']} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--connections", default="1,16,64,256")
    parser.add_argument("--kinds", default="nginx,writeapi-never,writeapi-always,asio-never,asio-always")
    args = parser.parse_args()
    have_asio = os.path.exists(ASIO_SERVER)
    if not have_asio:
        print("writeapi-asio-server not built (Boost.Beast missing): its rows are left out", file=sys.stderr)
    kinds = [k for k in args.kinds.split(",") if have_asio or not k.startswith("asio-")]

    workdir = tempfile.mkdtemp(prefix="writeapi-http-bench-")
    results = []
    try:
        if args.smoke:
            plan = [(k, s, 8, 1) for k in kinds if k != "nginx"
                    for s in (("single", False), ("batch100", True))]
        else:
            conns = [int(c) for c in args.connections.split(",")]
            plan = [(k, (body, close), c, args.duration)
                    for body in ("single", "batch100") for close in (False, True) for c in conns
                    for k in kinds]
        for kind, scenario, conns, duration in plan:
            r = measure(kind, scenario, conns, duration, workdir)
            results.append(r)
            print(f"{kind:16} {scenario[0]:9} {'close' if scenario[1] else 'keep-alive':10} c={conns:<4} "
                  f"{r['requests_per_s']:>10.0f} req/s {r['items_per_s']:>11.0f} items/s "
                  f"p99 {r['p99_ms'] or 0:8.2f} ms  cpu {r['server_cpu_cores']:.2f}  rss {r['server_peak_rss_mib']:.1f} MiB"
                  f"  errors {r['non_2xx'] + r['socket_errors']}", flush=True)
        if args.smoke:
            bad = [r for r in results if r["non_2xx"] or r["socket_errors"] or
                   r["stored_lines"] < r["requests"] * r["items_per_request"]]
            for r in bad:
                print("SMOKE FAILURE:", json.dumps(r), file=sys.stderr)
            print("http benchmark smoke:", "FAILED" if bad else "ok")
            return 1 if bad else 0
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "http.jsonl"), "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
        with open(os.path.join(args.out, "http.md"), "w") as f:
            f.write(markdown(results))
        print(f"results: {args.out}/http.jsonl, {args.out}/http.md")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
