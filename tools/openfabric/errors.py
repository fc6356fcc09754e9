"""Errors of the Openfabric client, each saying whether it is worth a retry and what it says about the app.

retryable: worth another attempt within the same request (connection errors, 5xx, a dropped socket).
health:    what the circuit breaker learns: "hard" (unreachable / timed out: open at once),
           "soft" (broken answer: counts towards opening), "neutral" (the app is alive, e.g. a 4xx).
"""
from __future__ import annotations


class OpenfabricError(Exception):
    retryable = False
    health = "soft"
    transient = True  # what BackendError.transient will say

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unreachable(OpenfabricError):
    """Connection refused / DNS failure / reset before an answer."""
    retryable = True
    health = "hard"


class HostNotFound(Unreachable):
    """The name does not resolve (EAI_NONAME): offline, or a typo in the app address. Asking again gives the
    same answer, so no retry; the circuit opens at once like any unreachable app."""
    retryable = False


class CallTimeout(OpenfabricError):
    """A call or the whole request ran past its deadline. Not retried: another try costs another timeout."""
    retryable = False
    health = "hard"


class ServerError(OpenfabricError):
    """5xx or 429 from the app."""
    retryable = True
    health = "soft"

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class SocketDropped(OpenfabricError):
    """The socket.io connection closed before the response arrived."""
    retryable = True
    health = "soft"


class SocketUnavailable(OpenfabricError):
    """socket.io could not be opened (no such endpoint / namespace); REST may still work."""
    retryable = True
    health = "hard"


class ClientError(OpenfabricError):
    """4xx: the app is alive but refused the request."""
    retryable = False
    health = "neutral"
    transient = False

    def __init__(self, message: str, status: int, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


class Unauthorized(ClientError):
    """401 on REST, or UNAUTHORIZED from socket.io: the app is locked and our token (if any) was refused.
    Never retried - the same token is refused again - and the app is alive, so the breaker does not count it."""

    def __init__(self, message: str, status: int = 401, body: str = ""):
        super().__init__(message, status, body)


class SchemaMismatch(ClientError):
    """The app rejected our input as not matching its schema: refresh the cached schema, rebuild, retry once."""


class BadResponse(OpenfabricError):
    """Malformed JSON, wrong content type, bad magic bytes, oversize answer, an app-reported failure ..."""
    retryable = False
    health = "soft"
    transient = True


class BadSchema(OpenfabricError):
    """The app's schema is not usable: non-JSON, too large, invalid, recursive without end."""
    retryable = False
    health = "soft"
    transient = False


class SchemaUnsatisfiable(OpenfabricError):
    """We cannot build an input the schema accepts (names the required field that could not be filled)."""
    retryable = False
    health = "neutral"
    transient = False

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = list(fields or [])


class OutboundRefused(OpenfabricError):
    """A request the outbound rules refuse (tools/openfabric/outbound.py): a redirect or an output URL to a host
    other than the app's, or to an address the app may not make us reach. Asking again gives the same answer."""
    retryable = False
    health = "soft"
    transient = False


class GenerationFailed(BadResponse):
    """The app answered, but its generation failed: e.g. a resource whose id carries the hash of empty content."""


class TooLarge(BadResponse):
    """An answer over the configured size cap."""
