"""Property-based fuzzing of the published OpenAPI document (schemathesis) against a live
node over mutual TLS: whatever the request, never a 500, never a stack trace; every answer
conforms to the document (codes, content types, schemas), and every error carries the
standard's Error body (ETSI GS QKD 014 V1.1.1 §6.6). Bounded: ~12 examples per operation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from qkdnet._commands.serve import prepare
from qkdnet.api.app import create_app
from qkdnet.api.node import LiveNode
from qkdnet.api.server import free_port
from qkdnet.api.service import KmeService

SCENARIO = """
name: fuzz
nodes:
  - {{id: A, port: {pa}}}
  - {{id: B, port: {pb}}}
links:
  - {{id: A-B, a: A, b: B, length_km: 5, key_rate_bps: 200000}}
saes:
  - {{id: alice, node: A}}
  - {{id: al, node: A}}
  - {{id: bob, node: B}}
"""

# The document is static: the same for every node; build it once without a server.
schema = schemathesis.openapi.from_dict(
    create_app(KmeService("A", None, {"alice": "A"})).openapi()  # type: ignore[arg-type]
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz")
    scenario = root / "s.yaml"
    scenario.write_text(SCENARIO.format(pa=free_port(), pb=free_port()))
    plan = prepare(scenario, root / "out", None, None, 0)
    nodes = [LiveNode(json.loads(Path(p).read_text())).start() for p in plan["nodes"].values()]
    time.sleep(1.2)
    yield json.loads(Path(plan["saes"]["alice"]).read_text())
    for n in nodes:
        n.stop()


@schema.parametrize()
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_500_and_standard_errors(case, node) -> None:
    response = case.call(
        base_url=node["kme_url"], verify=node["ca"], cert=(node["cert"], node["key"]),
        timeout=20,
    )
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text
    if response.status_code >= 400 and response.status_code not in (404, 405):
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body
        assert body["message"] != "internal KME error"
    case.validate_response(
        response,
        excluded_checks=[checks.not_a_server_error, checks.positive_data_acceptance],
    )
