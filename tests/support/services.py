"""Real service processes for the tests, on 127.0.0.1 and free ports, each stopped by the fixture that started it.

    start_postgres(dir)     initdb + pg_ctl from the Debian postgresql package (as the `postgres` user when root)
    start_chroma(dir)       `chroma run` (Chroma client/server mode)
    start_llama_server()    `python -m llama_cpp.server` serving the packaged GGUF
    start_api(data_dir)     `atelier serve` (the LangGraph API server, in-memory runtime)

Every start waits for the service to answer (bounded), and every process runs in its own process group so a
stop ends it and its children, and nothing else.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("ATELIER_PG_BIN", "/usr/lib/postgresql/15/bin"))

# What every Atelier process started by a test gets: offline, fast backends, the router deciding.
FAST_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
    "ATELIER_IMAGE_BACKENDS": "sketch", "ATELIER_MODEL_BACKENDS": "relief", "ATELIER_DECISION_POLICY": "router",
    "ATELIER_LOG_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def atelier_env(data_dir: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    env.update(FAST_ENV)
    env["ATELIER_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


@dataclass
class Service:
    name: str
    url: str
    proc: subprocess.Popen | None
    log: Path
    port: int
    extra: dict = field(default_factory=dict)
    stop_cmd: list[str] | None = None
    cleanup: list[Path] = field(default_factory=list)

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM the process group (a graceful shutdown: the API server saves its threads), SIGKILL if it lingers."""
        try:
            return self._stop(timeout)
        finally:
            for path in self.cleanup:
                shutil.rmtree(path, ignore_errors=True)

    def _stop(self, timeout: float) -> int | None:
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, capture_output=True, timeout=timeout + 10)
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)


def _spawn(name: str, cmd: list[str], log: Path, env: dict | None = None, cwd: Path | str | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "ab")
    try:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(cwd) if cwd else None, start_new_session=True)
    finally:
        fh.close()


def wait_http(service: Service, path: str, timeout: float, ok=lambda r: r.status_code < 500) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}")
        try:
            response = httpx.get(service.url + path, timeout=2)
            if ok(response):
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    service.stop()
    raise TimeoutError(f"{service.name} did not answer {path} within {timeout}s ({last}):\n{service.log_tail()}")


# -- the LangGraph API server ------------------------------------------------------------------------------
def serve_command(port: int) -> list[str]:
    """`atelier serve` (agent.api.server.serve, which keeps the runtime's state under the data dir)."""
    return [sys.executable, "-m", "agent.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]


def start_api(data_dir: Path, *, port: int | None = None, log: Path | None = None, timeout: float = 120, **env: str) -> Service:
    port = port or free_port()
    log = log or Path(data_dir) / f"api-{port}.log"
    service = Service("atelier serve", f"http://127.0.0.1:{port}", None, log, port)
    # cwd is a scratch dir: nothing the server writes may land in the repository.
    service.proc = _spawn("api", serve_command(port), log, env=atelier_env(data_dir, **env), cwd=data_dir)
    wait_http(service, "/ok", timeout, ok=lambda r: r.status_code == 200)
    return service


# -- Chroma (memory-service) -------------------------------------------------------------------------------
def start_chroma(path: Path, *, port: int | None = None, timeout: float = 60) -> Service:
    port = port or free_port()
    chroma = VENV_BIN / "chroma"
    cmd = [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    service = Service("chroma", f"http://127.0.0.1:{port}", None, Path(path).parent / f"chroma-{port}.log", port)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "CHROMA_TELEMETRY": "false"}
    service.proc = _spawn("chroma", cmd, service.log, env=env)
    wait_http(service, "/api/v2/heartbeat", timeout, ok=lambda r: r.status_code == 200)
    return service


# -- PostgreSQL (db-service) -------------------------------------------------------------------------------
def postgres_available() -> str | None:
    """None when initdb/pg_ctl can run here, else why not."""
    if not (PG_BIN / "initdb").exists():
        return f"no {PG_BIN}/initdb (apt-get install postgresql)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *cmd] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]


def start_postgres(base: Path | None = None, *, port: int | None = None, timeout: float = 60) -> Service:
    """A throwaway cluster on a free loopback port: database `atelier`, trust auth for user `atelier`.

    As root the cluster lives in its own /tmp dir owned by `postgres` (pytest's tmp dirs are private to root, and
    postgres refuses to run as root); that dir is removed when the service stops."""
    port = port or free_port()
    cleanup: list[Path] = []
    if os.geteuid() == 0:
        import pwd
        import tempfile

        pw = pwd.getpwnam("postgres")
        base = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
        cleanup.append(base)
    else:
        assert base is not None
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
    datadir, sockdir, log = base / "pg", base / "sock", base / "postgres.log"
    init = subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "atelier", "--auth=trust",
                                        "--encoding=UTF8", "--no-sync", "--no-instructions"]),
                          capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    subprocess.run(_as_postgres(["mkdir", "-p", str(sockdir)]), check=True, timeout=30)
    opts = f"-p {port} -h 127.0.0.1 -k {sockdir} -c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
    start = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", opts, "-w", "-t", str(int(timeout)), "start"]),
                           capture_output=True, text=True, timeout=timeout + 30)
    stop_cmd = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", "fast", "-w", "stop"])
    service = Service("postgres", f"postgresql://atelier@127.0.0.1:{port}/atelier", None, log, port, stop_cmd=stop_cmd, cleanup=cleanup)
    if start.returncode != 0:
        tail = service.log_tail()
        service.stop()
        raise RuntimeError(f"pg_ctl start failed: {start.stderr[-2000:]}\n{tail}")
    import psycopg

    with psycopg.connect(f"postgresql://atelier@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE DATABASE atelier")
    service.extra["sqlalchemy_url"] = f"postgresql+psycopg://atelier@127.0.0.1:{port}/atelier"
    return service


# -- llama.cpp server (llm-service) ------------------------------------------------------------------------
def start_llama_server(model: Path | str | None = None, *, port: int | None = None, timeout: float = 90,
                       log: Path | None = None, extra_args: list[str] | None = None) -> Service:
    """The llm-service's own entrypoint (docker/llm-entrypoint.sh) with this virtualenv's llama_cpp, on loopback, CPU."""
    if model is None:
        from models.registry import llm_path

        model = llm_path()
    port = port or free_port()
    log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLM_PYTHON": sys.executable, "LLM_MODEL": str(model), "LLM_HOST": "127.0.0.1",
           "LLM_PORT": str(port), "LLM_N_GPU_LAYERS": "0", "LLM_N_THREADS": "1", "LLM_EXTRA_ARGS": " ".join(extra_args or [])}
    service = Service("llama_cpp.server", f"http://127.0.0.1:{port}", None, Path(log), port)
    service.proc = _spawn("llm", ["sh", str(ROOT / "docker" / "llm-entrypoint.sh")], service.log, env=env)
    wait_http(service, "/v1/models", timeout, ok=lambda r: r.status_code == 200)
    return service
