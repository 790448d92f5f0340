"""The webhook SSRF guard sees through other spellings of a link-local (metadata) address."""

from __future__ import annotations

import httpx
import pytest
from obs_harness import ObsApi, obs_api_fixture  # noqa: F401

from agent_lightning.observability.webhooks import WebhookClient, WebhookRefused, check_url

METADATA = [
    "http://[::ffff:169.254.169.254]/latest/meta-data/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",  # the same, in hex
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo (client 169.254.169.254)
    "http://[::a9fe:a9fe]/",  # IPv4-compatible
    "http://[::ffff:224.0.0.1]/",  # mapped multicast
    "http://2852039166/",  # 169.254.169.254 as one number
    "http://0xa9fea9fe/",
]


@pytest.mark.parametrize("url", METADATA)
def test_embedded_and_numeric_link_local_addresses_are_refused(url: str) -> None:
    for resolve in (False, True):  # at configuration and at delivery
        with pytest.raises(WebhookRefused, match="not allowed"):
            check_url(url, resolve=resolve)

    sent: list[httpx.Request] = []
    client = WebhookClient(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
    )
    result = client.send(url, None, {"type": "alert.firing"}, "d-1")
    client.close()
    assert not result.ok and result.attempts == 0 and "not allowed" in (result.error or "")
    assert sent == []


def test_the_rules_api_refuses_them(obs_api: ObsApi) -> None:
    for url in METADATA[:3]:
        response = obs_api.client.put(
            "/v1/alerts/rules", json={"rules": [], "webhook": {"url": url}}, headers=obs_api.auth()
        )
        assert response.status_code == 422, (url, response.text)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.1]:9/hook",  # the same rules as 127.0.0.1, which is allowed
        "http://[2001:db8::1]/hook",
        "http://[2002:c000:204::1]/hook",  # 6to4 of 192.0.2.4
        "http://[::1]/hook",
        "https://hooks.example.com/x",
    ],
)
def test_other_addresses_are_still_allowed_at_configuration(url: str) -> None:
    check_url(url)
