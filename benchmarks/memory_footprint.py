"""Peak RSS of cold `atelier` commands (goal: a creation on the CPU path under 0.8 GB), and where it goes.

    .venv/bin/python benchmarks/memory_footprint.py [--n 5] [--root CHECKOUT] [--stages] [--llm] [--json]

Each command runs as a fresh process against a seeded data dir with the offline backends (sketch, relief);
the figure is the kernel's peak RSS of that process (median of n). --root runs another checkout with the same
venv (e.g. `git archive <old commit> | tar -x -C /tmp/old`) for before/after. --stages loads the parts one by
one in a single process and prints the RSS after each (what torch, MiniLM, llama.cpp, Chroma, Whisper cost).
Environment variables pass through, e.g. ATELIER_EMBEDDING_BACKEND=sentence-transformers for the torch path.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli_runs import IDEAS, ROOT, environment, run_cli, seeded_data_dir  # noqa: E402

COMMANDS = {
    "create": lambda i: ["create", IDEAS[i % len(IDEAS)], "--json"],
    "create --no-enhance": lambda i: ["create", IDEAS[i % len(IDEAS)], "--no-enhance", "--json"],
    "recall": lambda i: ["recall", "the owl I made", "--json"],
}

STAGES = r"""
import json, os, resource, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
out = []
def stage(name, fn):
    t = time.perf_counter(); fn(); out.append({"stage": name, "seconds": round(time.perf_counter() - t, 2),
        "rss_mb": round(rss()), "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
stage("python", lambda: None)
stage("import agent.cli", lambda: __import__("agent.cli"))
stage("import agent.graph (langgraph, tools, memory)", lambda: __import__("agent.graph"))
def embedder():
    from memory import embeddings
    embeddings.embed(["warm up"])
    out.append({"stage": "  embedding backend: " + embeddings._load().__class__.__name__})
stage("embedding model", embedder)
stage("memory store + Chroma", lambda: __import__("memory.store", fromlist=["x"]).get_store().ensure_index())
stage("LLM (llama.cpp)", lambda: __import__("models.llm", fromlist=["x"]).get_llm())
stage("whisper", lambda: __import__("models.speech", fromlist=["x"]).load())
print(json.dumps(out))
"""


LLM_PARTS = r"""
import json, os, resource, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
import llama_cpp, numpy  # the libraries themselves are not the model's cost
from models.llm import LocalLLM
from models.registry import llm_path
from tools.enhance import ENHANCE_EXAMPLES, ENHANCE_SCHEMA, ENHANCE_SYSTEM
base = rss()
llm = LocalLLM(str(llm_path()), kv_cache_type=sys.argv[1])
loaded = rss()
messages = [{"role": "system", "content": ENHANCE_SYSTEM}]
for example, answer in ENHANCE_EXAMPLES[:2]:
    messages += [{"role": "user", "content": f"Idea: {example}"}, {"role": "assistant", "content": json.dumps(answer)}]
messages.append({"role": "user", "content": "Idea: a glowing dragon standing on a cliff at sunset"})
llm.chat(messages, max_tokens=160, temperature=0.3, json_schema=ENHANCE_SCHEMA, seed=0)
print(json.dumps({"kv_cache": sys.argv[1], "load_mb": round(loaded - base), "after_enhance_mb": round(rss() - base),
                  "saved_states_mb": round(sum(s.llama_state_size + s.scores.nbytes for s in llm._llama.cache.cache_state.values()) / 2**20, 1)}))
"""


def llm_parts(env: dict, root: Path) -> list[dict]:
    """The in-process model's own memory per KV cache type: RSS over the imported libraries after LocalLLM loads,
    and after one enhance-shaped call (prompt cache state included)."""
    rows = []
    for kind in ("f16", "q8_0"):
        out = subprocess.run([sys.executable, "-c", LLM_PARTS, kind], cwd=root, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise SystemExit(out.stderr[-2000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def stages(env: dict, root: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", STAGES], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to run (default: this one)")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, of: {', '.join(COMMANDS)}")
    parser.add_argument("--stages", action="store_true")
    parser.add_argument("--llm", action="store_true", help="also the in-process model's memory per KV cache type")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one command may take (a shared box is slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.root.resolve()
    env_for = lambda data: environment(data, root)  # noqa: E731
    data = seeded_data_dir(env_for, root)
    rows = []
    for name in [c.strip() for c in args.commands.split(",") if c.strip()]:
        runs = [run_cli(COMMANDS[name](i), env_for(data), root, timeout=args.timeout) for i in range(args.n)]
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            raise SystemExit(f"{name} failed: " + "\n".join(line for _, line in failed[0].lines[-5:]))
        peaks = [r.peak_rss_mb for r in runs]
        rows.append({"command": name, "n": args.n, "peak_rss_mb_median": round(statistics.median(peaks)),
                     "peak_rss_mb_max": round(max(peaks)), "seconds_median": round(statistics.median(r.seconds for r in runs), 2),
                     "llm_loaded": any(r.logged("load_llm") is not None for r in runs),
                     "embedder": next((m for r in runs for _, line in r.lines if (m := _backend(line))), None)})
        print(f"{name:<22} peak RSS median {rows[-1]['peak_rss_mb_median']} MB (max {rows[-1]['peak_rss_mb_max']}), "
              f"{rows[-1]['seconds_median']} s", file=sys.stderr, flush=True)
    result = {"root": str(root), "rows": rows, "stages": stages(env_for(data), root) if args.stages else None,
              "llm": llm_parts(env_for(data), root) if args.llm else None}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"checkout: {root}\n\n| command (cold process) | peak RSS, median of {args.n} | max | seconds | LLM loaded | embedder |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `atelier {r['command']}` | {r['peak_rss_mb_median']} MB | {r['peak_rss_mb_max']} MB | {r['seconds_median']} | "
              f"{'yes' if r['llm_loaded'] else 'no'} | {r['embedder'] or '-'} |")
    if result["stages"]:
        print("\n| stage (one process, in order) | seconds | RSS after | peak |\n|---|---|---|---|")
        for s in result["stages"]:
            if "rss_mb" in s:
                print(f"| {s['stage']} | {s['seconds']} | {s['rss_mb']} MB | {s['peak_mb']} MB |")
            else:
                print(f"| {s['stage']} | | | |")
    if result["llm"]:
        print("\n| in-process LLM, KV cache | RSS after load | after one enhance call | prompt cache states |\n|---|---|---|---|")
        for r in result["llm"]:
            print(f"| {r['kv_cache']} | +{r['load_mb']} MB | +{r['after_enhance_mb']} MB | {r['saved_states_mb']} MB |")
    return 0


def _backend(line: str) -> str | None:
    if "step=load_embedder" not in line:
        return None
    part = next((p for p in line.split() if p.startswith("backend=")), None)
    return part.split("=", 1)[1] if part else "sentence-transformers"  # before the ONNX path, the line had no backend


if __name__ == "__main__":
    sys.exit(main())
