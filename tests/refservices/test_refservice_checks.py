"""The reference service and the templates' connectors against it, over real HTTP on loopback:
a wrong token fails the connector test (it used to pass), and a ticket number too large for
SQLite is "not found", not a server error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from refservice_harness import TOKEN

from agent_lightning.connectors import ConnectorRegistry
from agent_lightning.refservices.testing import RefServiceServer

TEMPLATES = Path(__file__).parents[2] / "src/agent_lightning/templates"


def _registry(template: str, url: str, token: str) -> ConnectorRegistry:
    block = yaml.safe_load((TEMPLATES / template / "agent.yaml").read_text())["connectors"]
    for connector in block.values():
        connector["base_url"] = url
    return ConnectorRegistry.from_config(block, env={"REFSERVICES_TOKEN": token})


@pytest.mark.parametrize("template", ["support-ticket", "kb-lookup"])
def test_the_templates_connector_test_checks_the_token(
    server: RefServiceServer, template: str
) -> None:
    with _registry(template, server.url, TOKEN) as good:
        reports = {name: good[name].test() for name in good.names()}
    assert reports and all(r.ok for r in reports.values()), reports
    with _registry(template, server.url, "wrong-token") as wrong:
        reports = {name: wrong[name].test() for name in wrong.names()}
    for name, report in reports.items():
        assert not report.ok, name
        assert report.problems == ["authenticated: expected True, got False"], report.problems


@pytest.mark.parametrize("ticket", ["99999999999999999999999", "-99999999999999999999999"])
def test_a_ticket_number_too_large_for_sqlite_is_not_found(client: httpx.Client, ticket) -> None:
    response = client.get(f"/tickets/{ticket}")
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"ticket {ticket} not found"}
    patched = client.patch(f"/tickets/{ticket}", json={"status": "closed"})
    assert patched.status_code == 404, patched.text
