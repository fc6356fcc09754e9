"""Settings of the agent layer: logging, who decides, request limits and the API server (models/settings.py
says how layers own their settings; per-run choices — user, policy, enhance on/off — are agent/configuration.py).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from models.settings import LayerSettings, cached


class AgentSettings(LayerSettings):
    log_level: str = Field("INFO", description="Logging level (DEBUG, INFO, WARNING, ERROR).")
    log_format: str = Field("text", description="'text' (key=value) or 'json' log lines.")
    # auto = the model decides when its measured accuracy (`atelier eval decisions`) is within 2 points of the
    # router's, else the router (agent/calibration.py)
    decision_policy: str = Field("auto", description="Default decision policy: auto | model | router | hybrid.")
    max_idea_chars: int = Field(4000, ge=1, description="Longest idea or message accepted (CLI, API server, studio).")
    voice_vocabulary: bool = Field(True, description="Bias Whisper toward the tool words and the user's own past prompts.")

    # The API server (agent/webapp.py, docs/api-hardening.md, docs/durability.md)
    api_keys: str = Field("", description="Bearer tokens, 'alice:tok1,bob:tok2'; empty = the X-Atelier-User header names the user.")
    api_admins: str = Field("", description="Users who may create, change or delete assistants (only with ATELIER_API_KEYS).")
    api_max_body_bytes: int = Field(256 * 1024, ge=1, description="Largest request body the API server reads (413 above it).")
    api_state_dir: Path | None = Field(None, description="Where the in-memory runtime keeps .langgraph_api/; default data_dir/api.")
    api_jobs: int | None = Field(None, ge=1, validation_alias=AliasChoices("ATELIER_API_JOBS", "N_JOBS_PER_WORKER"),
                                 description="Runs the API server executes at once (default 8).")
    api_log_level: str = Field("WARNING", description="The LangGraph server's own log level.")
    api_flush_on_commit: bool = Field(True, description="In-memory runtime: save its state after each commit (agent/inmem_durability.py).")
    api_wake_queue: bool = Field(True, description="In-memory runtime: start a new run at once instead of at the next 0.5 s poll.")
    runtime_edition: str = Field("inmem", validation_alias=AliasChoices("LANGGRAPH_RUNTIME_EDITION"),
                                 description="The LangGraph runtime the API server runs (the server's own LANGGRAPH_RUNTIME_EDITION).")

    # Atelier's MCP server (agent/mcp_server.py)
    mcp_user: str = Field("local", description="Whose memory `atelier mcp` (stdio) reads and writes; over HTTP (/mcp in "
                          "`atelier serve`) the caller's API identity is used instead.")
    mcp_allowed_hosts: str = Field("", description="Host header values /mcp answers besides loopback, 'api:*,atelier.example.com' "
                                   "(DNS-rebinding protection); '*' = any.")

    @property
    def api_admin_set(self) -> frozenset[str]:
        return frozenset(u.strip() for u in self.api_admins.split(",") if u.strip())


get_settings = cached(AgentSettings)
