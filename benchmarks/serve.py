"""Load test of ``synergraph serve``: requests/s and latency of ``POST /recommend`` (k=20).

    .venv/bin/python -m benchmarks.serve --run RUN_DIR [--requests 10000] [--concurrency 1 16]

Starts the real server process on a free port, then for each concurrency level sends
``--requests`` requests from that many concurrent asyncio clients (httpx), each for one user
drawn at random (seeded) from the run's users, and prints requests/s, p50/p99 latency and the
server's resident memory after each level (no growth means nothing accumulates per request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(run_dir: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, DGLBACKEND="pytorch", PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "serve", "--run", run_dir,
                                "--port", str(port), "--device", "cpu"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {process.stderr.read()}")
        time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not start in 300 s")


async def load(base: str, users: list, n_requests: int, concurrency: int, k: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    picks = [rng.choice(users) for _ in range(n_requests)]
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for user in picks:
        queue.put_nowait(user)

    async def client(session: httpx.AsyncClient) -> None:
        while not queue.empty():
            user = queue.get_nowait()
            start = time.perf_counter()
            reply = await session.post(f"{base}/recommend", json={"users": [user], "k": k})
            latencies.append(time.perf_counter() - start)
            if reply.status_code != 200:
                raise RuntimeError(f"{reply.status_code}: {reply.text}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="A run directory written by 'synergraph train'.")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from dgl_synergraph.api import load_run

    run = load_run(args.run)
    raw = run.dataset.raw_user_ids
    users = [str(u) for u in raw if u is not None] if raw is not None else list(range(run.dataset.n_users))
    port = _free_port()
    server = start_server(args.run, port)
    base = f"http://127.0.0.1:{port}"
    try:
        start_rss = _rss_mb(server.pid)
        print(f"{run.config.model} on {run.config.dataset}: {run.dataset.n_users} users, {run.dataset.n_items} items; "
              f"server RSS after start-up {start_rss:.0f} MB; {os.cpu_count()} cores")
        print("| concurrency | requests | requests/s | p50 ms | p99 ms | server RSS after (MB) |")
        print("|---|---|---|---|---|---|")
        for concurrency in args.concurrency:
            started = time.perf_counter()
            latencies = asyncio.run(load(base, users, args.requests, concurrency, args.k, args.seed))
            elapsed = time.perf_counter() - started
            cuts = statistics.quantiles(latencies, n=100)
            print(f"| {concurrency} | {len(latencies)} | {len(latencies) / elapsed:.0f} | {cuts[49] * 1000:.1f} | "
                  f"{cuts[98] * 1000:.1f} | {_rss_mb(server.pid):.0f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
