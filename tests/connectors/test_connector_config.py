"""The connectors: block is validated up front; errors name the connector and the field."""

from __future__ import annotations

import inspect

import pytest
from connector_harness import ENV, TOKEN, connector_config

import agent_lightning.connectors as connectors_pkg
from agent_lightning.connectors import (
    ConnectorConfigError,
    ConnectorError,
    ConnectorRegistry,
    TokenBucket,
    parse_connectors,
)
from agent_lightning.connectors import config as config_mod
from agent_lightning.connectors import errors as errors_mod
from agent_lightning.connectors import ratelimit as ratelimit_mod
from agent_lightning.connectors import registry as registry_mod
from agent_lightning.connectors import rest as rest_mod

URL = "http://127.0.0.1:9"


def problems_of(mapping: dict, env: dict | None = None, secrets=None) -> list[str]:
    with pytest.raises(ConnectorConfigError) as info:
        ConnectorRegistry.from_config(mapping, env=ENV if env is None else env, secrets=secrets)
    assert info.value.kind == "config"
    return list(info.value.problems)


def test_public_api_is_listed_sorted_and_complete() -> None:
    names = connectors_pkg.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(connectors_pkg, name), name
    for module in (config_mod, errors_mod, ratelimit_mod, registry_mod, rest_mod):
        for name, obj in vars(module).items():
            public = not name.startswith("_") and getattr(obj, "__module__", "") == module.__name__
            if public and (inspect.isclass(obj) or inspect.isfunction(obj)):
                assert name in names, f"{module.__name__}.{name} missing from __all__"


def test_valid_block_builds_a_registry_with_defaults() -> None:
    with ConnectorRegistry.from_config({"kb": connector_config(URL + "/")}, env=ENV) as reg:
        kb = reg["kb"]
        assert reg.names() == ["kb"] and "kb" in reg and len(reg) == 1
        assert kb.config.base_url == URL  # trailing slash dropped
        assert kb.config.endpoints["search"].method == "GET"
        assert kb.config.endpoints["get"].placeholders == ["id"]
        # POST/PATCH are not resent after a timeout unless declared idempotent.
        assert kb.config.endpoints["create"].retry_unsafe_failures is False
        assert kb.config.endpoints["get"].retry_unsafe_failures is True


def test_unknown_and_wrong_fields_are_named_with_their_path() -> None:
    config = connector_config(URL)
    config["endpoints"]["search"]["respons_schema"] = {}
    config["endpoints"]["get"]["method"] = "FETCH"
    config["retries"] = -1
    problems = problems_of({"kb": config})
    assert "connectors.kb.endpoints.search.respons_schema: unknown field" in problems
    assert any(
        p.startswith("connectors.kb.endpoints.get.method: Input should be") for p in problems
    )
    assert any(p.startswith("connectors.kb.retries:") for p in problems)


def test_every_connector_is_checked_before_any_is_built() -> None:
    bad_auth = connector_config(URL, auth={"type": "bearer"})
    bad_test = connector_config(URL, test="nope")
    problems = problems_of({"kb": bad_auth, "tickets": bad_test})
    assert "connectors.kb.auth: auth type 'bearer' needs exactly one of token_env, secret" in (
        problems
    )
    assert any(
        p.startswith("connectors.tickets: test endpoint 'nope' is not in endpoints")
        for p in problems
    )


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "none", "token_env": "X"}, "token_env not used by auth type 'none'"),
        ({"type": "basic", "password_env": "P"}, "needs exactly one of username, username_env"),
        ({"type": "api_key", "token_env": "T", "header": "bad header"}, "not a valid HTTP header"),
        ({"type": "oauth"}, "Input should be 'none', 'bearer', 'api_key' or 'basic'"),
    ],
)
def test_auth_shapes(auth: dict, expected: str) -> None:
    problems = problems_of({"kb": connector_config(URL, auth=auth)})
    assert len(problems) == 1 and problems[0].startswith("connectors.kb.auth")
    assert expected in problems[0]


def test_bad_url_bad_path_and_bad_schema() -> None:
    config = connector_config("ftp://example.com")
    config["endpoints"]["search"]["path"] = "kb/search"
    config["endpoints"]["health"]["response_schema"] = {"type": "strnig"}
    problems = problems_of({"kb": config})
    assert any("base_url must be an http(s) URL" in p for p in problems)
    assert any(
        p.startswith("connectors.kb.endpoints.search.path: path must start") for p in problems
    )
    assert any(
        p.startswith("connectors.kb.endpoints.health.response_schema: not a valid JSON schema")
        for p in problems
    )


def test_credentials_in_urls_or_headers_are_refused() -> None:
    assert any(
        "must not carry credentials" in p
        for p in problems_of({"kb": connector_config("http://u:p@127.0.0.1:9")})
    )
    headers = {"Authorization": "Bearer x"}
    assert any(
        "put credentials in auth" in p
        for p in problems_of({"kb": connector_config(URL, headers=headers)})
    )


def test_missing_environment_variables_are_config_errors() -> None:
    basic = {"type": "basic", "username_env": "REF_USER", "password_env": "REF_PASS"}
    problems = problems_of(
        {"kb": connector_config(URL), "crm": connector_config(URL, auth=basic)}, env={}
    )
    assert problems == [
        "connectors.kb.auth.token_env: environment variable REF_TOKEN is not set",
        "connectors.crm.auth.username_env: environment variable REF_USER is not set",
        "connectors.crm.auth.password_env: environment variable REF_PASS is not set",
    ]


def test_stored_secrets_by_mapping_or_function() -> None:
    auth = {"type": "bearer", "secret": "refservices-token"}
    block = {"kb": connector_config(URL, auth=auth)}
    assert ConnectorRegistry.from_config(block, env={}, secrets={"refservices-token": TOKEN})
    calls: list[str] = []

    def lookup(name: str) -> str:
        calls.append(name)
        return TOKEN

    assert ConnectorRegistry.from_config(block, env={}, secrets=lookup)["kb"]
    assert calls == ["refservices-token"]
    assert problems_of(block, env={}, secrets={}) == [
        "connectors.kb.auth.secret: stored secret 'refservices-token' not found"
    ]
    assert "no secret store was given" in problems_of(block, env={})[0]


def test_secrets_never_show_in_reprs() -> None:
    block = {
        "kb": connector_config(URL),
        "crm": connector_config(
            URL, auth={"type": "api_key", "token_env": "REF_TOKEN", "header": "X-Key"}
        ),
    }
    with ConnectorRegistry.from_config(block, env=ENV) as reg:
        for name in ("kb", "crm"):
            connector = reg[name]
            shown = repr(connector) + repr(connector.config) + repr(connector._auth) + repr(reg)
            assert TOKEN not in shown
            assert "REF_TOKEN" in repr(connector.config)  # the *name* is fine to show


def test_unknown_connector_and_endpoint() -> None:
    with ConnectorRegistry.from_config({"kb": connector_config(URL)}, env=ENV) as reg:
        assert reg.get("nope") is None
        with pytest.raises(ConnectorError) as info:
            reg["nope"]
        assert info.value.kind == "config"
        assert str(info.value) == "nope: unknown connector (configured: kb)"
        with pytest.raises(ConnectorError) as info:
            reg["kb"].call("serch")
        assert str(info.value).startswith("kb.serch: unknown endpoint (known: create, customer,")
        with pytest.raises(ConnectorError, match=r"kb.get: path /tickets/\{id\} needs a value"):
            reg["kb"].call("get")
        with pytest.raises(ConnectorError, match="kb.create: request body is not JSON"):
            reg["kb"].call("create", json={"when": object()})


def test_parse_connectors_rejects_a_non_mapping() -> None:
    with pytest.raises(ConnectorConfigError, match="connectors: expected a mapping"):
        parse_connectors(["kb"])
    assert parse_connectors(None) == {}


def test_connector_error_text() -> None:
    err = ConnectorError("tickets", "create", "unreachable", "cannot reach x", attempts=3)
    assert str(err) == "tickets.create: cannot reach x"
    assert err.kind == "unreachable" and err.status is None and err.attempts == 3
    with pytest.raises(ValueError):
        ConnectorError("a", None, "exploded", "x")  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_reserves_in_order_and_refuses_long_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock)  # 2/s, burst of 2
    assert bucket.reserve(0) == 0 and bucket.reserve(0) == 0
    assert bucket.reserve(0.1) is None  # the next token is 0.5 s away: refused, nothing taken
    assert bucket.reserve(1.0) == pytest.approx(0.5)
    assert bucket.reserve(1.0) == pytest.approx(1.0)  # queued behind the previous reservation
    clock.now = 2.0
    assert bucket.reserve(0) == 0  # refilled, never above capacity
    with pytest.raises(ValueError):
        TokenBucket(0)
