"""The signups_per_minute DAG: its range (the run's hour, or the form's) reaching
`rtds aggregate` as environment without a database, then a real `airflow dags test`
run over the records a test ingested: every one counted in a window of its minute,
in the topic and in PostgreSQL, and reconcile passing."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from test_replay_dlq import rtds
from test_user_automation import dags_test, instance, psql

from conftest import stack_env


def render(dag, variable: str, params: dict, start: datetime, end: datetime) -> str:
    task = instance(dag.get_task("aggregate"))
    from airflow.sdk.execution_time import macros

    context = {"params": params, "data_interval_start": start, "data_interval_end": end, "macros": macros}
    return task.render_template(task.env[variable], context)


def test_the_runs_hour_or_the_forms_range_reaches_aggregate(dagbag):
    dag = dagbag.dags["signups_per_minute"]
    task = instance(dag.get_task("aggregate"))
    assert task.bash_command == '"$RTDS_BIN" aggregate'
    assert task.env["RTDS_SQL"].endswith("dags/sql/signups_per_minute.sql")
    start = datetime(2026, 12, 6, 4, tzinfo=UTC)
    hour = {"from_time": None, "to_time": None}
    assert render(dag, "RTDS_FROM_TIME", hour, start, start + timedelta(hours=1)) == "2026-12-06T04:00:00+00:00"
    assert render(dag, "RTDS_TO_TIME", hour, start, start + timedelta(hours=1)) == "2026-12-06T05:00:00+00:00"
    # A manual run's interval, an instant: the hour before it.
    assert render(dag, "RTDS_FROM_TIME", hour, start, start) == "2026-12-06T03:00:00+00:00"
    form = {"from_time": "2026-12-01T00:00:00Z", "to_time": None}
    assert render(dag, "RTDS_FROM_TIME", form, start, start) == "2026-12-01T00:00:00Z"
    assert {a.uri for a in task.outlets} == {
        "kafka://rtds/users_signups_per_minute",
        "postgres://rtds:5432/rtds/public/signups_per_minute",
        "kafka://rtds/users_dlq",
    }
    assert (task.env["RTDS_SINK"], task.env["RTDS_TABLE"]) == ("postgres", "signups_per_minute")
    # The URL, password included, is added at run time, never rendered.
    assert task.secret_uris == {"RTDS_POSTGRES_URL": "rtds_postgres"} and "RTDS_POSTGRES_URL" not in task.env
    reconcile = instance(dag.get_task("reconcile"))
    assert "aggregate" in reconcile.env["RTDS_SUMMARIES"] and reconcile.upstream_task_ids == {"aggregate"}


def signups(topic: str, produced: list[dict]) -> int:
    """The sum of `signups` over the records of `topic` in the summary's produced ranges."""
    consumer = Consumer({"bootstrap.servers": stack_env()["RTDS_BROKERS"], "group.id": f"t-{uuid.uuid4()}"})
    spans = [s for s in produced if s["topic"] == topic]
    consumer.assign([TopicPartition(topic, s["partition"], s["first"]) for s in spans])
    total, want, deadline = 0, sum(s["count"] for s in spans), time.time() + 60
    seen = 0
    while seen < want and time.time() < deadline:
        m = consumer.poll(1)
        if m is None or m.error():
            continue
        seen += 1
        total += json.loads(m.value())["signups"]
    consumer.close()
    assert seen == want, (seen, want)
    return total


def test_a_real_run_counts_every_record_of_its_range_once(airflow_env):
    name = f"signups_{uuid.uuid4().hex[:8]}"
    raw, out = f"{name}_raw", f"{name}_out"
    before = datetime.now(UTC).isoformat()
    rtds("ingest", "--source", "generate", "--count", "300", "--seed", "5", "--topic", raw)
    time.sleep(0.5)
    after = datetime.now(UTC).isoformat()
    env = {
        **airflow_env,
        "RTDS_RAW_TOPIC": raw,
        "RTDS_SIGNUPS_TOPIC": out,
        "RTDS_SIGNUPS_TABLE": name,
        "RTDS_DLQ_TOPIC": f"{name}_dlq",
    }
    result = dags_test(env, {"from_time": before, "to_time": after}, "signups_per_minute")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summaries = [
        json.JSONDecoder().raw_decode(line[line.index('{"stage":"aggregate"') :])[0]
        for line in (result.stdout + result.stderr).splitlines()
        if '{"stage":"aggregate"' in line and '"windows"' in line
    ]
    assert summaries, "no aggregate summary in the run's log"
    summary = summaries[-1]
    assert summary["in"] == 300 and summary["dlq"] == 0 and summary["windows"] >= 1, summary
    assert signups(out, summary["produced"]) == 300
    assert psql(f"SELECT sum(signups) FROM public.{name}") == "300"
    reconciled = [line for line in (result.stdout + result.stderr).splitlines() if '{"stage":"reconcile"' in line]
    assert reconciled and '"ok":true' in reconciled[-1], reconciled
