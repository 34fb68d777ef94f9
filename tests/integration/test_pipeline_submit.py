"""`stanflow pipeline submit` against a local HTTP STAND-IN for the Kubeflow Pipelines API.

No KFP cluster can run here, so a tiny recording server plays the few v2beta1 endpoints that
``kfp.Client.create_run_from_pipeline_package`` calls. It is a stand-in, not Kubeflow: the test
checks what the client sends (the compiled pipeline and our parameters), not what a cluster does.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from stanflow.cli import main


class _StandIn(BaseHTTPRequestHandler):
    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(("GET", self.path, None))
        if "healthz" in self.path:
            self._reply({"multi_user": False})
        else:
            self._reply({"experiments": [], "total_size": 0})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        else:
            self._reply({"run_id": "run-42", "display_name": body.get("display_name")})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_stand_in():
    _StandIn.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _StandIn.requests
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_submit_sends_the_compiled_pipeline_and_parameters(kfp_stand_in, tiny_world):
    host, requests = kfp_stand_in
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(tiny_world),
            "pipeline",
            "submit",
            "--host",
            host,
            "--date",
            "2026-01-14",
            "--window-days",
            "7",
            "--epochs",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "submitted run run-42" in result.output
    runs = [body for method, path, body in requests if method == "POST" and path.endswith("/runs")]
    assert len(runs) == 1
    run = runs[0]
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "stan-training-pipeline"
    params = run["runtime_config"]["parameters"]
    assert params["logical_date"] == "2026-01-14"
    assert params["window_days"] == 7 and params["epochs"] == 2
    assert params["home"] == str(tiny_world)
    assert run["experiment_id"] == "exp-1"


def test_submit_without_a_host_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("STANFLOW_KFP_HOST", raising=False)
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "pipeline", "submit"])
    assert result.exit_code == 2
    assert "STANFLOW_KFP_HOST" in result.output
