"""user_automation: its shape (loaded without a database), then real runs with
`airflow dags test` against the local stack."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import ROOT

LOADS = ["load_cassandra", "load_postgres", "load_parquet"]


def test_dags_load_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"user_automation", "user_stream"} <= set(dagbag.dag_ids)


def test_tasks_and_dependencies(dagbag):
    dag = dagbag.dags["user_automation"]
    assert set(dag.task_ids) == {"ingest", "transform", "choose_sinks", *LOADS, "reconcile"}
    assert dag.get_task("ingest").downstream_task_ids == {"transform"}
    assert dag.get_task("transform").downstream_task_ids == {"choose_sinks"}
    assert dag.get_task("choose_sinks").downstream_task_ids == set(LOADS)
    for load in LOADS:
        assert dag.get_task(load).downstream_task_ids == {"reconcile"}
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    assert dag.catchup is False


def test_params_validate_like_the_trigger_form(dagbag):
    params = dagbag.dags["user_automation"].params
    count = params.get_param("count")
    assert count.value == 1000
    assert count.schema["minimum"] == 1 and count.schema["maximum"] == 1_000_000
    assert params.get_param("source").schema["enum"] == ["generate", "randomuser"]
    assert params.get_param("sinks").schema["items"]["enum"] == ["cassandra", "postgres", "parquet"]
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    for bad in [{"count": 0}, {"count": 2_000_000}, {"source": "$(touch /tmp/x)"}, {"sinks": ["mysql"]}]:
        candidate = ParamsDict(params)
        with pytest.raises(ParamValidationError):
            for key, value in bad.items():
                candidate[key] = value
            candidate.validate()


def test_retries_and_timeouts(dagbag):
    for task in dagbag.dags["user_automation"].tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay >= timedelta(seconds=30), task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_no_bash_command_holds_templates_or_params(dagbag):
    for dag_id in ["user_automation", "user_stream"]:
        for task in dagbag.dags[dag_id].tasks:
            command = getattr(task, "bash_command", None)
            if command is None:
                continue
            assert "{{" not in command and "params" not in command, f"{dag_id}.{task.task_id}: {command}"
            assert re.fullmatch(r'"\$RTDS_BIN" (ingest|transform|load)', command), command
            assert task.append_env is True
            assert any("params." in str(v) for v in task.env.values()) or task.task_id != "ingest"


def dags_test(env: dict, conf: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [env["AIRFLOW_BIN"], "dags", "test", "user_automation", "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # Kept as a test artifact: the whole run's log.
    Path(env["AIRFLOW_HOME"], "dags-test.log").write_text(result.stdout + result.stderr)
    return result


def psql(sql: str) -> str:
    script = f'. scripts/stack/lib.sh; . scripts/stack/postgres.sh; postgres_psql -qAt -c "{sql}"'
    return subprocess.run(
        ["bash", "-c", f"ROOT={ROOT}; {script}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def cql(query: str) -> str:
    script = f'. scripts/stack/lib.sh; . scripts/stack/cassandra.sh; cassandra_cql "{query}"'
    return subprocess.run(
        ["bash", "-c", f"ROOT={ROOT}; {script}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_real_run_fills_every_store_and_reconciles(airflow_env):
    started = time.time()
    before_pg = int(psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'created_users'") or 0)
    result = dags_test(
        airflow_env, {"count": 2000, "seed": int(started) % 100000, "sinks": ["cassandra", "postgres", "parquet"]}
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    finished = [line for line in result.stdout.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], finished
    recent = int(psql(f"SELECT count(*) FROM created_users WHERE loaded_at >= to_timestamp({started})"))
    assert recent >= 2000, f"only {recent} rows loaded into PostgreSQL by the run"
    assert before_pg >= 0
    cassandra_rows = int(cql("SELECT count(*) FROM spark_streams.created_users"))
    assert cassandra_rows >= 2000
    files = list(Path(airflow_env["RTDS_OUT"], "created_users").glob("part-*.parquet"))
    assert files, "no Parquet file written"


def test_shell_metacharacters_in_a_param_execute_nothing(airflow_env, tmp_path):
    pwned = Path(f"/tmp/rtds-pwned-{uuid.uuid4().hex}")
    canary = tmp_path / "canary"
    canary.mkdir()
    evil = f"$(touch {pwned}); rm -rf {canary}; `touch {pwned}`"
    result = dags_test(airflow_env, {"count": 10, "api_seed": evil, "sinks": ["parquet"]})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert not pwned.exists(), "a parameter was executed by the shell"
    assert canary.exists(), "a parameter was executed by the shell"
