"""The server accepts tokens from an external OIDC provider (real RS256, JWKS on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.conftest import Api, make_api
from tests.security.test_oidc import AUDIENCE, IdentityProvider

from agent_lightning.config import Settings
from agent_lightning.store import Store


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider(
        {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    )
    provider.publish("k1")
    yield provider
    provider.stop()


@pytest.fixture
def oidc_api(idp: IdentityProvider, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(
        data_dir=tmp_path / "d",
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        jwt_secret="k" * 40,
        oidc_issuer=idp.issuer,
        oidc_audience=AUDIENCE,
        oidc_roles_claim="realm_access.roles",
    )
    store = Store(settings.database_url)
    api = make_api(settings, store)
    yield api
    store.close()


def test_idp_token_is_accepted_with_roles_from_the_configured_claim(
    oidc_api: Api, idp: IdentityProvider
) -> None:
    token = idp.token(realm_access={"roles": ["Analyst", "some-other-role"]}, app="acme")
    headers = {"Authorization": f"Bearer {token}"}
    me = oidc_api.client.get("/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json() == {"subject": "user-42", "app": "acme", "roles": ["Analyst"], "kind": "oidc"}
    assert oidc_api.client.get("/v1/events", headers=headers).status_code == 200
    # Analyst may not write, whatever the provider says about other roles.
    assert (
        oidc_api.client.post("/v1/events", json={"text": "x"}, headers=headers).status_code == 403
    )


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"exp": 1_000}, "expired"),
    ],
)
def test_bad_idp_tokens_are_refused(oidc_api: Api, idp: IdentityProvider, overrides, why) -> None:
    token = idp.token(realm_access={"roles": ["AgentAdmin"]}, app="acme", **overrides)
    response = oidc_api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, why
    assert token not in response.text


def test_idp_token_without_an_app_is_forbidden(oidc_api: Api, idp: IdentityProvider) -> None:
    token = idp.token(realm_access={"roles": ["AgentAdmin"]}, app=None)
    response = oidc_api.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_our_own_tokens_still_work_beside_oidc(oidc_api: Api) -> None:
    assert (
        oidc_api.client.get("/v1/me", headers=oidc_api.auth("acme", ("Agent",))).status_code == 200
    )
