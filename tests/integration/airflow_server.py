"""A real ``airflow standalone`` for the integration tests, and a logged-in REST session.

API server, scheduler, DAG processor and triggerer on 127.0.0.1 (a free port) with the DAGs in
``dags/`` and one password user; the whole process group is stopped by :meth:`Airflow.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
USER, PASSWORD = "stanflow", "not-a-real-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Airflow:
    """`airflow standalone` in its own process group, and a logged-in REST session.

    ``env`` adds to (and may override) the defaults below; the API's address, the login and
    the DAG folder are always this class's.
    """

    def __init__(
        self,
        home: Path,
        airflow_home: Path,
        env: Mapping[str, str] | None = None,
        *,
        start: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.airflow_home = airflow_home
        airflow_home.mkdir(parents=True)
        passwords = airflow_home / "passwords.json"
        passwords.write_text(json.dumps({USER: PASSWORD}))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STANFLOW_"))}
        self.env = {
            **base,
            "STANFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **(env or {}),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "PATH": f"{Path(sys.executable).parent}:{base.get('PATH', '')}",
        }
        self.log = (airflow_home / "standalone.log").open("w")
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()
        if start:
            self.start()

    def run_command(self, *args: str, timeout_s: float = 300) -> str:
        """``airflow ARGS`` with this server's environment (e.g. ``db migrate`` before start)."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{output[-4000:]}"
        return output

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [AIRFLOW, "standalone"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def tail(self, chars: int = 6000) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def wait_ready(self, *dag_ids: str, timeout_s: float = 240) -> None:
        """Until the API answers, the login works and the DAG processor has parsed ``dag_ids``."""
        deadline = time.monotonic() + timeout_s
        waiting = list(dag_ids)
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, (
                "airflow standalone exited:\n" + self.tail()
            )
            try:
                if "Authorization" not in self.http.headers:
                    token = requests.post(
                        f"{self.url}/auth/token",
                        json={"username": USER, "password": PASSWORD},
                        timeout=10,
                    )
                    if token.status_code == 201:
                        self.http.headers["Authorization"] = (
                            f"Bearer {token.json()['access_token']}"
                        )
                while waiting and self.api("GET", f"/dags/{waiting[0]}").ok:
                    waiting.pop(0)
                if not waiting:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(2)
        raise AssertionError(f"Airflow not ready in {timeout_s} s:\n" + self.tail())

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        """SIGTERM to the whole group (standalone, its components, workers, tasks), then SIGKILL."""
        if self.proc is None:  # never started
            self.log.close()
            return
        group = self.proc.pid  # a session leader: its pid is the group's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader: a zombie still counts as in the group
            if not _group_alive(group):
                break
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
