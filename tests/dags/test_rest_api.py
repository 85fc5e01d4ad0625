"""A run triggered through Airflow's REST API — what the UI's trigger form does —
with a real api-server, scheduler and dag-processor (scripts/stack.sh up airflow)."""

from __future__ import annotations

import time

from conftest import call, login, unpause


def test_a_run_triggered_through_the_api_succeeds(airflow_server):
    token = login()
    unpause(token)
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
