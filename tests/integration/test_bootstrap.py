"""scripts/bootstrap.sh's per-checkout .venv: two clones of this repository set up on the one cached venv (the
same ATELIER_CACHE, so nothing is rebuilt) each run their own code, through python and the console scripts, and
the shared cached venv holds no checkout's code."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"

pytestmark = pytest.mark.timeout(600)


def bootstrap(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / "scripts" / "bootstrap.sh"), *args], cwd=checkout, capture_output=True,
                          text=True, timeout=540)


@pytest.fixture(scope="module")
def cached_venv() -> Path:
    venv = Path(bootstrap(ROOT, "--cached-venv").stdout.strip())
    if not (venv / ".complete").exists():
        pytest.skip(f"no cached venv for this requirements.lock at {venv}; `make setup` builds it (~10 min), this test "
                    "only reuses one")
    return venv


@pytest.fixture(scope="module")
def two_checkouts(cached_venv, tmp_path_factory):
    """Clones A and B of this repository's HEAD, each with one module saying which it is, set up one after the other."""
    base = tmp_path_factory.mktemp("checkouts")
    seconds = {}
    for name in ("a", "b"):
        checkout = base / name
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, timeout=120)
        (checkout / "agent" / "_which_checkout.py").write_text(f"NAME = {name!r}\n")
        started = time.perf_counter()
        done = bootstrap(checkout, "python")
        seconds[name] = time.perf_counter() - started
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"bootstrap.sh python: first checkout {seconds['a']:.1f} s, second {seconds['b']:.1f} s (cached venv {cached_venv})")
    return base / "a", base / "b"


def run_in(checkout: Path, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    # From a neutral folder: the current directory must not be what puts the checkout's code on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=checkout.parent, env=env, capture_output=True, text=True, timeout=180, **kwargs)


def test_each_checkout_runs_its_own_code(two_checkouts, cached_venv):
    a, b = two_checkouts
    probe = "import agent, agent._which_checkout as w, langgraph.graph; print(w.NAME, agent.__file__)"  # langgraph: the cached wheels
    for checkout, name in ((a, "a"), (b, "b")):
        out = run_in(checkout, [str(checkout / ".venv" / "bin" / "python"), "-c", probe])
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == [name, str(checkout / "agent" / "__init__.py")]

    # A change in A is seen by A's console script and not by B's.
    init = a / "agent" / "__init__.py"
    init.write_text(init.read_text() + "\nimport sys as _sys\n_sys.stderr.write('edited in checkout a\\n')\n")
    seen_a = run_in(a, [str(a / ".venv" / "bin" / "atelier"), "--help"])
    seen_b = run_in(b, [str(b / ".venv" / "bin" / "atelier"), "--help"])
    assert seen_a.returncode == 0 and seen_b.returncode == 0, seen_a.stderr[-2000:] + seen_b.stderr[-2000:]
    assert "edited in checkout a" in seen_a.stderr and "edited in checkout a" not in seen_b.stderr

    # The shared venv holds no checkout's code: neither A nor B is importable from it.
    cached = run_in(a, [str(cached_venv / "bin" / "python"), "-c", "import importlib.util; print(importlib.util.find_spec('agent'))"])
    assert cached.stdout.strip() == "None", cached.stdout + cached.stderr
    assert not list((cached_venv / "lib").glob("python3*/site-packages/atelier-*.dist-info"))


def test_console_scripts_run_on_the_checkouts_python(two_checkouts, cached_venv):
    a, _ = two_checkouts
    bin_dir = a / ".venv" / "bin"
    for name in ("chainlit", "langgraph", "uvicorn", "pytest"):  # what the tests and `make run` spawn
        assert (bin_dir / name).read_text().splitlines()[0] == f"#!{bin_dir / 'python'}", name
    out = run_in(a, [str(bin_dir / "pytest"), "--version"])
    assert out.returncode == 0 and "pytest" in out.stdout + out.stderr, out.stderr[-2000:]
    # A binary (ruff) is linked as it is; it needs no interpreter.
    ruff = run_in(a, [str(bin_dir / "ruff"), "--version"])
    assert ruff.returncode == 0 and ruff.stdout.startswith("ruff "), ruff.stderr
    assert (a / ".venv" / "atelier-cached-venv").read_text().strip() == str(cached_venv.resolve())


def test_setup_again_is_quick_and_changes_nothing(two_checkouts):
    a, _ = two_checkouts
    before = {p: p.stat().st_mtime_ns for p in (a / ".venv" / "bin").iterdir() if not p.is_symlink()}
    started = time.perf_counter()
    again = bootstrap(a, "python")
    seconds = time.perf_counter() - started
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in (a / ".venv" / "bin").iterdir() if not p.is_symlink()}
    assert after == before  # nothing re-made: the venv, the wrappers and the editable install are kept
    print(f"bootstrap.sh python again: {seconds:.1f} s")
    assert seconds < 60


def test_an_unknown_step_is_refused_before_anything_runs(tmp_path):
    # A copy of the script and its lock files alone: were the check broken, nothing of this checkout is touched.
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "bootstrap.sh").write_bytes(BOOTSTRAP.read_bytes())
    for name in ("requirements.lock", "requirements-nodeps.txt", "constraints.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    out = bootstrap(tmp_path, "python", "everything")
    assert out.returncode == 2 and "unknown step 'everything' (steps: system python assets models)" in out.stderr
    assert out.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["scripts", "requirements.lock", "requirements-nodeps.txt", "constraints.txt"])
