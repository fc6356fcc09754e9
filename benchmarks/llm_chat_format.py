"""The llm-service's chat format: the GGUF's own template (no --chat_format) against chatml-function-calling.

    .venv/bin/python benchmarks/llm_chat_format.py [--formats template,chatml-function-calling] [--limit N] [--json]

For each format it starts `python -m llama_cpp.server` through docker/llm-entrypoint.sh (as the llm-service
container does; LLM_CHAT_FORMAT empty = the template in the GGUF) on the packaged SmolLM2-135M (or
ATELIER_LLM_PATH), on loopback, one thread, and measures over the labelled requests of tests/support/data/decisions.jsonl:

- tool_calls: of the model's turns (policy model, step by step as the graph decides), how many came back as a
  standard `tool_calls` answer to `tools` + tool_choice "auto" (models/llm.py ServerLLM.chat_tools); the rest
  were words (agent/decision.py then ends the turn with those words, or the router decides under hybrid);
- accuracy of policies model and hybrid (the whole tool sequence equals the label; agent/calibration.py);
- whether a schema-constrained JSON answer (what enhance and the JSON decisions send) parses.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import calibration  # noqa: E402
from agent.decision import simulate_plan  # noqa: E402
from agent.router import get_router  # noqa: E402
from models.llm import ServerLLM, parse_json  # noqa: E402
from models.registry import llm_path  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(chat_format: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLM_PYTHON": sys.executable, "LLM_MODEL": str(llm_path()),
           "LLM_HOST": "127.0.0.1", "LLM_PORT": str(port), "LLM_N_GPU_LAYERS": "0", "LLM_N_THREADS": "1",
           "LLM_CHAT_FORMAT": chat_format}
    proc = subprocess.Popen(["sh", str(ROOT / "docker" / "llm-entrypoint.sh")], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"llama_cpp.server did not answer in 120 s: {log.read_text()[-2000:]}")


class CountingLLM(ServerLLM):
    """ServerLLM that counts how its tool-calling turns came back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.turns = self.with_calls = self.errors = 0

    def chat_tools(self, messages, tools, **kwargs):
        self.turns += 1
        try:
            answer = super().chat_tools(messages, tools, **kwargs)
        except Exception:
            self.errors += 1
            raise
        self.with_calls += bool(answer["tool_calls"])
        return answer


def measure(chat_format: str, items: list[dict], work: Path) -> dict:
    log = work / f"server-{chat_format or 'template'}.log"
    proc, url = start_server(chat_format, log)
    try:
        llm = CountingLLM(f"{url}/v1", timeout=600)  # one thread on a shared box: chatml-function-calling is slow
        router = get_router()
        started = time.perf_counter()
        for item in items:  # policy model: every step is the model's (as the graph asks it)
            simulate_plan(item["text"], bool(item.get("has_image")), router.classify(item["text"]), "model", llm)
        model_seconds = (time.perf_counter() - started) / len(items)
        turns, with_calls, errors = llm.turns, llm.with_calls, llm.errors
        model = calibration.evaluate("model", items, llm)
        hybrid = calibration.evaluate("hybrid", items, llm)
        schema = {"type": "object", "properties": {"tool": {"type": "string", "enum": ["text_to_image", "recall_similar", "none"]}},
                  "required": ["tool"]}
        text = llm.chat([{"role": "system", "content": "Pick the tool for the request. Answer in JSON."},
                         {"role": "user", "content": "draw a brass owl"}], max_tokens=24, temperature=0, json_schema=schema, seed=0)
        try:
            json_ok = parse_json(text).get("tool") in {"text_to_image", "recall_similar", "none"}
        except Exception:
            json_ok = False
        banner = log.read_text(errors="replace")
        return {"chat_format": chat_format or "template (GGUF)", "n": len(items), "model_turns": turns,
                "tool_call_answers": with_calls, "tool_call_rate": round(with_calls / max(turns, 1), 3),
                "server_errors": errors, "model_accuracy": model["accuracy"], "hybrid_accuracy": hybrid["accuracy"],
                "json_schema_ok": json_ok, "seconds_per_request_model": round(model_seconds, 2),
                "server_used_gguf_template": "Using gguf chat template" in banner}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="template,chatml-function-calling",
                        help="comma-separated; 'template' = no --chat_format (the GGUF's own template)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = calibration.load_dataset()
    items = items[: args.limit] if args.limit else items
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for f in args.formats.split(","):
            rows.append(measure("" if f == "template" else f, items, Path(work)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each as it is measured
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ["chat_format", "n", "model_turns", "tool_call_rate", "server_errors", "model_accuracy", "hybrid_accuracy",
            "json_schema_ok", "seconds_per_request_model", "server_used_gguf_template"]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row[c]) for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
