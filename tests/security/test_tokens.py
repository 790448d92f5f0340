"""Our own access tokens: issue/verify, expiry, algorithm pinning, required claims, key file."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
import traceback
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_lightning.security.errors import SecurityError
from agent_lightning.security.tokens import (
    Claims,
    InvalidToken,
    TokenIssuer,
    load_or_create_signing_key,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


class FakeClock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def b64url(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(now: float, **overrides: object) -> dict:
    payload = {
        "iss": "agent-lightning",
        "aud": "agent-lightning",
        "sub": "agl_client",
        "app": "shop",
        "roles": ["agent"],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 600,
        "jti": "abc",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def sign(payload: dict, key: bytes = KEY, alg: str = "HS256", typ: str = "at+jwt") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"typ": typ})


def refused(issuer: TokenIssuer, token: str, code: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        issuer.verify(token)
    assert info.value.reason_code == code, info.value
    assert isinstance(info.value, SecurityError)
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    for segment in token.split("."):
        if len(segment) > 8:
            assert segment not in rendered
    assert KEY.decode() not in rendered
    return info.value


def test_round_trip() -> None:
    issuer = TokenIssuer(KEY, ttl_seconds=900)
    before = time.time()
    issued = issuer.issue("agl_client", "shop", ["agent", "viewer"], scopes=["decide", "log"])
    assert issued.token_type == "Bearer" and issued.expires_in == 900
    assert issued.access_token not in repr(issued)
    claims = issuer.verify(issued.access_token)
    assert isinstance(claims, Claims)
    assert (claims.subject, claims.app) == ("agl_client", "shop")
    assert claims.roles == ["agent", "viewer"]
    assert claims.scopes == ["decide", "log"]
    assert claims.token_id and len(claims.token_id) >= 16
    assert claims.issued_at is not None
    assert before - 1 <= claims.issued_at.timestamp() <= time.time()
    assert claims.expires_at.timestamp() - claims.issued_at.timestamp() == 900
    assert claims.raw["iss"] == "agent-lightning"
    assert jwt.get_unverified_header(issued.access_token)["typ"] == "at+jwt"
    other = issuer.issue("agl_client", "shop", ["agent"])
    assert issuer.verify(other.access_token).token_id != claims.token_id


def test_extra_claims_and_reserved_names() -> None:
    issuer = TokenIssuer(KEY)
    token = issuer.issue("c", "a", [], extra={"tenant_tier": "gold"}).access_token
    assert issuer.verify(token).raw["tenant_tier"] == "gold"
    for reserved in ("sub", "exp", "roles", "app", "scope"):
        with pytest.raises(ValueError):
            issuer.issue("c", "a", [], extra={reserved: "x"})
    with pytest.raises(ValueError):
        issuer.issue("c", "a", ["two words"])
    with pytest.raises(ValueError):
        issuer.issue("", "a", [])


def test_expiry_with_leeway() -> None:
    clock = FakeClock()
    issuer = TokenIssuer(KEY, ttl_seconds=60, clock=clock)
    token = issuer.issue("c", "a", ["agent"]).access_token
    clock.now += 60 + 29  # within the 30 s leeway
    issuer.verify(token)
    clock.now += 2
    refused(issuer, token, "expired")


def test_zero_leeway_expires_on_time() -> None:
    clock = FakeClock()
    issuer = TokenIssuer(KEY, ttl_seconds=60, clock=clock, leeway=0)
    token = issuer.issue("c", "a", []).access_token
    clock.now += 59
    issuer.verify(token)
    clock.now += 1.5
    refused(issuer, token, "expired")


def test_not_yet_valid_and_future_iat() -> None:
    clock = FakeClock()
    issuer = TokenIssuer(KEY, clock=clock)
    future = claims_for(clock.now + 300)
    refused(issuer, sign(future), "not_yet_valid")
    only_iat_future = claims_for(clock.now, iat=int(clock.now) + 300)
    refused(issuer, sign(only_iat_future), "not_yet_valid")
    only_nbf_future = claims_for(clock.now, nbf=int(clock.now) + 300)
    refused(issuer, sign(only_nbf_future), "not_yet_valid")
    # Small skew is tolerated.
    issuer.verify(sign(claims_for(clock.now + 20)))


def test_wrong_key() -> None:
    token = TokenIssuer(OTHER_KEY).issue("c", "a", ["admin"]).access_token
    refused(TokenIssuer(KEY), token, "bad_signature")


def test_tampered_payload() -> None:
    issuer = TokenIssuer(KEY)
    header, _, signature = issuer.issue("c", "a", ["viewer"]).access_token.split(".")
    forged_payload = b64url(claims_for(time.time(), roles=["admin"]))
    refused(issuer, f"{header}.{forged_payload}.{signature}", "bad_signature")


def test_alg_none_is_refused() -> None:
    issuer = TokenIssuer(KEY)
    payload = b64url(claims_for(time.time()))
    for alg in ("none", "None", "NONE"):
        token = f"{b64url({'alg': alg, 'typ': 'at+jwt'})}.{payload}."
        refused(issuer, token, "unsupported_algorithm")
    no_alg = f"{b64url({'typ': 'at+jwt'})}.{payload}.{b64url(b'sig')}"
    refused(issuer, no_alg, "unsupported_algorithm")


def test_rs256_header_on_hs_issuer_is_refused() -> None:
    issuer = TokenIssuer(KEY)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = sign(claims_for(time.time()), key=private, alg="RS256")  # type: ignore[arg-type]
    refused(issuer, rs_token, "unsupported_algorithm")
    # A different HMAC variant with the right key is still not the configured algorithm.
    refused(
        issuer, sign(claims_for(time.time()), alg="HS512", key=KEY * 2), "unsupported_algorithm"
    )


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "app"])
def test_missing_required_claims(missing: str) -> None:
    issuer = TokenIssuer(KEY)
    refused(issuer, sign(claims_for(time.time(), **{missing: None})), "missing_claim")


def test_wrong_issuer_audience_and_type() -> None:
    issuer = TokenIssuer(KEY)
    now = time.time()
    refused(issuer, sign(claims_for(now, iss="someone-else")), "bad_issuer")
    refused(issuer, sign(claims_for(now, iss=None)), "bad_issuer")
    refused(issuer, sign(claims_for(now, aud="other-service")), "bad_audience")
    refused(issuer, sign(claims_for(now, aud=None)), "bad_audience")
    refused(issuer, sign(claims_for(now), typ="JWT"), "bad_type")
    # The same claims signed with the same key and the right type are fine.
    assert issuer.verify(sign(claims_for(now))).subject == "agl_client"


def test_malformed_claims_and_tokens() -> None:
    issuer = TokenIssuer(KEY)
    now = time.time()
    refused(issuer, sign(claims_for(now, exp="9999999999")), "malformed")
    refused(issuer, sign(claims_for(now, exp=True)), "malformed")
    refused(issuer, sign(claims_for(now, roles=["agent", 7])), "malformed")
    refused(issuer, sign(claims_for(now, sub=42)), "malformed")
    for junk in ["", "abc", "a.b", "a.b.c", "a.b.c.d.e", "x" * 9000 + ".a.b"]:
        refused(issuer, junk, "malformed")
    with pytest.raises(InvalidToken):
        issuer.verify(None)  # type: ignore[arg-type]


def test_configuration_checks() -> None:
    with pytest.raises(ValueError):
        TokenIssuer(b"short-secret")
    with pytest.raises(ValueError):
        TokenIssuer(KEY, algorithm="RS256")
    with pytest.raises(ValueError):
        TokenIssuer(KEY, algorithm="HS512")  # needs 64 bytes
    with pytest.raises(ValueError):
        TokenIssuer(KEY, ttl_seconds=0)
    assert TokenIssuer("s" * 32).verify(TokenIssuer("s" * 32).issue("c", "a", []).access_token)
    assert KEY.decode() not in repr(TokenIssuer(KEY))


def test_custom_issuer_and_audience() -> None:
    a = TokenIssuer(KEY, issuer="agl-eu", audience="agl-api")
    b = TokenIssuer(KEY)
    token = a.issue("c", "app", []).access_token
    assert a.verify(token).app == "app"
    refused(b, token, "bad_issuer")


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt.key"
    key = load_or_create_signing_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_signing_key(path) == key
    issuer = TokenIssuer(key)
    assert issuer.verify(issuer.issue("c", "a", []).access_token).subject == "c"
    short = tmp_path / "short.key"
    short.write_bytes(b"tiny")
    with pytest.raises(ValueError):
        load_or_create_signing_key(short)


def test_signing_key_creation_race(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    keys: list[bytes] = []
    barrier = threading.Barrier(6)

    def load() -> None:
        barrier.wait()
        keys.append(load_or_create_signing_key(path))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 6 and len(set(keys)) == 1
