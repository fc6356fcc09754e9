"""Latency per execution of the three Openfabric transports against the local node (`atelier node`).

    .venv/bin/python benchmarks/openfabric_transports.py [--n 20] [--shape marshmallow|simple|both] [--json]

Starts `python -m agent.openfabric_node text-to-image` (sketch backend) as a separate process on a free
loopback port, then for each transport runs --n executions, interleaved round-robin so machine load falls
on all of them alike, after 2 warm-up runs each:

  socket      our socket.io client (tools/openfabric/client.py, one connection per execution)
  sdk         openfabric_pysdk's Proxy through our wrapper (one Proxy per execution, always disconnected)
  sdk-reused  one long-lived Proxy, request() + wait() per execution (the SDK's own usage; no wrapper)
  rest        POST /execution

"execute" is the execution alone (input sent -> output in hand); "generate" is the whole backend call
(cached schema, execution, resource download, checks). The node's own generation time is in both: with
--shape simple the benchmark asks for 64x64 sketches so the transport's share shows; the marshmallow shape
(the real apps' shape, the node's default) has no size field, so its sketches are 512x512.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRANSPORTS = ("socket", "sdk", "sdk-reused", "rest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(shape: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agent.openfabric_node", "text-to-image", "--port", str(port), "--shape", shape],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/manifest", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the local node ({shape}) did not start") from None
            time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5) * 1000, 1), "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1), "min_ms": round(min(values) * 1000, 1)}


def measure(url: str, shape: str, n: int) -> dict:
    from openfabric_pysdk.helper.proxy import Proxy

    from tools.openfabric.client import OpenfabricClient, generate_sync, reset_state, run_sync
    from tools.openfabric.config import OpenfabricSettings
    from tools.openfabric.schema_mapping import ToolValues, build_input

    values = ToolValues(prompt="a brass owl automaton", width=64, height=64) if shape == "simple" else ToolValues(prompt="a brass owl automaton")
    settings = {t: OpenfabricSettings(transport=t, execution_timeout=120, schema_ttl=3600) for t in ("socket", "sdk", "rest")}
    reset_state()

    async def metadata():
        client = OpenfabricClient(url, settings["rest"])
        async with client.session():
            return await client.metadata()

    body = build_input(run_sync(metadata).input_schema, values, kind="image").body
    reused = Proxy(url, "bench")

    def execute_once(transport: str) -> float:
        if transport == "sdk-reused":
            started = time.perf_counter()
            execution = reused.request(body, "bench")
            if not execution.wait(120) or execution.status() != "COMPLETED":
                raise RuntimeError(f"sdk-reused: {execution.status()}")
            return time.perf_counter() - started

        async def go() -> float:
            client = OpenfabricClient(url, settings[transport])
            async with client.session():
                started = time.perf_counter()
                await client.execute(body)
                return time.perf_counter() - started

        return run_sync(go)

    def generate_once(transport: str) -> float:
        started = time.perf_counter()
        generate_sync(url, "image", values, settings=settings[transport])
        return time.perf_counter() - started

    execute: dict[str, list[float]] = {t: [] for t in TRANSPORTS}
    generate: dict[str, list[float]] = {t: [] for t in ("socket", "sdk", "rest")}
    try:
        for _ in range(2):  # warm-up: imports, the node's first sketch, connection pools
            for transport in TRANSPORTS:
                execute_once(transport)
        for _ in range(n):
            for transport in TRANSPORTS:
                execute[transport].append(execute_once(transport))
            for transport in generate:
                generate[transport].append(generate_once(transport))
    finally:
        reused.disconnect()
    return {"execute": {t: summary(v) for t, v in execute.items()}, "generate": {t: summary(v) for t, v in generate.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--shape", choices=("marshmallow", "simple", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shapes = ("simple", "marshmallow") if args.shape == "both" else (args.shape,)
    results = {}
    for shape in shapes:
        proc, url = start_node(shape)
        try:
            results[shape] = measure(url, shape, args.n)
        finally:
            proc.terminate()
            proc.wait(10)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"Openfabric transports against the local node (sketch backend), {args.n} runs each, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for shape, result in results.items():
        print(f"\nshape={shape}" + (" (64x64 sketches)" if shape == "simple" else " (512x512 sketches; the real apps' shape)"))
        print(f"  {'transport':<11} {'execute p50':>12} {'p95':>8} {'min':>8}   {'generate p50':>13} {'p95':>8}")
        for transport, stats in result["execute"].items():
            gen = result["generate"].get(transport)
            tail = f"   {gen['p50_ms']:>10.1f} ms {gen['p95_ms']:>5.1f} ms" if gen else "   (not a backend transport)"
            print(f"  {transport:<11} {stats['p50_ms']:>9.1f} ms {stats['p95_ms']:>5.1f} ms {stats['min_ms']:>5.1f} ms{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
