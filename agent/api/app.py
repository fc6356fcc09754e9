"""The http app langgraph.json names ("http": {"app": "agent.api.app:app"}): Atelier's routes (agent/api/routes.py)
and its MCP server at /mcp (agent/mcp_server.py; "disable_mcp" turns langgraph-api's own off), behind RequestGuard
(agent/api/guard.py), with the start-up work in lifespan(). The LangGraph server merges this app's routes,
middleware and lifespan into its own.
"""
from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from agent.api.guard import RequestGuard, check_guard_is_outermost
from agent.api.routes import ROUTES, request_user
from agent.mcp_server import McpHttp
from agent.settings import checked_settings

log = logging.getLogger("atelier.api")

# Atelier's own MCP server (streamable HTTP) at /mcp, in place of langgraph-api's generic one (langgraph.json
# http.disable_mcp): the caller is who request_user() says, as for /creations.
mcp_http = McpHttp(request_user)


@contextlib.asynccontextmanager
async def lifespan(app):
    """Server start-up (merged into the LangGraph server's lifespan): check that the route allow-list guards every
    route, make the in-memory runtime save what it tells clients (agent/inmem_durability.py) and schedule runs
    fairly (agent/inmem_queue.py), and open the store, which removes asset temp files a killed process left and
    marks creations that a dead process left in_progress as interrupted (docs/durability.md)."""
    import asyncio

    check_guard_is_outermost(app)
    settings = checked_settings()
    if settings.runtime_edition == "inmem" and settings.api_flush_on_commit:
        from agent.inmem_durability import install

        install()
    if settings.runtime_edition == "inmem":
        from agent.inmem_queue import install as schedule_runs

        schedule_runs()  # fair across users, capped per user and thread, started at once (not at a 0.5 s poll)
    from tools.backends import warm_up

    warm_up()  # the image and mesh pipelines load in background threads; a creation meanwhile waits for that load
    try:
        from memory.store import get_store

        await asyncio.to_thread(get_store)
    except Exception as exc:  # the server still starts; the store opens (and recovers) on first use
        log.warning("step=startup_recover status=failed reason=%s", exc)
    async with mcp_http.running():  # Atelier's MCP server at /mcp (agent/mcp_server.py)
        yield


app = Starlette(lifespan=lifespan, middleware=[Middleware(RequestGuard)], routes=[
    *ROUTES,
    Route("/mcp", mcp_http, methods=["GET", "POST", "DELETE"]),
])
