"""Operator-friendly logging: one line per step (creation id, backend, seconds), level from ATELIER_LOG_LEVEL."""
from __future__ import annotations

import json
import logging
import sys

from agent.settings import get_settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname, "logger": record.name}
        message = record.getMessage()
        # "step=x creation=y seconds=z" lines become fields
        for part in message.split(" "):
            key, sep, value = part.partition("=")
            if sep and key.isidentifier():
                out[key] = value
        out["msg"] = message
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str | None = None) -> None:
    settings = get_settings()
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("atelier")
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())
    root.propagate = False
