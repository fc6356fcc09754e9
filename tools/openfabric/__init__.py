"""Openfabric apps: schema-driven client (transports: socket.io, REST, the SDK), the protocol, output handling,
circuit breaker. The local node that serves the protocol is an entry point: agent/openfabric_node.py (`atelier node`).

The names below load their module on first use (PEP 562), so reading the settings (`tools.openfabric.config`, at
every start) does not import httpx, socket.io and aiohttp."""
from __future__ import annotations

import importlib

_WHERE = {"OpenfabricClient": "client", "generate_sync": "client", "reset_state": "client", "OpenfabricSettings": "config",
          "get_openfabric_settings": "config", "resolve_app": "config", "ToolValues": "schema_mapping", "build_input": "schema_mapping"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
