"""Recall at scale: the store's own recall API over 1k / 10k / 100k creations, with the real embedding model.

    .venv/bin/python benchmarks/recall_scale.py                       # 1k, 10k, 100k; both user layouts
    .venv/bin/python benchmarks/recall_scale.py --sizes 1000,10000 --json
    .venv/bin/python benchmarks/recall_scale.py --embed-all           # embed every filler text for real (slow)

The set: 10 planted creations with unique wording (an axolotl playing a saxophone, ...) and a recall query for
each in other words; the rest are filler prompts built from 2000 phrases ("a rusty lighthouse at dusk,
watercolor"). Two layouts: "many" (90 % of the records one user's, the rest spread over 200 users; the planted
ones belong to the big user) and "one" (one user owns all). The phrases' vectors are real MiniLM embeddings,
computed once and cached under --cache; a filler vector is a mix of two phrase vectors plus a little noise (its
text names both phrases), so that 100k records build in minutes on 2 cores. --embed-all embeds every filler text
instead. Planted records, their queries and every commit are embedded by the real model at run time.

Reported per size and layout: recall() p50/p95 in ms (query embedding included; the index search alone beside
it), planted record first x/10, a commit's p50 (store.create with a real embedding), the bulk import rate, and
the time to rebuild the index from SQL (store.reindex(); at sizes above --reindex-max the index part alone, fed
the cached vectors, plus the embedding time at the measured rate).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from memory.vectors import get_all  # noqa: E402

PLANTED = [  # (stored prompt, recall query in other words)
    ("an axolotl playing a golden saxophone on an iceberg", "that axolotl with the sax"),
    ("a hedgehog knitting a scarf inside a teacup", "the hedgehog who knits"),
    ("a flamingo astronaut planting tulips on mars", "flamingo in a spacesuit gardening"),
    ("a chess-playing octopus in a smoky jazz bar", "octopus playing chess"),
    ("a samurai penguin guarding a ramen stall", "penguin samurai with noodles"),
    ("a giraffe made of stained glass in a cathedral", "stained glass giraffe"),
    ("a sloth piloting a hot air balloon over canyons", "sloth flying a balloon"),
    ("a raccoon librarian stamping overdue books", "raccoon working in a library"),
    ("a jellyfish chandelier above a ballroom", "chandelier shaped like jellyfish"),
    ("a tortoise carrying a tiny village on its shell", "turtle with a town on its back"),
]
ADJ = "red blue green golden silver copper rusty glass paper wooden marble neon tiny giant ancient futuristic floating broken glowing velvet".split()
NOUN = "fox owl castle teapot robot dragon lighthouse bicycle cathedral mushroom whale crown lantern violin sailboat cactus tiger clocktower kettle spaceship".split()
PLACE = "at dusk|underwater|on a hill|in the snow|in a desert|on the moon|in a forest|by the sea|in a city street|in a cave".split("|")
STYLE = "watercolor|oil painting|pixel art|low poly|photorealistic|ukiyo-e|art deco|studio lighting|pencil sketch|claymation".split("|")
MAIN_USER = "main-user"


def phrases(n: int = 2000) -> list[str]:
    combos = [(a, b, c, d) for a in ADJ for b in NOUN for c in PLACE for d in STYLE]
    random.Random(13).shuffle(combos)
    return [f"a {a} {b} {c}, {d}" for a, b, c, d in combos[:n]]


def cached_embeddings(texts: list[str], cache: Path, name: str) -> np.ndarray:
    from memory import embeddings

    backend = getattr(embeddings, "backend", lambda: "default")()  # ONNX and torch vectors differ slightly
    path = cache / f"{name}-{embeddings.MODEL_NAME}-{backend}-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    vectors = embeddings.embed(texts)
    print(f"embedded {len(texts)} texts for {name} in {time.perf_counter() - started:.0f}s (cached in {path})", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def filler(n: int, cache: Path, embed_all: bool) -> tuple[list[str], np.ndarray]:
    base = phrases()
    rng = np.random.default_rng(n)
    a, b = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    texts = [f"{base[i]}, with a touch of {base[j].removeprefix('a ')}" for i, j in zip(a, b)]
    if embed_all:
        return texts, cached_embeddings(texts, cache, f"filler{n}")
    vectors = cached_embeddings(base, cache, "phrases")
    mixed = 0.75 * vectors[a] + 0.25 * vectors[b] + rng.normal(0, 0.02, (n, vectors.shape[1])).astype(np.float32)
    return texts, (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def build(store, n: int, layout: str, cache: Path, embed_all: bool) -> tuple[float, dict]:
    """Bulk-import n creations (10 planted among them); returns (seconds, planted prompt -> id)."""
    from memory import embeddings
    from memory.bulk import NewCreation, import_creations
    from tools.backends.base import GeneratedAsset

    texts, vectors = filler(n - len(PLANTED), cache, embed_all)
    planted_vectors = embeddings.embed([p for p, _ in PLANTED])  # real, like everything a user will ask for
    rng = random.Random(n)
    start = datetime.now(UTC) - timedelta(days=365)
    image = GeneratedAsset(kind="image", data=b"\x89PNG\r\n\x1a\nbench", mime="image/png", backend="bench")
    creations, rows = [], []
    planted_at = {rng.randrange(n) for _ in range(len(PLANTED) * 3)}
    planted_at = sorted(planted_at)[:len(PLANTED)]
    filler_i = planted_i = 0
    for i in range(n):
        when = start + timedelta(seconds=i * 365 * 86400 / n)
        if planted_i < len(PLANTED) and (i in planted_at or n - i <= len(PLANTED) - planted_i):
            prompt, vector, user = PLANTED[planted_i][0], planted_vectors[planted_i], MAIN_USER
            planted_i += 1
        else:
            prompt, vector = texts[filler_i], vectors[filler_i]
            filler_i += 1
            user = MAIN_USER if layout == "one" or rng.random() < 0.9 else f"user-{rng.randrange(200)}"
        # the index text is "<original>. <enhanced>": keep the enhanced prompt empty so the vector fits the text
        creations.append(NewCreation(user_id=user, original_prompt=prompt, enhanced_prompt="", assets=[image], created_at=when))
        rows.append(vector)
    started = time.perf_counter()
    ids = import_creations(store, creations, vectors=np.asarray(rows, dtype=np.float32))
    seconds = time.perf_counter() - started
    return seconds, {c.original_prompt: cid for c, cid in zip(creations, ids) if c.original_prompt in dict(PLANTED)}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure_recall(store, planted: dict, rounds: int) -> dict:
    from memory import embeddings
    from memory.recall import recall

    totals, searches, first, missed, searched = [], [], 0, [], {}
    for r in range(rounds):
        for prompt, query in PLANTED:
            embeddings.clear_query_cache()  # every timed recall embeds its query with the model
            started = time.perf_counter()
            result = recall(store, query, MAIN_USER)
            totals.append((time.perf_counter() - started) * 1000)
            if r == 0:
                searched[query] = result.query
                hit = bool(result.creations) and result.creations[0].id == planted[prompt]
                first += hit
                if not hit:
                    missed.append(f"{query} -> {result.creations[0].original_prompt if result.creations else None}")
            vector = embeddings.embed_one(result.query or query)
            started = time.perf_counter()
            store.index.query_vector(vector, MAIN_USER, 20)
            searches.append((time.perf_counter() - started) * 1000)
    # The same queries by exact search over every vector the user has in the index: what a perfect index finds.
    stored = store.index._call(lambda: get_all(store.index._user_collection(MAIN_USER), ["embeddings"]))
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)
    exact_first = 0
    for prompt, query in PLANTED:
        best = int(np.argmax(matrix @ np.asarray(embeddings.embed_one(searched[query]), dtype=np.float32)))
        exact_first += stored["ids"][best] == planted[prompt]
    return {"recall_p50_ms": round(pct(totals, 0.5), 1), "recall_p95_ms": round(pct(totals, 0.95), 1),
            "search_p50_ms": round(pct(searches, 0.5), 1), "search_p95_ms": round(pct(searches, 0.95), 1),
            "planted_first": f"{first}/{len(PLANTED)}", "exact_first": f"{exact_first}/{len(PLANTED)}", "missed": missed}


def measure_commits(store, n: int = 10) -> float:
    from tools.backends.base import GeneratedAsset

    seconds = []
    for i in range(n):
        started = time.perf_counter()
        store.create(user_id=MAIN_USER, thread_id="bench", original_prompt=f"a commit benchmark lantern number {i}",
                     enhanced_prompt="a lantern, detailed", assets=[GeneratedAsset(kind="image", data=f"commit-{i}-{time.time()}".encode(),
                                                                                  mime="image/png", backend="bench")])
        seconds.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(seconds), 1)


def measure_reindex(store, n: int, reindex_max: int, cache: Path) -> dict:
    from memory import bulk

    if n <= reindex_max:
        started = time.perf_counter()
        store.reindex()
        return {"reindex_s": round(time.perf_counter() - started, 1), "reindex_how": "store.reindex()"}
    # The index part alone (the vectors are what the store would embed), then the embedding at its measured rate.
    from sqlalchemy import select

    from memory.models import CreationRecord, Prompt

    with store.sessions() as session:
        rows = session.execute(select(CreationRecord.id, CreationRecord.user_id, CreationRecord.created_at, Prompt.original)
                               .join(Prompt, Prompt.creation_id == CreationRecord.id)).all()
    sample = [r.original for r in rows[:256]]
    from memory import embeddings

    started = time.perf_counter()
    embeddings.embed(sample)
    rate = len(sample) / (time.perf_counter() - started)
    store.index.reset()
    mixed = _vectors_for_texts([r.original for r in rows], cache)
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        items = [(r.id, r.original, {"user_id": r.user_id, "created_ts": bulk._ts(r.created_at)}) for r in chunk]
        store.index.add(items, vectors=mixed[start:start + len(chunk)])
    index_s = time.perf_counter() - started
    return {"reindex_s": round(index_s + len(rows) / rate, 1), "reindex_how": f"index {index_s:.0f}s + embedding {len(rows)} at {rate:.0f}/s"}


def _vectors_for_texts(texts: list[str], cache: Path) -> np.ndarray:
    """The vectors build() gave these texts: planted ones embedded, fillers re-mixed from their phrases."""
    from memory import embeddings

    base = phrases()
    position = {p: i for i, p in enumerate(base)}
    base_vectors = cached_embeddings(base, cache, "phrases")
    others = [t for t in texts if ", with a touch of " not in t]  # planted ones and the commit benchmark's
    planted = dict(zip(others, embeddings.embed(others))) if others else {}
    out = np.empty((len(texts), base_vectors.shape[1]), dtype=np.float32)
    rng = np.random.default_rng(0)
    for k, text in enumerate(texts):
        if text in planted:
            out[k] = planted[text]
            continue
        first, _, second = text.partition(", with a touch of ")
        v = 0.75 * base_vectors[position[first]] + 0.25 * base_vectors[position["a " + second]] + rng.normal(0, 0.02, base_vectors.shape[1])
        out[k] = v / np.linalg.norm(v)
    return out


def forgotten(store, sample: int) -> str:
    """Of a sample of the big user's records, how many their own stored vector does not find first through the
    index's search (what recall uses): records recall can never return."""
    index = store.index
    stored = index._call(lambda: get_all(index._user_collection(MAIN_USER), ["embeddings"]))
    picks = random.Random(1).sample(range(len(stored["ids"])), min(sample, len(stored["ids"])))
    missed = sum(index.query_vector(stored["embeddings"][i], MAIN_USER, 1)[0][0] != stored["ids"][i] for i in picks)
    return f"{missed}/{len(picks)}"


FRESH_PROCESS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
started = time.perf_counter()
from memory.recall import recall
from memory.settings import MemorySettings
from memory.store import MemoryStore
store = MemoryStore(MemorySettings(data_dir=sys.argv[1]))
recall(store, "a castle at dusk", sys.argv[3])
first = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"first_recall_s": round(first, 1), "rss_mb": int(status["VmRSS"].split()[0]) // 1024,
                  "peak_rss_mb": int(status["VmHWM"].split()[0]) // 1024}))
"""


def fresh_process(data: Path) -> dict:
    """A new process's first recall (imports, the index check, loading the user's vectors, the embedder) and its
    memory after it: what the API server or the studio pays once."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(data), str(Path(__file__).resolve().parent.parent), MAIN_USER],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"fresh_process_error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def one(n: int, layout: str, args) -> dict:
    from memory.settings import MemorySettings
    from memory.store import MemoryStore

    data = Path(tempfile.mkdtemp(prefix=f"atelier-recall-{n}-{layout}-"))
    try:
        store = MemoryStore(MemorySettings(data_dir=data))
        import_s, planted = build(store, n, layout, args.cache, args.embed_all)
        store.index._close()  # measure what a freshly started process sees: the index as read back from disk
        store.ensure_index()
        row = {"records": n, "layout": layout, "import_per_s": round(n / import_s)}
        row.update(fresh_process(data))
        row.update(measure_recall(store, planted, args.rounds))
        row["commit_p50_ms"] = measure_commits(store)
        if not args.no_reindex:
            row.update(measure_reindex(store, n, args.reindex_max, args.cache))
            after = measure_recall(store, planted, 1)
            row["planted_first_after_reindex"] = after["planted_first"]
            row["exact_first_after_reindex"] = after["exact_first"]
        row["forgotten"] = forgotten(store, args.forgotten_sample)
        if args.check_graph:
            row["graph_unreachable"] = len(store.index.unreachable())
        return row
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--layouts", default="many,one")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 10 planted queries for the latency figures")
    parser.add_argument("--reindex-max", type=int, default=10000, help="largest size rebuilt with store.reindex() itself")
    parser.add_argument("--no-reindex", action="store_true")
    parser.add_argument("--check-graph", action="store_true", help="also count vectors the HNSW graph cannot reach (slow)")
    parser.add_argument("--forgotten-sample", type=int, default=500, help="records checked for 'found by its own vector'")
    parser.add_argument("--embed-all", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "atelier-recall-bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for layout in args.layouts.split(","):
            rows.append(one(n, layout, args))
            if not args.json:
                print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, "load_average": load}))
    else:
        cols = ["records", "layout", "recall_p50_ms", "recall_p95_ms", "search_p50_ms", "search_p95_ms", "planted_first",
                "exact_first", "planted_first_after_reindex", "exact_first_after_reindex", "forgotten", "commit_p50_ms", "import_per_s", "reindex_s",
                "first_recall_s", "rss_mb", "peak_rss_mb"]
        print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for r in rows:
            print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
        print(f"\n(load average {load:.1f} on {os.cpu_count()} cores while measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
