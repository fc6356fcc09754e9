"""Openfabric apps: schema-driven client (socket.io + REST), output handling, circuit breaker, local node."""
from .client import OpenfabricClient, generate_sync, reset_state
from .config import OpenfabricSettings, get_openfabric_settings, resolve_app
from .schema_mapping import ToolValues, build_input

__all__ = ["OpenfabricClient", "OpenfabricSettings", "ToolValues", "build_input", "generate_sync", "get_openfabric_settings", "reset_state", "resolve_app"]
