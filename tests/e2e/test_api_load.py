"""Load on `atelier serve`: many threads at once through langgraph-sdk (benchmarks/api_load.py), loopback only.

Every run must succeed and every thread must have recorded exactly one creation. The figures (p50/p95 latency,
graph time, the overhead above it, creations/s) are printed; run the benchmark itself for the full report.
ATELIER_LOAD_THREADS sets the count (default 50, the issue's figure; about 45 s on 2 busy cores).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import api_load  # noqa: E402

pytestmark = pytest.mark.timeout(420)


def test_concurrent_threads_each_record_exactly_one_creation():
    threads = int(os.environ.get("ATELIER_LOAD_THREADS", "50"))
    report = asyncio.run(api_load.run(threads=threads, jobs=8, users=5, deadline=300, timeout=240))
    print("\n" + json.dumps(report, indent=1))
    assert report["errors"] == []
    assert report["ok"] == threads
    records = report["records"]
    assert records["threads_with_exactly_one"] == threads
    assert records["threads_missing"] == records["threads_duplicated"] == 0
    assert records["records"] == records["distinct"] == threads
    for key in ("latency", "graph", "overhead"):
        assert report[key]["p50"] is not None and report[key]["p95"] >= report[key]["p50"]
    assert report["latency"]["p50"] >= report["graph"]["p50"]
