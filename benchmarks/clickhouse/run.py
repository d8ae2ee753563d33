#!/usr/bin/env python3
"""Items per second through one writeapi-server into ClickHouse, beside the
file store, in the same run.

    benchmarks/clickhouse/run.py [--duration S] [--connections 16,64,256] [--out DIR] [--smoke]
                                 [--stores file-always,file-never,clickhouse] [--clickhouse-dir DIR]

Run it through benchmarks/clickhouse/run.sh, which installs wrk and
ClickHouse from Debian and builds Release first. It starts a private
ClickHouse server (scripts/clickhouse-test-server, loopback, data in a temp
directory) and, for single items and 100-item batches (the Lua scripts of
benchmarks/http/, keep-alive) at each connection count, runs wrk for S
seconds against
  - writeapi-server --fsync always (the file store's default),
  - writeapi-server --fsync never,
  - writeapi-server --storage clickhouse (default flush: 5 ms or 10000 rows),
each on a fresh store. It records requests/s, items/s, p50/p99 latency,
the CPU used by writeapi-server and by ClickHouse, non-2xx answers, and
checks that every acknowledged item was stored (lines in the files, rows in
ClickHouse). Results go to DIR/clickhouse.jsonl and DIR/clickhouse.md.

--smoke: one second per store, 8 connections, checks only.
--stores: a subset of the stores. --clickhouse-dir: where ClickHouse keeps its
data, e.g. /dev/shm to take the disk out of ClickHouse's per-INSERT cost.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in benchmarks/http
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "http"))
from run import free_port, proc_cpu_seconds, run_wrk, unlimited_keys, wait_port  # noqa: E402

SERVER = os.environ.get("WRITEAPI_SERVER_BINARY") or os.path.join(ROOT, "build", "bin", "writeapi-server")
CLICKHOUSE_SCRIPT = os.path.join(ROOT, "scripts", "clickhouse-test-server")


def clickhouse_query(url, sql):
    with urllib.request.urlopen(urllib.request.Request(url + "/", data=sql.encode(), method="POST"),
                                timeout=60) as response:
        return response.read().decode()


class ClickHouse:
    def __init__(self, workdir, parent=None):
        self.dir = tempfile.mkdtemp(prefix="clickhouse-", dir=parent) if parent else os.path.join(workdir, "clickhouse")
        out = subprocess.run([CLICKHOUSE_SCRIPT, "start", self.dir, "auto"], check=True, capture_output=True,
                             text=True).stdout
        self.url = out.strip().splitlines()[-1]
        self.port = self.url.rsplit(":", 1)[1]
        with open(os.path.join(self.dir, self.port, "pid")) as f:
            self.pid = int(f.read())

    def stop(self):
        subprocess.run([CLICKHOUSE_SCRIPT, "stop", self.dir], check=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, store, workdir, clickhouse, database):
        self.port = free_port()
        self.store = store
        self.clickhouse = clickhouse
        self.database = database
        self.data = tempfile.mkdtemp(prefix="data-", dir=workdir)
        args = [SERVER, "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.data,
                "--keys", unlimited_keys(workdir), "--access-log", "off"]
        if store == "clickhouse":
            args += ["--storage", "clickhouse", "--clickhouse-url", clickhouse.url, "--clickhouse-database", database]
        else:
            args += ["--fsync", store.split("-")[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def stored_items(self):
        if self.store == "clickhouse":
            return int(clickhouse_query(self.clickhouse.url, f"SELECT count() FROM `{self.database}`.lines"))
        total = 0
        for dirpath, _, files in os.walk(self.data):
            for name in files:
                if name.endswith(".jsonl"):
                    with open(os.path.join(dirpath, name), "rb") as f:
                        total += f.read().count(b"\n")
        return total


def measure(store, body, connections, duration, workdir, clickhouse, run_number):
    database = f"bench_{run_number}"
    server = Server(store, workdir, clickhouse, database)
    items = 100 if body == "batch100" else 1
    try:
        cpu = {"server": proc_cpu_seconds(server.proc.pid), "clickhouse": proc_cpu_seconds(clickhouse.pid)}
        result = run_wrk(server.port, os.path.join(ROOT, "benchmarks", "http", f"{body}.lua"), connections, duration,
                         close=False)
        result["server_cpu_cores"] = (proc_cpu_seconds(server.proc.pid) - cpu["server"]) / duration
        result["clickhouse_cpu_cores"] = (proc_cpu_seconds(clickhouse.pid) - cpu["clickhouse"]) / duration
        # For ClickHouse, syncs are INSERTs: appends per INSERT is the batching.
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10).read().decode()
        for name in ("writeapi_storage_syncs_total", "writeapi_storage_appends_total"):
            match = re.search(rf"^{name} (\S+)$", metrics, re.M)
            result[name] = float(match.group(1)) if match else None
    finally:
        server.stop()
    result["stored_items"] = server.stored_items()
    if store == "clickhouse":
        clickhouse_query(clickhouse.url, f"DROP DATABASE `{database}`")
    shutil.rmtree(server.data, ignore_errors=True)
    result.update(store=store, body=body, connections=connections, items_per_request=items,
                  items_per_s=result["requests_per_s"] * items)
    return result


def per_insert(r):
    if r["store"] != "clickhouse" or not r.get("writeapi_storage_syncs_total"):
        return ""
    return f"{r['writeapi_storage_appends_total'] / r['writeapi_storage_syncs_total']:.1f}"


def markdown(results):
    lines = ["| store | body | conns | req/s | items/s | p50 ms | p99 ms | server CPU | ClickHouse CPU | requests per INSERT | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['store']} | {r['body']} | {r['connections']} | {r['requests_per_s']:.0f} | {r['items_per_s']:.0f} | "
            f"{r['p50_ms'] or 0:.2f} | {r['p99_ms'] or 0:.2f} | {r['server_cpu_cores']:.2f} | "
            f"{r['clickhouse_cpu_cores']:.2f} | {per_insert(r)} | {r['non_2xx'] + r['socket_errors']} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", default="16,64,256")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--stores", default="file-always,file-never,clickhouse")
    parser.add_argument("--clickhouse-dir", help="where ClickHouse keeps its data (default: a temp directory)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="writeapi-clickhouse-bench-")
    clickhouse = ClickHouse(workdir, args.clickhouse_dir)
    results = []
    try:
        stores = args.stores.split(",")
        if args.smoke:
            plan = [(s, b, 8, 1) for b in ("single", "batch100") for s in stores]
        else:
            conns = [int(c) for c in args.connections.split(",")]
            plan = [(s, b, c, args.duration) for b in ("single", "batch100") for c in conns for s in stores]
        for n, (store, body, conns, duration) in enumerate(plan):
            r = measure(store, body, conns, duration, workdir, clickhouse, n)
            results.append(r)
            print(f"{store:12} {body:9} c={conns:<4} {r['requests_per_s']:>9.0f} req/s {r['items_per_s']:>10.0f} items/s "
                  f"p50 {r['p50_ms'] or 0:7.2f} ms p99 {r['p99_ms'] or 0:8.2f} ms  cpu {r['server_cpu_cores']:.2f} "
                  f"+ clickhouse {r['clickhouse_cpu_cores']:.2f}  errors {r['non_2xx'] + r['socket_errors']}",
                  flush=True)
        bad = [r for r in results if r["non_2xx"] or r["socket_errors"] or
               r["stored_items"] < r["requests"] * r["items_per_request"]]
        for r in bad:
            print("FAILURE (refused requests or acknowledged items missing):", json.dumps(r), file=sys.stderr)
        if not args.smoke:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "clickhouse.jsonl"), "w") as f:
                for r in results:
                    f.write(json.dumps(r) + "\n")
            with open(os.path.join(args.out, "clickhouse.md"), "w") as f:
                f.write(markdown(results))
            print(f"results: {args.out}/clickhouse.jsonl, {args.out}/clickhouse.md")
        print("clickhouse benchmark:", "FAILED" if bad else "ok")
        return 1 if bad else 0
    finally:
        clickhouse.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
