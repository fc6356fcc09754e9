"""Measured decision accuracy per model, and what policy `auto` makes of it.

`atelier eval decisions` runs the labelled requests (tests/support/data/decisions.jsonl) through the router and
through the model alone, and stores both accuracies in <data dir>/decision_accuracy.json, the model keyed
by what it is (gguf:<file hash> or served:<model id>), so renaming a file or switching servers cannot reuse
another model's figure.

Under `auto` the model decides every step when its measured accuracy is within AUTO_MARGIN of the router's
or better; otherwise (or when it was never measured) the router decides and the model is consulted only
where the router is unsure — the `hybrid` policy.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("atelier.decision")

AUTO_MARGIN = 0.02  # "within 2 points of the router's accuracy, or better"
ROUTER_KEY = "router"
_lock = threading.Lock()


def calibration_path() -> Path:
    from memory.settings import get_settings

    return get_settings().data_dir / "decision_accuracy.json"


def load() -> dict[str, dict]:
    path = calibration_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("step=calibration status=unreadable path=%s reason=%s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def store(key: str, result: dict) -> Path:
    """Record one measurement (accuracy, n, model name ...) under key; written atomically."""
    path = calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        data = load()
        data[key] = {**result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".decision_accuracy.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    return path


@dataclass
class Resolved:
    policy: str  # model | router | hybrid: what actually runs
    reason: str


def resolve(policy: str, model_key: str | None) -> Resolved:
    """The policy that runs for this model: `auto` becomes `model` or `hybrid` by the measured figures."""
    if policy != "auto":
        return Resolved(policy, f"policy={policy}")
    data = load()
    router, model = data.get(ROUTER_KEY), data.get(model_key or "")
    if not model or not router:
        return Resolved("hybrid", f"auto: {model_key or 'model'} not measured (run `atelier eval decisions`); router decides")
    m, r = float(model["accuracy"]), float(router["accuracy"])
    if m >= r - AUTO_MARGIN:
        return Resolved("model", f"auto: model {m:.1%} vs router {r:.1%}; model decides")
    return Resolved("hybrid", f"auto: model {m:.1%} vs router {r:.1%}; router decides")


# -- measuring ---------------------------------------------------------------------------------------------
DATASET = Path(__file__).resolve().parent.parent / "tests" / "support" / "data" / "decisions.jsonl"


def load_dataset(path: Path | str | None = None) -> list[dict]:
    path = Path(path or DATASET)
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, item in enumerate(items):
        if not isinstance(item.get("text"), str) or not isinstance(item.get("expected"), list):
            raise ValueError(f"{path}:{i + 1}: each line needs text (string) and expected (list of tools)")
    return items


def evaluate(policy: str, items: list[dict], llm=None, on_item=None) -> dict:
    """The labelled requests through one policy (model | router | hybrid), deciding step by step as the
    graph does. A request is correct when the whole tool sequence equals its label."""
    from .decision import UNSURE_MARGIN, simulate_plan
    from .router import get_router

    router = get_router()
    correct = first_correct = unsure = asked = 0
    misses = []
    started = time.perf_counter()
    for item in items:
        intent = router.classify(item["text"])
        unsure += intent.via == "knn" and intent.margin < UNSURE_MARGIN
        calls: list[dict] = []
        plan = simulate_plan(item["text"], bool(item.get("has_image")), intent, policy, None if policy == "router" else llm, calls=calls)
        asked += any(c["source"] in ("model", "guard") for c in calls)
        ok = plan == item["expected"]
        correct += ok
        first_correct += plan[:1] == item["expected"][:1]
        if not ok:
            misses.append({"text": item["text"], "expected": item["expected"], "got": plan})
        if on_item:
            on_item(item, plan, ok)
    n = len(items)
    return {"policy": policy, "model": getattr(llm, "name", "-") if policy != "router" else "-", "n": n,
            "accuracy": round(correct / n, 4), "first_step_accuracy": round(first_correct / n, 4),
            "router_unsure": unsure, "model_decided_requests": asked,
            "seconds_per_request": round((time.perf_counter() - started) / n, 3), "misses": misses}


def model_key_of(llm) -> str:
    return llm.key
