"""A small circuit breaker per app, so a dead app costs one timeout rather than one per request.

closed     -> requests pass; consecutive failures are counted. `failures` of them, or one *hard* failure
              (a timeout, an unreachable host) opens the circuit.
open       -> requests are refused at once (CircuitOpen) until `reset_seconds` have passed.
half-open  -> one trial request passes; success closes the circuit, failure opens it again.
Failures that prove the app is alive (4xx, schema errors) are not counted.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class CircuitOpen(Exception):
    def __init__(self, key: str, retry_in: float, last_reason: str):
        self.key = key
        self.retry_in = retry_in
        self.last_reason = last_reason
        super().__init__(f"circuit open for {key} (retry in {retry_in:.0f}s; last failure: {last_reason})")


@dataclass
class CircuitBreaker:
    key: str
    failures: int = 3
    reset_seconds: float = 60.0
    clock: callable = time.monotonic
    state: str = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    last_reason: str = ""
    trial_in_flight: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_call(self) -> None:
        """Raise CircuitOpen when the call must not go out."""
        with self._lock:
            if self.state == "open":
                waited = self.clock() - self.opened_at
                if waited < self.reset_seconds:
                    raise CircuitOpen(self.key, self.reset_seconds - waited, self.last_reason)
                self.state = "half-open"
                self.trial_in_flight = False
            if self.state == "half-open":
                if self.trial_in_flight:
                    raise CircuitOpen(self.key, 0.0, f"trial request in flight; last failure: {self.last_reason}")
                self.trial_in_flight = True

    def record_success(self) -> None:
        with self._lock:
            self.state = "closed"
            self.consecutive = 0
            self.trial_in_flight = False

    def record_failure(self, reason: str, *, hard: bool = False) -> None:
        with self._lock:
            self.consecutive += 1
            self.last_reason = reason
            self.trial_in_flight = False
            if hard or self.state == "half-open" or self.consecutive >= self.failures:
                self.state = "open"
                self.opened_at = self.clock()

    def record_neutral(self) -> None:
        """The call ended without saying anything about the app's health (e.g. a 4xx): release a trial."""
        with self._lock:
            if self.state == "half-open":
                self.state = "closed"
                self.consecutive = 0
            self.trial_in_flight = False


_breakers: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(key: str, failures: int, reset_seconds: float) -> CircuitBreaker:
    with _registry_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = CircuitBreaker(key, failures=failures, reset_seconds=reset_seconds)
        else:  # settings may change at run time (tests, operators); keep the state
            breaker.failures, breaker.reset_seconds = failures, reset_seconds
        return breaker


def reset_breakers() -> None:
    with _registry_lock:
        _breakers.clear()
