"""OIDC bearer tokens, verified against a real identity provider served on loopback.

The IdP is a small ``http.server`` in a background thread: it serves the discovery document
and a JWKS, signs real RS256/ES256 tokens, can rotate keys or fail on demand, and counts the
requests it receives so the refetch rate limit can be checked from the outside.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from agent_lightning.security.errors import InvalidToken
from agent_lightning.security.oidc import OIDCVerifier, resolve_claim

AUDIENCE = "agent-lightning"


def b64url(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class IdentityProvider:
    """A minimal OIDC provider on 127.0.0.1 with an ephemeral port."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys  # kid -> private key (RSA or EC)
        self.published: list[str] = []
        self.extra_jwks: list[dict] = []
        self.hits: Counter[str] = Counter()
        self.fail_status: int | None = None
        self.discovery_issuer: str | None = None
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                idp.hits[self.path] += 1
                if idp.fail_status is not None:
                    return self._send(idp.fail_status, {"error": "down"})
                if self.path == "/.well-known/openid-configuration":
                    issuer = idp.discovery_issuer or idp.issuer
                    return self._send(200, {"issuer": issuer, "jwks_uri": idp.issuer + "/jwks"})
                if self.path == "/jwks":
                    return self._send(200, idp.jwks())
                return self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def publish(self, *kids: str) -> None:
        self.published = list(kids)

    def jwks(self) -> dict:
        out = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                jwk["alg"] = "RS256"
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out + self.extra_jwks}

    def claims(self, **overrides: Any) -> dict:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-42",
            "app": "shop",
            "roles": ["viewer", "operator"],
            "scope": "openid decide",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "tok-1",
        }
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def token(self, kid: str = "k1", alg: str = "RS256", **overrides: Any) -> str:
        headers = {"kid": kid} if kid else {}
        return jwt.encode(self.claims(**overrides), self.keys[kid or "k1"], alg, headers=headers)

    def public_pem(self, kid: str = "k1") -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "k1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "k2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec1": ec.generate_private_key(ec.SECP256R1()),
    }


@pytest.fixture
def idp(keys: dict[str, Any]) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(keys)
    provider.publish("k1")
    yield provider
    provider.stop()


@pytest.fixture
def mono() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def make_verifier(idp: IdentityProvider, mono: FakeMonotonic) -> Iterator[Any]:
    made: list[OIDCVerifier] = []

    def make(**kwargs: Any) -> OIDCVerifier:
        kwargs.setdefault("monotonic", mono)
        verifier = OIDCVerifier(kwargs.pop("issuer", idp.issuer), AUDIENCE, **kwargs)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


def refused(verifier: OIDCVerifier, token: str, code: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert info.value.reason_code == code, info.value
    # Neither the token nor any sizeable part of it may leak into messages or tracebacks.
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    for segment in token.split("."):
        if len(segment) > 8:
            assert segment not in rendered
    return info.value


def test_valid_token_accepted_with_discovery_and_cache(idp, make_verifier) -> None:
    verifier = make_verifier()
    claims = verifier.verify(idp.token())
    assert claims.subject == "user-42"
    assert claims.app == "shop"
    assert claims.roles == ["viewer", "operator"]
    assert claims.scopes == ["openid", "decide"]
    assert claims.token_id == "tok-1"
    assert claims.issued_at is not None and claims.expires_at > claims.issued_at
    assert claims.raw["iss"] == idp.issuer
    for _ in range(5):
        verifier.verify(idp.token())
    # One discovery and one JWKS fetch, then everything from the cache.
    assert idp.hits == {"/.well-known/openid-configuration": 1, "/jwks": 1}


def test_roles_from_dotted_path_and_string(idp, make_verifier) -> None:
    keycloak = make_verifier(roles_claim="realm_access.roles", app_claim="tenant.app")
    token = idp.token(
        roles=None, app=None, realm_access={"roles": ["admin"]}, tenant={"app": "billing"}
    )
    claims = keycloak.verify(token)
    assert claims.roles == ["admin"] and claims.app == "billing"

    spaced = make_verifier(roles_claim="groups")
    claims = spaced.verify(idp.token(groups="agent  viewer"))
    assert claims.roles == ["agent", "viewer"]
    assert claims.app == "shop"

    # A namespaced claim whose name contains dots is read as-is, not as a path.
    namespaced = make_verifier(roles_claim="https://agl.example/roles", app_claim="missing")
    claims = namespaced.verify(idp.token(**{"https://agl.example/roles": ["operator"]}))
    assert claims.roles == ["operator"] and claims.app is None

    # Missing roles are no roles; a malformed roles claim is refused.
    assert make_verifier(roles_claim="nope").verify(idp.token()).roles == []
    refused(make_verifier(), idp.token(roles={"admin": True}), "malformed")


def test_resolve_claim() -> None:
    payload = {"a": {"b": {"c": 1}}, "x.y": 2, "s": "str"}
    assert resolve_claim(payload, "a.b.c") == 1
    assert resolve_claim(payload, "x.y") == 2
    assert resolve_claim(payload, "a.z") is None
    assert resolve_claim(payload, "s.t") is None


def test_audience_list_and_configured_list(idp, make_verifier, mono) -> None:
    verifier = make_verifier()
    assert verifier.verify(idp.token(aud=["other-api", AUDIENCE])).subject == "user-42"
    refused(verifier, idp.token(aud=["other-api", "more"]), "bad_audience")
    multi = OIDCVerifier(idp.issuer, ["api-a", "api-b"], monotonic=mono)
    try:
        assert multi.verify(idp.token(aud="api-b")).subject == "user-42"
        refused(multi, idp.token(aud="api-c"), "bad_audience")
    finally:
        multi.close()


def test_time_claims(idp, make_verifier) -> None:
    verifier = make_verifier()
    now = int(time.time())
    refused(verifier, idp.token(exp=now - 60, iat=now - 400, nbf=now - 400), "expired")
    verifier.verify(idp.token(exp=now - 10))  # within the 30 s leeway
    refused(verifier, idp.token(nbf=now + 120), "not_yet_valid")
    refused(verifier, idp.token(iat=now + 120), "not_yet_valid")
    refused(verifier, idp.token(exp=None), "missing_claim")
    strict = make_verifier(leeway=0)
    refused(strict, idp.token(exp=now - 1), "expired")


def test_wrong_audience_and_issuer(idp, make_verifier) -> None:
    verifier = make_verifier()
    refused(verifier, idp.token(aud="someone-else"), "bad_audience")
    refused(verifier, idp.token(aud=None), "bad_audience")
    refused(verifier, idp.token(iss="https://evil.example"), "bad_issuer")
    refused(verifier, idp.token(iss=None), "bad_issuer")
    refused(verifier, idp.token(sub=None), "missing_claim")


def test_alg_none_is_refused_before_any_fetch(idp, make_verifier) -> None:
    verifier = make_verifier()
    payload = b64url(idp.claims())
    for alg in ("none", "None"):
        token = f"{b64url({'alg': alg, 'kid': 'k1', 'typ': 'JWT'})}.{payload}."
        refused(verifier, token, "unsupported_algorithm")
    assert sum(idp.hits.values()) == 0


def test_hs256_signed_with_public_key_is_refused(idp, make_verifier) -> None:
    verifier = make_verifier()
    verifier.verify(idp.token())  # keys are cached: the refusal below is not a fetch failure
    header = b64url({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    payload = b64url(idp.claims(roles=["admin"]))
    signing_input = f"{header}.{payload}".encode()
    for secret in (idp.public_pem(), json.dumps(idp.jwks()["keys"][0]).encode()):
        mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
        refused(verifier, f"{header}.{payload}.{b64url(mac)}", "unsupported_algorithm")
    with pytest.raises(ValueError):
        OIDCVerifier(idp.issuer, AUDIENCE, allowed_algorithms=("RS256", "HS256"))
    with pytest.raises(ValueError):
        OIDCVerifier(idp.issuer, AUDIENCE, allowed_algorithms=("none",))


def test_symmetric_jwk_is_never_loaded(idp, make_verifier) -> None:
    secret = b"s" * 32
    idp.extra_jwks = [{"kty": "oct", "kid": "shared", "k": b64url(secret), "alg": "HS256"}]
    verifier = make_verifier(allowed_algorithms=("RS256",))
    claims = idp.claims(roles=["admin"])
    hs = jwt.encode(claims, secret, "HS256", headers={"kid": "shared"})
    refused(verifier, hs, "unsupported_algorithm")
    header = b64url({"alg": "RS256", "kid": "shared"})
    payload = b64url(claims)
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    refused(verifier, f"{header}.{payload}.{b64url(mac)}", "unknown_key")


def test_encryption_and_private_jwks_entries_are_ignored(idp, make_verifier) -> None:
    published = RSAAlgorithm.to_jwk(idp.keys["k2"].public_key(), as_dict=True)
    private = RSAAlgorithm.to_jwk(idp.keys["k2"], as_dict=True)
    idp.extra_jwks = [{**published, "kid": "enc", "use": "enc"}, {**private, "kid": "leaked"}]
    verifier = make_verifier()
    for kid in ("enc", "leaked"):
        token = jwt.encode(idp.claims(), idp.keys["k2"], "RS256", headers={"kid": kid})
        refused(verifier, token, "unknown_key")


def test_tampered_signature_and_payload(idp, make_verifier) -> None:
    verifier = make_verifier()
    token = idp.token(roles=["viewer"])
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    bad_sig = signature[:middle] + flipped + signature[middle + 1 :]
    refused(verifier, f"{header}.{payload}.{bad_sig}", "bad_signature")
    forged = b64url(idp.claims(roles=["admin"]))
    refused(verifier, f"{header}.{forged}.{signature}", "bad_signature")
    # A real token signed by a key the IdP never published.
    rogue = jwt.encode(idp.claims(), idp.keys["k2"], "RS256", headers={"kid": "k1"})
    refused(verifier, rogue, "bad_signature")


def test_key_rotation_and_refetch_rate_limit(idp, make_verifier, mono) -> None:
    verifier = make_verifier()
    assert verifier.verify(idp.token("k1")).subject == "user-42"
    assert idp.hits["/jwks"] == 1

    idp.publish("k2")  # the IdP rotates: k1 is gone, k2 signs from now on
    mono.now += 11
    assert verifier.verify(idp.token("k2")).subject == "user-42"
    assert idp.hits["/jwks"] == 2  # the unknown kid triggered exactly one refetch
    refused(verifier, idp.token("k1"), "unknown_key")  # retired key, not refetched again

    # An attacker spraying random kids gets no further fetches within the window...
    for i in range(25):
        sprayed = jwt.encode(idp.claims(), idp.keys["k1"], "RS256", headers={"kid": f"rnd{i}"})
        refused(verifier, sprayed, "unknown_key")
    assert idp.hits["/jwks"] == 2
    # ...and at most one per window after that.
    mono.now += 10.5
    for i in range(25):
        sprayed = jwt.encode(idp.claims(), idp.keys["k1"], "RS256", headers={"kid": f"more{i}"})
        refused(verifier, sprayed, "unknown_key")
    assert idp.hits["/jwks"] == 3
    assert verifier.verify(idp.token("k2")).subject == "user-42"  # the good key still works
    assert idp.hits["/jwks"] == 3
    assert idp.hits["/.well-known/openid-configuration"] == 1


def test_cache_ttl_refreshes_keys(idp, make_verifier, mono) -> None:
    verifier = make_verifier(cache_ttl_seconds=60)
    verifier.verify(idp.token("k1"))
    idp.publish("k1", "k2")
    mono.now += 61
    verifier.verify(idp.token("k1"))
    assert idp.hits["/jwks"] == 2  # refreshed on expiry even though the kid was known


def test_idp_unreachable(make_verifier, idp) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with httpx.Client(timeout=2) as client:  # a caller-supplied client is used, not closed
        verifier = make_verifier(issuer=dead, http_client=client)
        token = jwt.encode(idp.claims(iss=dead), idp.keys["k1"], "RS256", headers={"kid": "k1"})
        error = refused(verifier, token, "idp_unreachable")
        verifier.close()
        assert not client.is_closed
    assert dead not in error.message  # internal addresses stay in the server log


def test_idp_errors_are_rate_limited_and_recover(idp, make_verifier, mono) -> None:
    idp.fail_status = 500
    verifier = make_verifier()
    refused(verifier, idp.token(), "idp_unreachable")
    hits = sum(idp.hits.values())
    for _ in range(10):
        refused(verifier, idp.token(), "idp_unreachable")
    assert sum(idp.hits.values()) == hits  # a down IdP is not hammered
    idp.fail_status = None
    mono.now += 11
    assert verifier.verify(idp.token()).subject == "user-42"


def test_stale_keys_survive_a_short_outage(idp, make_verifier, mono) -> None:
    verifier = make_verifier(cache_ttl_seconds=60, max_stale_seconds=600)
    verifier.verify(idp.token())
    idp.fail_status = 503
    mono.now += 120
    assert verifier.verify(idp.token()).subject == "user-42"  # refresh failed, cache serves
    assert idp.hits["/jwks"] == 2
    mono.now += 600
    refused(verifier, idp.token(), "idp_unreachable")


def test_discovery_must_name_our_issuer(idp, make_verifier) -> None:
    idp.discovery_issuer = "https://impostor.example"
    refused(make_verifier(), idp.token(), "idp_misconfigured")


def test_explicit_jwks_url_skips_discovery(idp, make_verifier) -> None:
    verifier = make_verifier(jwks_url=idp.issuer + "/jwks")
    assert verifier.verify(idp.token()).subject == "user-42"
    assert idp.hits == {"/jwks": 1}


def test_token_without_kid(idp, make_verifier) -> None:
    verifier = make_verifier()
    assert verifier.verify(idp.token(kid="")).subject == "user-42"  # one published key
    idp.publish("k1", "k2")
    ambiguous = make_verifier()
    refused(ambiguous, idp.token(kid=""), "unknown_key")


def test_es256_and_key_type_mismatch(idp, make_verifier) -> None:
    idp.publish("k1", "ec1")
    verifier = make_verifier()
    assert verifier.verify(idp.token("ec1", alg="ES256")).subject == "user-42"
    # The RSA key's kid with an EC algorithm: the key is not of the right type.
    forged = jwt.encode(idp.claims(), idp.keys["ec1"], "ES256", headers={"kid": "k1"})
    refused(verifier, forged, "unknown_key")
    # ES256 is allowed by default but can be switched off.
    refused(
        make_verifier(allowed_algorithms=("RS256",)),
        idp.token("ec1", alg="ES256"),
        "unsupported_algorithm",
    )


def test_malformed_tokens(idp, make_verifier) -> None:
    verifier = make_verifier()
    for junk in ["", "abc", "a.b", "a.b.c", "x.y.z.w.v", "x" * 17000]:
        refused(verifier, junk, "malformed")
    refused(verifier, "e30.e30.", "unsupported_algorithm")  # header {} names no algorithm
    crit = jwt.encode(idp.claims(), idp.keys["k1"], "RS256", headers={"kid": "k1", "crit": ["exp"]})
    refused(verifier, crit, "malformed")


def test_insecure_issuer_urls_are_refused() -> None:
    with pytest.raises(ValueError):
        OIDCVerifier("http://idp.example.com/realms/x", AUDIENCE)
    with pytest.raises(ValueError):
        OIDCVerifier("https://idp.example.com", AUDIENCE, jwks_url="http://idp.example.com/k")
    OIDCVerifier("https://idp.example.com", AUDIENCE).close()
    OIDCVerifier("http://idp.internal", AUDIENCE, allow_insecure_http=True).close()


def test_averify_runs_in_a_thread(idp, make_verifier) -> None:
    verifier = make_verifier()
    claims = asyncio.run(verifier.averify(idp.token()))
    assert claims.subject == "user-42"
