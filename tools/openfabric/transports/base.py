"""What every execution transport is: one run of the app on a body, answered with the app's output.

A transport is made per execution for one OpenfabricClient (tools/openfabric/client.py), which chooses it
(ATELIER_OPENFABRIC_TRANSPORT) and lends it the connection's parts: settings, the app's address, the outbound
rules, the token headers, HTTP requests, progress reports and the step log. Retries, the deadline and the circuit
breaker stay with the client."""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Protocol

from tools.backends.base import ProgressFn

from ..answers import FAILED_STATUSES, KNOWN_STATUSES, SCHEMA_WORDS, parse_execution_answer
from ..config import AppAddress, OpenfabricSettings
from ..errors import BadResponse, SchemaMismatch, Unauthorized
from ..outbound import OutboundPolicy

log = logging.getLogger("atelier.openfabric")


class Connection(Protocol):
    """What a transport uses of the client that chose it (OpenfabricClient)."""

    settings: OpenfabricSettings
    address: AppAddress
    label: str
    outbound: OutboundPolicy
    step: str  # what the call is doing now, for the deadline's message

    def auth_headers(self) -> dict[str, str]: ...

    def unauthorized(self, what: str, detail: str) -> Unauthorized: ...

    def log_step(self, step: str, transport: str, started: float, extra: str = "") -> None: ...

    def report(self, progress: ProgressFn, fraction: float | None, message: str) -> None: ...

    async def request(self, method: str, url: str, what: str, *, cap: int, json_body: Any = None, total: float | None = None,
                      read_timeout: float | None = None, execution: bool = False) -> tuple[bytes, str]: ...


class Transport:
    name: ClassVar[str]  # what an asset's metadata says it came by: socket.io, rest or sdk

    def __init__(self, client: Connection):
        self.client = client

    async def execute(self, body: Any, progress: ProgressFn) -> Any:
        """Run the app once on body; the output, or an OpenfabricError (classified: retryable or not)."""
        raise NotImplementedError

    def parse_ray_response(self, response: Any) -> Any:
        if not isinstance(response, dict):
            raise BadResponse(f"socket.io response is a {type(response).__name__}, not an object")
        ray = response.get("ray") if isinstance(response.get("ray"), dict) else {}
        status = str(ray.get("status") or "").upper().strip("(),' ")
        messages = [str(m.get("content", m)) if isinstance(m, dict) else str(m) for m in (ray.get("messages") or []) if m]
        text = "; ".join(messages)[:300]
        # the app's own message goes to the log (escaped), not into the reason a user reads: it is the app's text
        said = f"with a message of {len(text)} characters (in the log)" if text else "without a message"
        if text and (status in FAILED_STATUSES or status in ("UNAUTHORIZED", "UNAUTHORISED")):
            log.warning("openfabric step=execute app=%s status=%s app_message=%r", self.client.address.app_id, status, text[:300])
        if status in ("UNAUTHORIZED", "UNAUTHORISED") or (status in FAILED_STATUSES and "unauthori" in text.lower()):
            raise self.client.unauthorized("socket.io execution", "UNAUTHORIZED")
        if status in FAILED_STATUSES:
            if any(word in text.lower() for word in SCHEMA_WORDS):
                raise SchemaMismatch(f"the app rejected the input as not matching its schema ({status}, {said})", 0)
            raise BadResponse(f"the app reported {status} {said}")
        output = response.get("output")
        if output is None:
            known = status if status in KNOWN_STATUSES else "unknown" if not status else "not a known status"
            raise BadResponse(f"socket.io response without output (status {known})")
        if isinstance(output, str) and output.lstrip()[:1] in ("{", "["):  # an output sent as its repr / JSON text
            output = parse_execution_answer(output.encode("utf-8"), "", self.client.settings.max_repr_bytes)
        return output

