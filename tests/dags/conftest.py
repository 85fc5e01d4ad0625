"""Shared fixtures for the DAG tests: the DAG folder, and an isolated Airflow
home (SQLite) wired to the local stack through AIRFLOW_CONN_* variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
STACK = ROOT / ".stack"


@pytest.fixture(scope="session")
def dagbag():
    # As the dag-processor and task runner load them: the DAG folder on sys.path, so
    # the DAGs import their shared module (dags/rtds_tasks.py).
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


def airflow_connections():
    """scripts/stack/airflow_connections.py, the connections' one definition (the stack's airflow.sh prints them)."""
    sys.path.insert(0, str(ROOT / "scripts" / "stack"))
    import airflow_connections

    return airflow_connections


def stack_env() -> dict[str, str]:
    """RTDS_* settings printed by `scripts/stack.sh env`."""
    out = subprocess.run([str(ROOT / "scripts/stack.sh"), "env"], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return env


def rtds_bin() -> str:
    """The binary the tests' Airflow runs: RTDS_BIN, else the debug build `make test` made
    (the stack's own default, the optimized `ship` build, is what `make airflow` builds)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/rtds/target"))
    return os.environ.get("RTDS_BIN", str(target / "debug/rtds"))


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """Environment for `airflow dags test` against the local stack."""
    home = tmp_path_factory.mktemp("airflow_home")
    stack = stack_env()
    if "RTDS_POSTGRES_URL" not in stack:
        pytest.fail("the local stack is not set up: run `make stack-up` (scripts/stack.sh up)")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "airflow" / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        # The same connections as the stack's Airflow (scripts/stack/airflow.sh), from one definition.
        **airflow_connections().from_environment(stack),
        "RTDS_BIN": rtds_bin(),
        "RTDS_OUT": str(home / "parquet"),
        "RTDS_DELTA_OUT": str(home / "delta"),
        # OpenLineage events of the runs, one JSON a line (test_lineage.py reads them).
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "rtds",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(home / "openlineage.jsonl"), "append": True}
        ),
    }
    airflow = shutil.which("airflow", path=str(Path(os.sys.executable).parent)) or "airflow"
    subprocess.run([airflow, "db", "migrate"], check=True, env=env, capture_output=True)
    env["AIRFLOW_BIN"] = airflow
    return env


API = "http://127.0.0.1:8080"


def call(method: str, path: str, token: str | None = None, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        API + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


@pytest.fixture(scope="module")
def airflow_server():
    already = subprocess.run([str(ROOT / "scripts/stack.sh"), "status", "airflow"], capture_output=True, check=False)
    env = {**os.environ, "RTDS_BIN": rtds_bin()}
    subprocess.run([str(ROOT / "scripts/stack.sh"), "up", "airflow"], check=True, env=env)
    yield
    if already.returncode != 0:
        subprocess.run([str(ROOT / "scripts/stack.sh"), "down", "airflow"], check=False)


def login() -> str:
    passwords = Path(STACK, "airflow/home/simple_auth_manager_passwords.json.generated")
    password = json.loads(passwords.read_text())["admin"]
    return call("POST", "/auth/token", body={"username": "admin", "password": password})["access_token"]


def unpause(token: str, dag_id: str = "user_automation") -> None:
    """Unpause a DAG, once the dag-processor has parsed it."""
    deadline = time.time() + 120
    while True:
        try:
            call("PATCH", f"/api/v2/dags/{dag_id}", token, {"is_paused": False})
            return
        except urllib.error.HTTPError:
            assert time.time() < deadline, f"{dag_id} never appeared in the API"
            time.sleep(2)
