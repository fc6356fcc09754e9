"""Cold `atelier` processes for benchmarks/memory_footprint.py and benchmarks/cold_start.py: each run is a new
Python process (nothing imported or loaded before), timed from spawn, its stderr lines timestamped on arrival,
its peak RSS taken from the kernel when it exits (os.wait4's ru_maxrss)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDEAS = ["a brass owl automaton", "a glowing dragon standing on a cliff at sunset", "a cozy cabin in a snowy forest",
         "a viking longship in a storm", "a crystal cave with an underground lake", "a robot gardener watering tulips"]


@dataclass
class Run:
    argv: list[str]
    returncode: int
    seconds: float  # spawn to exit
    peak_rss_mb: float
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since spawn, stderr line)
    stdout: str = ""

    def first(self, pattern: str) -> float | None:
        """Seconds from spawn to the first stderr line matching `pattern`."""
        return next((t for t, line in self.lines if re.search(pattern, line)), None)

    def logged(self, step: str, key: str = "seconds") -> float | None:
        for _, line in self.lines:
            if f"step={step} " in line and (m := re.search(rf"\b{key}=([0-9.]+)", line)):
                return float(m.group(1))
        return None


def environment(data_dir: Path, root: Path = ROOT, **extra: str) -> dict[str, str]:
    # the caller's ATELIER_* settings pass through (e.g. ATELIER_EMBEDDING_BACKEND, ATELIER_LLM_N_CTX), not its data dir
    env = {k: v for k, v in os.environ.items() if k != "ATELIER_DATA_DIR"}
    env.update({"ATELIER_DATA_DIR": str(data_dir), "ATELIER_IMAGE_BACKENDS": "sketch", "ATELIER_MODEL_BACKENDS": "relief",
                "ATELIER_LOG_LEVEL": "INFO", "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "ANONYMIZED_TELEMETRY": "False"})
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], root: Path = ROOT, timeout: float = 300) -> Run:
    argv = [sys.executable, "-m", "agent.cli", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_stderr():
        for line in proc.stderr:
            lines.append((time.perf_counter() - started, line.rstrip()))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stdout_reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    stdout_reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(5)
    stdout_reader.join(5)
    return Run(argv=args, returncode=proc.returncode, seconds=seconds, peak_rss_mb=usage.ru_maxrss / 1024,
               lines=lines, stdout="".join(out))


def seeded_data_dir(env_for, root: Path = ROOT, n: int = 3) -> Path:
    """A data dir with a few creations (so recall has something to find and the first-ever set-up is not timed)."""
    data = Path(tempfile.mkdtemp(prefix="atelier-bench-cli-"))
    for idea in IDEAS[:n]:
        run = run_cli(["create", idea, "--no-enhance", "--no-3d", "--json"], env_for(data), root)
        if run.returncode != 0:
            raise SystemExit(f"seeding failed ({run.returncode}): " + "\n".join(line for _, line in run.lines[-5:]))
    return data
