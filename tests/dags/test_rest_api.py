"""A run triggered through Airflow's REST API — what the UI's trigger form does —
with a real api-server, scheduler and dag-processor (scripts/stack.sh up airflow)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, STACK

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
    subprocess.run([str(ROOT / "scripts/stack.sh"), "up", "airflow"], check=True)
    yield
    if already.returncode != 0:
        subprocess.run([str(ROOT / "scripts/stack.sh"), "down", "airflow"], check=False)


def login() -> str:
    passwords = Path(STACK, "airflow/home/simple_auth_manager_passwords.json.generated")
    password = json.loads(passwords.read_text())["admin"]
    return call("POST", "/auth/token", body={"username": "admin", "password": password})["access_token"]


def test_a_run_triggered_through_the_api_succeeds(airflow_server):
    token = login()
    deadline = time.time() + 120
    while True:  # the dag-processor has to parse the DAG first
        try:
            call("PATCH", "/api/v2/dags/user_automation", token, {"is_paused": False})
            break
        except urllib.error.HTTPError:
            assert time.time() < deadline, "user_automation never appeared in the API"
            time.sleep(2)
    conf = {"count": 500, "source": "generate", "seed": 7, "sinks": ["postgres", "parquet"]}
    run = call("POST", "/api/v2/dags/user_automation/dagRuns", token, {"logical_date": None, "conf": conf})
    run_id = run["dag_run_id"]
    deadline = time.time() + 600
    state = run["state"]
    while state not in ("success", "failed"):
        assert time.time() < deadline, f"run {run_id} still {state}"
        time.sleep(3)
        state = call("GET", f"/api/v2/dags/user_automation/dagRuns/{run_id}", token)["state"]
    tasks = call("GET", f"/api/v2/dags/user_automation/dagRuns/{run_id}/taskInstances", token)["task_instances"]
    states = {t["task_id"]: t["state"] for t in tasks}
    assert state == "success", states
    assert states["load_cassandra"] == "skipped" and states["load_postgres"] == "success", states
    assert states["reconcile"] == "success", states
