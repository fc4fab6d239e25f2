"""``rnncap serve`` under load: 1, 4 and 16 concurrent clients on loopback, then the server's memory over 1,000
requests.

    python benchmarks/bench_serve.py                        # the shipped model, beam 3, about 5 minutes on 2 cores
    python benchmarks/bench_serve.py --requests 32 --memory-requests 200 --levels 1,16

Starts ``rnncap serve --port 0 --only-model`` as a subprocess (127.0.0.1 only), waits for /api/health, and
sends the example photos (examples/photos/*.jpg, one per request, as raw JPEG bodies, in turn) from each
level's clients (threads, one keep-alive connection each) until the level's fixed number of requests is done or
its time is up. Prints per level: captions/s, p50 and p99 latency, errors by status, the server's RSS before and
after. Then the memory run: RSS after the first 50 requests and after ``--memory-requests`` (16 clients).

Goals (2-core machine, shipped model): no 5xx at any level; 16-client throughput >= 2x the one-client throughput
(micro-batching); RSS after 1,000 requests within 10% of RSS after the first 50. The server is stopped with
SIGTERM at the end and must exit 0.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted((REPO / "examples" / "photos").glob("*.jpg"))
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class Level:
    clients: int
    done: int
    seconds: float
    latencies_ms: list[float]
    errors: Counter
    rss_before: int
    rss_after: int

    @property
    def throughput(self) -> float:
        return (self.done - sum(self.errors.values())) / self.seconds


def start_server(model: str | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "rnncap.cli", "serve", "--port", "0", "--only-model", "--host", "127.0.0.1"]
    command += ["--model", model] if model else []
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 300
    for line in process.stderr:
        found = LISTENING.search(line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # keep draining
            return process, found.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise SystemExit("rnncap serve did not start")


def rss_bytes(pid: int) -> int:
    """The process's resident memory (VmRSS), Linux."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def run_level(url: str, pid: int, clients: int, requests: int, max_seconds: float, query: str) -> Level:
    """``clients`` threads share ``requests`` requests (or stop at ``max_seconds``)."""
    bodies = [photo.read_bytes() for photo in PHOTOS]
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    errors: Counter = Counter()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        nonlocal issued
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                with lock:
                    if issued >= requests or time.monotonic() > deadline:
                        return
                    body = bodies[issued % len(bodies)]
                    issued += 1
                started = time.perf_counter()
                try:
                    status = http.post(f"/api/caption{query}", content=body, headers={"content-type": "image/jpeg"})
                    code: int | str = status.status_code
                except httpx.HTTPError as err:
                    code = type(err).__name__
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                    if code != 200:
                        errors[code] += 1

    before = rss_bytes(pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Level(clients, len(latencies), seconds, latencies, errors, before, rss_bytes(pid))


def print_table(levels: list[Level]) -> None:
    print("| clients | requests | captions/s | p50 ms | p99 ms | errors by status | server RSS before -> after |")
    print("|---:|---:|---:|---:|---:|---|---|")
    for level in levels:
        p50, p99 = np.percentile(level.latencies_ms, [50, 99])
        errors = ", ".join(f"{code}: {n}" for code, n in sorted(level.errors.items(), key=str)) or "none"
        rss = f"{level.rss_before / 2**20:.0f} -> {level.rss_after / 2**20:.0f} MiB"
        print(f"| {level.clients} | {level.done} | {level.throughput:.2f} | {p50:.0f} | {p99:.0f} | {errors} | {rss} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model name or file (default: the shipped one)")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (default 64)")
    parser.add_argument("--memory-requests", type=int, default=1000, help="requests of the memory run (default 1000)")
    parser.add_argument("--max-seconds", type=float, default=240, help="time limit of each run (default 240)")
    parser.add_argument("--beam", type=int, default=3, help="beam width (default 3)")
    args = parser.parse_args()
    query = f"?beam={args.beam}"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    process, url = start_server(args.model)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            health = http.get("/api/health").json()
            print(f"serving {health['default']} on {', '.join(health['encoders'])} at {url}; beam {args.beam}")
            http.post(f"/api/caption{query}", content=PHOTOS[0].read_bytes(), headers={"content-type": "image/jpeg"})
        levels = [
            run_level(url, process.pid, int(n), args.requests, args.max_seconds, query) for n in args.levels.split(",")
        ]
        print_table(levels)
        with httpx.Client(base_url=url) as http:
            print("batch sizes so far (size: batches):", http.get("/api/health").json()["queue"]["batch_sizes"])
        memory_run(url, process.pid, args, query)
        five_xx = sum(n for level in levels for code, n in level.errors.items() if str(code).startswith("5"))
        by_clients = {level.clients: level.throughput for level in levels}
        if 1 in by_clients and 16 in by_clients:
            ratio = by_clients[16] / by_clients[1]
            print(f"16 clients / 1 client throughput: {ratio:.2f}x (goal >= 2x: {'met' if ratio >= 2 else 'NOT met'})")
        print(f"5xx responses: {five_xx} (goal 0: {'met' if five_xx == 0 else 'NOT met'})")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(120)
        print(f"server stopped by SIGTERM, exit status {status}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def memory_run(url: str, pid: int, args: argparse.Namespace, query: str) -> None:
    """RSS after the first 50 requests, halfway and after ``--memory-requests`` (16 clients): a leak keeps
    growing from the middle to the end, an allocator's plateau does not."""
    half = args.memory_requests // 2
    runs = [
        run_level(url, pid, 16, n, args.max_seconds * 4, query) for n in (50, half - 50, args.memory_requests - half)
    ]
    first, last = runs[0].rss_after, runs[-1].rss_after
    growth = last / first - 1
    verdict = "met" if abs(growth) <= 0.1 else "NOT met"
    done = sum(run.done for run in runs)
    errors = sum((run.errors for run in runs), Counter())
    print(
        f"memory: RSS after the first 50 requests {first / 2**20:.0f} MiB, after {50 + runs[1].done} "
        f"{runs[1].rss_after / 2**20:.0f} MiB, after {done} {last / 2**20:.0f} MiB ({growth:+.1%} from 50; goal "
        f"within 10%: {verdict}; {last / runs[1].rss_after - 1:+.1%} over the second half); "
        f"{runs[-1].throughput:.2f} captions/s; errors: {dict(errors) or 'none'}"
    )


if __name__ == "__main__":
    sys.exit(main())
