"""Fault injection, so connector retries and timeouts are tested against a real server.

Two ways in:

- ``Faults`` passed to ``create_app(..., faults=...)``: a programmable list shared with the test
  (``faults.add(path="/kb/search", status=500, times=2)``); each rule fires ``times`` times.
- The ``X-Fault`` request header (when ``fault_header=True``), stateless, for servers in another
  process: ``X-Fault: status=503; retry-after=1`` or ``X-Fault: delay=300``.

Faults apply after authentication, so an anonymous caller cannot make the service sleep.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class Fault:
    """Delay a matching request by ``delay_ms``, then answer ``status`` instead of the route."""

    status: int | None = None
    delay_ms: int = 0
    retry_after: float | None = None
    times: int | None = 1  # None: every matching request
    method: str | None = None
    path: str | None = None  # exact, or a prefix ending in '*'

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class Faults:
    """The faults a test wants; thread-safe, first matching rule wins."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        *,
        status: int | None = None,
        delay_ms: int = 0,
        retry_after: float | None = None,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> Fault:
        if status is None and delay_ms <= 0:
            raise ValueError("a fault needs a status, a delay, or both")
        fault = Fault(status, delay_ms, retry_after, times, method, path)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any, counting it against the rule's ``times``."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule
        return None


def parse_fault_header(value: str) -> Fault:
    """``status=500; delay=200; retry-after=1`` -> a one-off ``Fault`` (ValueError if malformed)."""
    fault = Fault(times=None)
    for part in filter(None, (p.strip() for p in value.split(";"))):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ValueError(f"expected key=value, got {part!r}")
        try:
            if key == "status":
                fault.status = int(raw)
                if not 400 <= fault.status <= 599:
                    raise ValueError
            elif key in ("delay", "delay_ms"):
                fault.delay_ms = min(int(raw), 30_000)
            elif key == "retry-after":
                fault.retry_after = float(raw)
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(f"unknown fault field {key!r} (status, delay, retry-after)") from None
        except ValueError:
            raise ValueError(f"bad value for {key}: {raw.strip()!r}") from None
    return fault
