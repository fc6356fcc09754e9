"""Settings of the studio (models/settings.py says how layers own their settings)."""
from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from models.settings import LayerSettings, cached


class UISettings(LayerSettings):
    # The studio as a client (ui/runner.py, docs/ui.md "Client mode")
    api_url: str | None = Field(None, description="Base URL of `atelier serve` (http://host:2024): when set, the Chainlit "
                                "studio runs its threads on that LangGraph API server (RemoteGraph, X-Atelier-User = the "
                                "signed-in user) and shows its assets; unset, the studio runs the graph in-process.")
    ui_user: str = Field("local", description="The user of a studio without sign-in (no ATELIER_AUTH_USERS).")
    auth_users: str | None = Field(None, description="Sign-in: 'alice:password,bob:sha256:<hex>'; unset = no sign-in, "
                                   "everyone is ATELIER_UI_USER.")
    ui_audio_dump_dir: Path | None = Field(None, description="Debugging aid: keep what the microphone sent in this folder.")
    chainlit_auth_secret: str | None = Field(None, validation_alias=AliasChoices("CHAINLIT_AUTH_SECRET"),
                                             description="Chainlit's cookie-signing secret; default: one kept in data_dir.")


get_settings = cached(UISettings)
