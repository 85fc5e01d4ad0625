"""The Delta sink from outside rtds: the `deltalake` Python package (delta-rs's own binding, an
independent reader) reads the table `rtds load --sink delta` wrote, and its rows equal PostgreSQL's
for the same input; the delta_maintenance DAG runs `rtds maintain` with its form's settings as
environment variables."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import uuid

import pytest
from airflow.sdk.definitions.param import ParamValidationError
from test_user_automation import instance, psql, rendered

from conftest import rtds_bin, stack_env

USERS = 300


def rtds(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run(
        [rtds_bin(), *args], check=False, capture_output=True, text=True, env=env or stack_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_delta_table_read_by_deltalake_equals_postgres(tmp_path):
    from deltalake import DeltaTable

    run = uuid.uuid4().hex[:8]
    raw, created, schema = f"delta_py_raw_{run}", f"delta_py_created_{run}", f"delta_py_{run}"
    rtds("ingest", "--source", "generate", "--count", str(USERS), "--seed", "91", "--topic", raw)
    transformed = rtds("transform", "--input-topic", raw, "--output-topic", created, "--group", f"{raw}_g")
    env = {**stack_env(), "RTDS_FROM_SUMMARY": json.dumps(transformed)}
    try:
        for sink in ["postgres", "delta"]:
            args = ["--input-topic", created, "--pg-schema", schema, "--out", str(tmp_path), "--batch-size", "100"]
            loaded = rtds("load", "--sink", sink, *args, env=env)
            assert loaded["out"] == USERS, loaded
        table = DeltaTable(str(tmp_path / "created_users"))
        assert table.version() >= 3, "a commit a batch"
        rows = table.to_pyarrow_table().to_pylist()
        columns = [c for c in rows[0] if c != "ingested_at"]
        delta = {row["id"]: tuple(row[c] for c in columns) for row in rows}
        assert len(delta) == len(rows) == USERS, "each id once"
        # PostgreSQL's rows as text, its timestamps in the API's spelling (the Delta table keeps the text).
        select = ", ".join(
            f"to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\\\"T\\\"HH24:MI:SS.MS\\\"Z\\\"')"
            if c in ("dob", "registered_date")
            else f"{c}::text"
            for c in columns
        )
        lines = psql(f"COPY (SELECT {select} FROM {schema}.created_users) TO STDOUT WITH (FORMAT csv)").splitlines()
        postgres = {row[0]: tuple(v if v != "" else None for v in row) for row in csv.reader(lines)}
        assert delta == postgres
        # The application transactions: each partition's last offset, under the range run's stream.
        versions = [table.transaction_version(f"rtds:range/{created}:{p}") for p in range(3)]
        assert all(v is not None and v >= 0 for v in versions), versions
    finally:
        psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE", check=False)


def test_delta_maintenance_runs_rtds_maintain_with_its_form_as_environment(dagbag):
    dag = dagbag.dags["delta_maintenance"]
    (task,) = dag.tasks
    task = instance(task)
    assert task.bash_command == '"$RTDS_BIN" maintain'
    assert task.env["RTDS_OUT"].endswith("delta")
    assert rendered(dag, {"retention": "24h"}, "RTDS_RETENTION", "maintain") == "24h"
    assert rendered(dag, {"target_file_size": "64MB"}, "RTDS_TARGET_FILE_SIZE", "maintain") == "64MB"
    assert rendered(dag, {}, "RTDS_RETENTION", "maintain") == "168h"
    for bad in ["7 days; rm -rf /", "$(id)", ""]:
        with pytest.raises(ParamValidationError):
            copy.deepcopy(dag.params)["retention"] = bad
    assert [a.uri for a in task.outlets] == [a.uri for a in task.inlets]
    assert task.outlets[0].uri.startswith("file://") and task.outlets[0].uri.endswith("/created_users")
