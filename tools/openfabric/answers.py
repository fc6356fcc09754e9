"""Reading an Openfabric app's execution answers, whichever transport brought them: the REST body (JSON, or the
Python repr the apps answer with), and the ray (status, progress bars, messages) that socket.io and the SDK's Proxy
report. Plain functions; the transports (tools/openfabric/transports/) and the client use them."""
from __future__ import annotations

import ast
import json
from typing import Any

from .errors import BadResponse, TooLarge
from .output import describe_content

FAILED_STATUSES = {"FAILED", "CANCELED", "CANCELLED", "REMOVED", "ERROR"}
# statuses shown to the user as they are; any other word from the app is not repeated
KNOWN_STATUSES = {"QUEUED", "PENDING", "SUBMITTED", "RUNNING", "STARTED", "PROCESSING", "COMPLETED", "FINISHED", "UNKNOWN", *FAILED_STATUSES}
SCHEMA_WORDS = ("schema", "validation", "valid", "required", "missing", "unknown field", "unexpected")
MAX_LITERAL_DEPTH = 64  # nesting accepted in a repr answer (a real output is 1-2 levels deep)


def ray_progress(ray: dict) -> tuple[float | None, str]:
    fraction = None
    bars = ray.get("bars")
    if isinstance(bars, dict) and bars:
        bar = bars.get("default") if isinstance(bars.get("default"), dict) else next((b for b in bars.values() if isinstance(b, dict)), None)
        if bar is not None:
            try:
                fraction = max(0.0, min(1.0, float(bar.get("percent", 0)) / 100.0))
            except (TypeError, ValueError):
                fraction = None
    status = str(ray.get("status") or "running").upper().strip("(),' ")
    # the app's messages are its own text: progress shows our words (a known status, the fraction) only
    word = status.lower() if status in KNOWN_STATUSES else "working"
    message = word + (f" {fraction:.0%}" if fraction is not None else "")
    return fraction, message




def parse_execution_answer(data: bytes, ctype: str, cap: int) -> Any:
    """An execution answer -> its value. JSON first; else the Python repr the apps answer with (single quotes,
    None, True), read by ast.literal_eval - never eval - on a body of at most `cap` bytes, and only plain
    literals (dict, list, tuple, str, numbers, bool, None) are accepted."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadResponse("execution output is nested too deeply to read") from None
    except ValueError:  # UnicodeDecodeError included
        value = _literal(data, ctype, cap)
    else:
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):  # JSON text holding the repr of the output
            value = _literal(value.encode("utf-8"), ctype, cap)
    return value


def _literal(data: bytes, ctype: str, cap: int) -> Any:
    if len(data) > cap:
        raise TooLarge(f"execution output: a {len(data)}-byte answer that is not JSON is over the {cap}-byte cap for Python literals")
    try:
        text = data.decode("utf-8")
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        raise BadResponse(f"execution output is neither JSON nor a Python literal ({describe_content(data, ctype)}; "
                          f"{type(exc).__name__})") from None
    _check_plain(value, 0)
    return value


def _check_plain(value: Any, depth: int) -> None:
    if depth > MAX_LITERAL_DEPTH:
        raise BadResponse(f"execution output is nested more than {MAX_LITERAL_DEPTH} levels deep")
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BadResponse(f"execution output has a non-string key {type(key).__name__}")
            _check_plain(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
        return
    raise BadResponse(f"execution output holds a {type(value).__name__}, which no app output contains")


