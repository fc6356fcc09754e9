"""Settings of the agent layer: logging, who decides, request limits and the API server (models/settings.py
says how layers own their settings; per-run choices — user, policy, enhance on/off — are agent/configuration.py).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from memory.validation import InvalidInput, validate_user_id
from models.settings import LayerSettings, cached


class AgentSettings(LayerSettings):
    # a refused ATELIER_API_KEYS must not be repeated in an error message or a log: it holds the tokens
    model_config = SettingsConfigDict(**LayerSettings.model_config, hide_input_in_errors=True)

    log_level: str = Field("INFO", description="Logging level (DEBUG, INFO, WARNING, ERROR).")
    log_format: str = Field("text", description="'text' (key=value) or 'json' log lines.")
    # auto = the model decides when its measured accuracy (`atelier eval decisions`) is within 2 points of the
    # router's, else the router (agent/calibration.py)
    decision_policy: str = Field("auto", description="Default decision policy: auto | model | router | hybrid.")
    max_idea_chars: int = Field(4000, ge=1, description="Longest idea or message accepted (CLI, API server, studio).")
    voice_vocabulary: bool = Field(True, description="Bias Whisper toward the tool words and the user's own past prompts.")

    # The API server (agent/api/, docs/api-hardening.md, docs/durability.md)
    api_keys: str = Field("", description="Bearer tokens, 'alice:tok1,bob:tok2'; empty = the X-Atelier-User header names the user. "
                          "A value not of that form is refused at start (never read as 'no tokens').")
    api_admins: str = Field("", description="Users who may create, change or delete assistants, 'ops,alice' (only with "
                            "ATELIER_API_KEYS, and each must have a token there).")
    api_max_pending_runs_per_user: int = Field(50, ge=1, description="Runs one user may have waiting in the API server's queue "
                                               "(in-memory runtime); one more is refused with 429.")
    api_max_pending_runs_per_thread: int = Field(10, ge=1, description="Runs one thread may have waiting in the API server's "
                                                 "queue (in-memory runtime); one more is refused with 429.")
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

    @field_validator("api_keys")
    @classmethod
    def _keys_are_user_colon_token(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @field_validator("api_admins")
    @classmethod
    def _admins_are_user_ids(cls, value: str) -> str:
        parse_admins(value)
        return value

    @property
    def api_key_map(self) -> dict[str, str]:
        """token -> user, from ATELIER_API_KEYS (already checked when the settings were read)."""
        return parse_api_keys(self.api_keys)

    @property
    def api_admin_set(self) -> frozenset[str]:
        admins = parse_admins(self.api_admins)
        users = set(self.api_key_map.values())
        if users and admins - users:  # an admin without a token could never prove who they are: a typo
            raise SettingsError("ATELIER_API_ADMINS", f"names users with no token in ATELIER_API_KEYS: {', '.join(sorted(admins - users))}")
        return admins


class SettingsError(ValueError):
    """A setting that is wrong in form; the message names the variable and never repeats a secret."""

    def __init__(self, variable: str, message: str):
        super().__init__(f"{variable} {message}" if variable else message)
        self.variable = variable


def parse_api_keys(value: str) -> dict[str, str]:
    """'alice:tok1, bob:tok2' -> {token: user}. Anything else is refused (SettingsError), so a typo such as
    'alice=tok1' can never leave the server without tokens. The message names the item by position, not by its
    text: the text holds a token."""
    keys: dict[str, str] = {}
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        return keys
    for n, item in enumerate(items, 1):
        if not item:
            raise SettingsError("ATELIER_API_KEYS", f"has an empty entry (number {n}); expected 'user:token,user:token'")
        user, sep, token = item.partition(":")
        if not sep or not user.strip() or not token.strip():
            raise SettingsError("ATELIER_API_KEYS", f"entry {n} is not 'user:token' (expected 'alice:tok1,bob:tok2')")
        if any(ch.isspace() or ch in ":;" for ch in token.strip()):  # a second pair glued on with the wrong separator
            raise SettingsError("ATELIER_API_KEYS", f"entry {n}: a token may not contain spaces, ':' or ';'")
        try:
            user = validate_user_id(user)  # the same rule as every other user id
        except InvalidInput as exc:
            raise SettingsError("ATELIER_API_KEYS", f"entry {n}: {exc}") from None
        if token.strip() in keys:
            raise SettingsError("ATELIER_API_KEYS", f"entry {n} repeats the token of another entry")
        keys[token.strip()] = user
    return keys


def parse_admins(value: str) -> frozenset[str]:
    """'ops, alice' -> {'ops', 'alice'}; a name that is not a user id, or looks like a token entry, is refused."""
    admins = set()
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        return frozenset()
    for n, item in enumerate(items, 1):
        if not item or any(ch in item for ch in ":=;") or any(ch.isspace() for ch in item):
            raise SettingsError("ATELIER_API_ADMINS", f"entry {n} is not a user name (expected 'ops,alice')")
        try:
            admins.add(validate_user_id(item))
        except InvalidInput as exc:
            raise SettingsError("ATELIER_API_ADMINS", f"entry {n}: {exc}") from None
    return frozenset(admins)


def settings_problem(exc: ValidationError) -> str:
    """One line naming the variable for a settings class's ValidationError (pydantic's own text spans lines and
    repeats the value, which for ATELIER_API_KEYS is a secret)."""
    problems = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SettingsError):
            problems.append(str(cause))
        else:
            loc = str(error["loc"][0]) if error.get("loc") else ""
            name = loc if loc.isupper() else f"ATELIER_{loc.upper()}" if loc else "a setting"  # an alias is the variable
            problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)


def checked_settings() -> AgentSettings:
    """get_settings(), with the admins also checked against the keys: what `atelier serve` calls first."""
    settings = get_settings()
    settings.api_admin_set  # noqa: B018 - raises SettingsError for an admin with no token
    return settings


_read_settings = cached(AgentSettings)


def get_settings() -> AgentSettings:
    """The agent layer's settings (one instance per process, see models/settings.py). A value wrong in form is
    SettingsError with one line naming the variable — what every entry point prints — not pydantic's report."""
    try:
        return _read_settings()
    except ValidationError as exc:
        raise SettingsError("", settings_problem(exc)) from None
