"""Settings of the Openfabric client and the address rules for apps.

Everything here is read from the environment (prefix ATELIER_OPENFABRIC_) or .env; the app ids themselves
come from tools/settings.py (ATELIER_TEXT_TO_IMAGE_APP / ATELIER_IMAGE_TO_3D_APP).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

APP_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$")
TRANSPORTS = ("auto", "socket", "sdk", "rest")


class OpenfabricSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATELIER_OPENFABRIC_", env_file=".env", extra="ignore")

    node_domain: str = Field("node3.openfabric.network", description="Domain appended to a bare app id.")
    transport: str = Field("auto", description="auto (own socket.io client, REST as fallback), socket (own socket.io client only), "
                                                "sdk (openfabric_pysdk's Proxy over socket.io) or rest.")
    token: str = Field("", description="Access token for locked apps, sent as `Authorization: Bearer <token>` (REST and the socket.io "
                                       "handshake) and as the socket.io auth payload {\"token\": ...}. Empty: nothing is sent.")
    connect_timeout: float = Field(10.0, description="Seconds to open a connection (HTTP or socket.io).")
    request_timeout: float = Field(30.0, description="Total seconds for one metadata or resource call (manifest, schema, resource).")
    execution_timeout: float = Field(300.0, description="Total deadline in seconds for one generation, retries included.")
    stall_timeout: float = Field(60.0, description="Seconds without any socket.io event (submitted, pulse, progress) after which an "
                                                   "execution is given up (0: only the total deadline). The SDK's Proxy uses 15 s.")
    retries: int = Field(3, ge=1, le=10, description="Attempts per call for transient failures (connection errors, 5xx, dropped socket).")
    backoff_initial: float = Field(0.5, description="First retry delay in seconds (exponential, with jitter).")
    backoff_max: float = Field(8.0, description="Largest retry delay in seconds.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failed requests that open an app's circuit (a timeout or an unreachable app opens it at once).")
    breaker_reset_seconds: float = Field(60.0, description="Seconds an open circuit stays open before one trial request is let through.")
    schema_ttl: float = Field(600.0, description="Seconds manifest and schemas are cached.")
    max_schema_bytes: int = Field(1_000_000, description="Largest manifest/schema document accepted.")
    max_output_bytes: int = Field(200 * 1024 * 1024, description="Largest execution output or resource accepted.")
    max_repr_bytes: int = Field(16 * 1024 * 1024, description="Largest REST execution answer read as a Python literal (the apps answer "
                                                             "repr(output), not JSON); parsed with ast.literal_eval, never eval.")
    uid: str = Field("atelier", description="User id sent in the socket.io header.")
    node_token: str = Field("", description="Bearer token a local node (`python -m agent.openfabric_node`) requires; empty = open.")
    verify_tls: bool = Field(True, description="Check the app's TLS certificate (https apps).")
    allowed_hosts: str = Field("", description="Comma-separated hosts (`host` any port, `host:port` one port) besides the configured "
                               "app's own that redirects and URLs in an app's output may lead to; they never get the token, and "
                               "one that resolves to a loopback, link-local or private address is refused unless the app itself "
                               "resolves to that kind of address. Empty: only the app's own scheme, host and port.")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest image accepted from an app (after it is checked to "
                                 "be a whole PNG, JPEG or WebP that decodes).")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Most pixels (width x height) of an image from an app, checked "
                                  "before it is decoded.")
    max_model_bytes: int = Field(100 * 1024 * 1024, ge=1, description="Largest 3D model accepted from an app (after it is checked "
                                 "to be a consistent GLB / glTF / OBJ / PLY that trimesh loads).")
    max_video_bytes: int = Field(100 * 1024 * 1024, ge=1, description="Largest video accepted from an app.")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_in_form(cls, value: str) -> str:
        from .outbound import parse_allowed_hosts

        parse_allowed_hosts(value)
        return value

    @field_validator("node_domain")
    @classmethod
    def _domain_in_form(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or not HOST_RE.match(value) or ":" in value:
            raise ValueError(f"{value!r} is not a domain name (such as node3.openfabric.network)")
        return value

    @field_validator("transport")
    @classmethod
    def _known_transport(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in TRANSPORTS:
            raise ValueError(f"unknown Openfabric transport {value!r} (use one of {', '.join(TRANSPORTS)})")
        return value


def get_openfabric_settings() -> OpenfabricSettings:
    # Not cached: cheap, and tests change the environment between calls.
    return OpenfabricSettings()


@dataclass(frozen=True)
class AppAddress:
    app_id: str  # what the user configured, normalised (id, host or URL)
    base_url: str  # scheme://host[:port][/path] without trailing slash

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"


def app_host_label(app_id: str) -> str:
    """The host label of an app id: its 32 hex digits without dashes, lower case (as the Openfabric hosts are named)."""
    return app_id.replace("-", "").lower()


def resolve_app(app: str, node_domain: str = "node3.openfabric.network") -> AppAddress:
    """An app id (with or without dashes), a host, or a full base URL -> AppAddress.

    `f0997a01-d6d3-a5fe-53d8-561300318557` -> https://f0997a01d6d3a5fe53d8561300318557.node3.openfabric.network
    `f0997a01d6d3a5fe53d8561300318557`     -> the same
    `f0997a01d6d3a5fe53d8561300318557.node3.openfabric.network` (or with the dashes) -> the same
    `http://127.0.0.1:8765` (or ws://, wss://) -> as given (ws->http, wss->https)
    The app id kept in AppAddress is always the dashless form, so logs and metadata name an app one way.
    """
    value = (app or "").strip()
    if not value:
        raise ValueError("empty Openfabric app (set ATELIER_TEXT_TO_IMAGE_APP / ATELIER_IMAGE_TO_3D_APP)")
    if "://" in value:
        parts = urlsplit(value)
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
        if scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"unsupported Openfabric app URL {value!r} (use http(s)://host[:port])")
        path = parts.path.rstrip("/")
        netloc = _dashless_app_host(parts.netloc)
        base = urlunsplit((scheme, netloc, path, "", ""))
        first = (parts.hostname or "").split(".")[0]
        app_id = app_host_label(first) if APP_ID_RE.match(first) else netloc
        return AppAddress(app_id=app_id, base_url=base)
    if APP_ID_RE.match(value):
        label = app_host_label(value)
        return AppAddress(app_id=label, base_url=f"https://{label}.{node_domain}")
    if HOST_RE.match(value.rstrip("/")):
        host = _dashless_app_host(value.rstrip("/"))
        first = host.split(".")[0]
        return AppAddress(app_id=first if APP_ID_RE.match(first) else host, base_url=f"https://{host}")
    raise ValueError(f"cannot read Openfabric app {value!r}: expected an app id, a host or a base URL")


def _dashless_app_host(netloc: str) -> str:
    """`f0997a01-d6d3-….node3.openfabric.network` -> `f0997a01d6d3….node3.openfabric.network`: an app id as the first
    label of an Openfabric host is written without dashes (the dashed name does not exist). Other hosts are kept."""
    first, dot, rest = netloc.partition(".")
    if dot and APP_ID_RE.match(first) and rest.lower().split(":")[0].endswith("openfabric.network"):
        return f"{app_host_label(first)}.{rest}"
    return netloc
