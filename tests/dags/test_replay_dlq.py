"""The replay_dlq DAG and the failure notifier: the form and the branch without a database, then
real `airflow dags test` runs against the local stack: dead letters of a PostgreSQL load whose
table refused every row, the cause fixed, a dry run that changes nothing, a replay that fills the
table and reconciles; and a failing run that the file notifier records."""

from __future__ import annotations

import json
import subprocess
import uuid

from test_user_automation import dags_test, instance, psql, rendered

from conftest import rtds_bin, stack_env

USERS = 40


def test_the_form_reaches_replay_as_environment_and_dry_run_stops_there(dagbag):
    dag = dagbag.dags["replay_dlq"]
    assert dag.params["dry_run"] is True, "a dry run first"
    replay = instance(dag.get_task("replay"))
    assert replay.bash_command == '"$RTDS_BIN" replay'
    conf = {"stage": "load", "sink": "postgres", "reason": "check constraint", "dry_run": False}
    assert rendered(dag, conf, "RTDS_REPLAY_REASON", "replay") == "check constraint"
    assert rendered(dag, conf, "RTDS_DRY_RUN", "replay") == "false"
    assert rendered(dag, {**conf, "stage": "transform"}, "RTDS_REPLAY_SINK", "replay") == ""
    assert rendered(dag, conf, "RTDS_FROM", "reconcile") == "transform"
    assert rendered(dag, {**conf, "stage": "transform"}, "RTDS_FROM", "reconcile") == "ingest"
    assert rendered(dag, {**conf, "sink": "delta"}, "RTDS_OUT", "load").endswith("delta")
    then = dag.get_task("then").python_callable
    assert then({"dry_run": True, "stage": "load"}) == []
    assert then({"dry_run": False, "stage": "load"}) == ["load"]
    assert then({"dry_run": False, "stage": "transform"}) == ["transform", "load"]


def test_the_notifier_is_chosen_by_one_setting(dagbag):
    import rtds_notify

    assert rtds_notify.failure_notifiers("") == []
    (notifier,) = rtds_notify.failure_notifiers("file:/tmp/failures.jsonl")
    assert isinstance(notifier, rtds_notify.FileNotifier) and notifier.path == "/tmp/failures.jsonl"
    (mail,) = rtds_notify.failure_notifiers("smtp:ops@example.com, oncall@example.com")
    assert type(mail).__name__ == "SmtpNotifier"
    for bad in ["file:", "slack:#ops", "ops@example.com"]:
        try:
            rtds_notify.failure_notifiers(bad)
        except ValueError as e:
            assert "RTDS_FAILURE_NOTIFIER" in str(e)
        else:
            raise AssertionError(f"{bad!r} accepted")


def rtds(*args: str, env: dict | None = None) -> dict:
    done = subprocess.run(
        [rtds_bin(), *args], check=False, capture_output=True, text=True, env=env or stack_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_replay_run_fills_the_store_and_reconciles_and_a_failure_is_notified(airflow_env, tmp_path):
    name = f"replay_{uuid.uuid4().hex[:8]}"
    raw, created, dlq = f"{name}_raw", f"{name}_created", f"{name}_dlq"
    rtds("ingest", "--source", "generate", "--count", str(USERS), "--seed", "77", "--topic", raw)
    transformed = rtds("transform", "--input-topic", raw, "--output-topic", created, "--dlq-topic", dlq)
    assert transformed["out"] == USERS, transformed
    # A load of nothing makes the table; then the table refuses every row: each goes to the DLQ.
    load = ["load", "--sink", "postgres", "--dlq-topic", dlq, "--pg-schema", name]
    rtds(*load, "--input-topic", f"{name}_empty", "--group", f"{name}_e")
    psql(f"ALTER TABLE {name}.created_users ADD CONSTRAINT refuse_all CHECK (email IS NULL) NOT VALID")
    refused = rtds(*load, "--input-topic", created, "--group", f"{name}_g")
    assert refused["dlq"] == USERS, refused
    env = {
        **airflow_env,
        "RTDS_RAW_TOPIC": raw,
        "RTDS_CREATED_TOPIC": created,
        "RTDS_DLQ_TOPIC": dlq,
        "RTDS_PG_SCHEMA": name,
        "RTDS_FAILURE_NOTIFIER": f"file:{tmp_path / 'failures.jsonl'}",
    }
    try:
        conf = {"stage": "load", "sink": "postgres", "reason": "refuse_all"}
        dry = dags_test(env, conf, "replay_dlq")
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
        assert psql(f"SELECT count(*) FROM {name}.created_users") == "0", "a dry run writes nothing"
        psql(f"ALTER TABLE {name}.created_users DROP CONSTRAINT refuse_all")
        real = dags_test(env, {**conf, "dry_run": False}, "replay_dlq")
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
        assert psql(f"SELECT count(*) FROM {name}.created_users") == str(USERS)
        assert not (tmp_path / "failures.jsonl").exists(), "nothing failed"
        # A reason that is no regular expression: the replay task fails (after its retry), and says so.
        bad = dags_test(env, {**conf, "reason": "(", "dry_run": False}, "replay_dlq")
        assert bad.returncode != 0
        (line,) = (tmp_path / "failures.jsonl").read_text().splitlines()
        failure = json.loads(line)
        assert (failure["dag_id"], failure["task_id"]) == ("replay_dlq", "replay"), failure
    finally:
        psql(f"DROP SCHEMA IF EXISTS {name} CASCADE", check=False)
