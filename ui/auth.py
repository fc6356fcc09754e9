"""Who is using the studio.

ATELIER_AUTH_USERS="alice:pw1,bob:pw2" turns password login on (a password may also be given as
sha256:<hex digest>). Without it the studio has one local user, signed in silently, so threads and
memories still belong to someone and resume after a restart.

Chainlit signs its session cookie with CHAINLIT_AUTH_SECRET; when it is not set, a random secret is made
once and kept in the data dir (mode 0600), so logins survive a restart without any setup.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path

from ui.settings import get_settings

log = logging.getLogger("atelier.ui")

_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


class AuthConfigError(ValueError):
    pass


def parse_users(spec: str | None) -> dict[str, str]:
    """'alice:pw1, bob:pw2' -> {'alice': 'pw1', 'bob': 'pw2'}. Separators: comma, semicolon or newline."""
    users: dict[str, str] = {}
    for entry in re.split(r"[,;\n]", spec or ""):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, password = entry.partition(":")
        name = name.strip()
        if not sep or not password:
            raise AuthConfigError(f"ATELIER_AUTH_USERS entry {name or entry!r} needs the form name:password")
        if not _NAME.match(name):
            raise AuthConfigError(f"ATELIER_AUTH_USERS: user name {name!r} may use letters, digits and _ . @ + - (1-64)")
        users[name] = password
    return users


def check_password(users: dict[str, str], username: str, password: str) -> bool:
    stored = users.get((username or "").strip())
    # Compare even for unknown users, so timing does not tell which names exist.
    expected = stored if stored is not None else secrets.token_hex(16)
    if expected.startswith("sha256:"):
        ok = hmac.compare_digest(expected[7:].lower(), hashlib.sha256((password or "").encode()).hexdigest())
    else:
        ok = hmac.compare_digest(expected.encode(), (password or "").encode())
    return ok and stored is not None


def local_user_name() -> str:
    name = get_settings().ui_user.strip() or "local"
    return name if _NAME.match(name) else "local"


def ensure_secret(data_dir: Path) -> None:
    """Give Chainlit a cookie-signing secret when the environment has none."""
    if get_settings().chainlit_auth_secret:
        return
    path = Path(data_dir) / "ui_auth_secret"
    try:
        secret = path.read_text().strip() if path.exists() else ""
        if len(secret) < 32:
            path.parent.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secret)
    except OSError as exc:  # a read-only data dir: a per-process secret (logins end with the process)
        log.warning("step=auth_secret status=ephemeral reason=%s", exc)
        secret = secrets.token_urlsafe(48)
    os.environ["CHAINLIT_AUTH_SECRET"] = secret
