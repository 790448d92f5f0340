"""Delivering alert notifications to an app's webhook: signed, retried, bounded in time.

Each notification is one `POST` of a JSON body with these headers:

- `X-AGL-Event`: `alert.firing` or `alert.resolved`;
- `X-AGL-Delivery`: the notification's id (the same on every retry, for de-duplication);
- `X-AGL-Timestamp`: Unix seconds when this attempt was sent;
- `X-AGL-Signature`: `sha256=<hex>`, the HMAC-SHA256 with the webhook secret over
  `"<X-AGL-Timestamp>." + body` (only when a secret is configured). Receivers recompute it and
  compare in constant time, and refuse old timestamps to stop replays.

Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff (honouring a
short `Retry-After`); any other 4xx is final. Redirects are not followed, and addresses that are
link-local (cloud metadata endpoints live there) are refused, at configuration and at delivery,
also when written another way that reaches them: an IPv6 address that embeds an IPv4 one
(`::ffff:169.254.169.254`, NAT64, 6to4, Teredo) or a numeric IPv4 form (`2852039166`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent_lightning import __version__

log = logging.getLogger("agent_lightning.observability.alerts")

_BLOCKED_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class WebhookRefused(ValueError):
    """The URL may not be used as a webhook; the message says why."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def check_url(url: str, *, resolve: bool = False) -> None:
    """Raise WebhookRefused unless `url` is http(s) to a host that is not link-local."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("the webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise WebhookRefused("put no credentials in the webhook URL; use the webhook secret")
    host = parts.hostname.lower()
    if host in _BLOCKED_HOSTS:
        raise WebhookRefused(f"the webhook host {host!r} is not allowed")
    addresses = [host]
    if resolve:
        try:
            addresses = [info[4][0] for info in socket.getaddrinfo(host, parts.port or 443)]
        except OSError as exc:
            raise WebhookRefused(f"cannot resolve {host!r}: {exc}") from None
    for address in addresses:
        ip = _address(address)
        if ip is None:
            continue  # a name, checked once resolved
        for reached in (ip, _embedded_ipv4(ip)):
            if reached is not None and (
                reached.is_link_local or reached.is_multicast or reached.is_unspecified
            ):
                via = f" (it reaches {reached})" if reached is not ip else ""
                raise WebhookRefused(f"the webhook address {ip}{via} is not allowed (link-local)")


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> _IPAddress | None:
    """The IP address a URL's host (or a resolved address) is, or None for a name."""
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        pass
    try:  # the resolver reads 2852039166, 0xa9fea9fe or 169.254.43518 as IPv4 addresses too
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def _embedded_ipv4(ip: _IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    error: str | None = None


class WebhookClient:
    def __init__(
        self,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        resolve: bool = True,
    ) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep
        self.now = now
        self.resolve = resolve
        self._client = httpx.Client(
            transport=transport, follow_redirects=False, timeout=timeout, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def send(
        self, url: str, secret: str | None, payload: dict[str, Any], delivery_id: str
    ) -> Delivery:
        try:
            check_url(url, resolve=self.resolve)
        except WebhookRefused as exc:
            return Delivery(False, 0, str(exc))
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        error = None
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(self.now()))
            headers = {
                "content-type": "application/json",
                "user-agent": f"agent-lightning-alerts/{__version__}",
                "x-agl-event": str(payload.get("type", "")),
                "x-agl-delivery": delivery_id,
                "x-agl-timestamp": timestamp,
            }
            if secret:
                headers["x-agl-signature"] = signature(secret, timestamp, body)
            retry_after = None
            try:
                response = self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            else:
                if 200 <= response.status_code < 300:
                    return Delivery(True, attempt)
                error = f"the webhook answered HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in (408, 429):
                    return Delivery(False, attempt, error)
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                self.sleep(min(max(delay, retry_after or 0.0), 30.0))
        return Delivery(False, self.attempts, error)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
