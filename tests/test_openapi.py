"""The OpenAPI document against the live API: schemathesis generates requests from it; no 5xx, and every
response must match the document."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modemgw import auth
from modemgw.daemon import Daemon
from tests.support import daemon_config


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    config = daemon_config(tmp_path_factory.mktemp("openapi"))
    daemon = Daemon(config, simulate=1, sim_send_latency=0.0, sim_report_delay=0.05).start()
    assert daemon.pool.wait_ready(10)
    key = auth.create_key(daemon.store, "schemathesis", ("admin",))[0]
    yield daemon, key
    daemon.stop()


def test_every_endpoint_answers_as_documented(live):
    """Generated requests for every operation (schemathesis strategies driven by hypothesis directly: its
    pytest plugin does not load under this pytest)."""
    daemon, key = live
    schema = schemathesis.openapi.from_url(daemon.url + "openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=checks)

        check()


def test_the_document_lists_every_route(live):
    daemon, _ = live
    paths = set(__import__("modemgw.openapi", fromlist=["document"]).document()["paths"])
    routes = {rule.rule.replace("<id:", "{").replace("<path:", "{").replace(">", "}")
              for rule in daemon.app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.startswith("ui.")}  # the web UI is not API
    assert routes - {"/openapi.json"} == paths
