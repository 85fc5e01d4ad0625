"""dlq_alert: its shape, and for real — a record that reaches users_dlq makes
the triggerer's Kafka watcher schedule a dlq_alert run (api-server, scheduler,
dag-processor and triggerer running; scripts/stack.sh up airflow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from conftest import DAGS, ROOT, call, login, rtds_bin, unpause


def test_the_dag_is_scheduled_by_a_kafka_watcher_on_users_dlq(dagbag):
    dag = dagbag.dags["dlq_alert"]
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert dag.task_ids == ["alert"]
    sys.path.insert(0, str(DAGS))
    import dlq_alert

    (watcher,) = dlq_alert.users_dlq.watchers
    assert watcher.trigger.scheme == "kafka"
    assert watcher.trigger.kwargs["topics"] == ["users_dlq"]
    assert watcher.trigger.kwargs["kafka_config_id"] == "rtds_kafka"
    assert watcher.trigger.kwargs["apply_function"] == "rtds_dlq.dead_letter"


class FakeMessage:
    """Stands in for a confluent-kafka Message (the apply function reads only headers)."""

    def headers(self):
        return [
            ("rtds-error", b"not JSON: EOF"),
            ("rtds-stage", b"transform"),
            ("rtds-source-topic", b"users_raw"),
            ("rtds-source-partition", b"2"),
            ("rtds-source-offset", b"41"),
            ("rtds-other", None),
        ]


def test_the_watcher_names_why_where_and_which_stage():
    sys.path.insert(0, str(ROOT / "airflow" / "plugins"))
    import rtds_dlq

    assert rtds_dlq.dead_letter(FakeMessage()) == {
        "error": "not JSON: EOF",
        "stage": "transform",
        "source": "users_raw/2@41",
    }


def kafka(script: str) -> None:
    prelude = f"ROOT={ROOT}; . scripts/stack/lib.sh; . scripts/stack/kafka.sh; "
    subprocess.run(["bash", "-c", prelude + script], cwd=ROOT, check=True, capture_output=True)


def test_a_dead_letter_triggers_an_alert_run(airflow_server):
    token = login()
    unpause(token, "dlq_alert")
    before = call("GET", "/api/v2/dags/dlq_alert/dagRuns", token)["total_entries"]
    # A broken record through the real transform: it lands in users_dlq.
    topic = f"it_dlq_alert_{uuid.uuid4().hex[:8]}"
    kafka(
        f"kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --create --topic {topic}"
        f" && echo '{{\"truncated\": ' | kafka_cli org.apache.kafka.tools.ConsoleProducer"
        f" --bootstrap-server 127.0.0.1:9092 --topic {topic}"
    )
    out = subprocess.run(
        [rtds_bin(), "transform", "--input-topic", topic, "--group", topic],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.splitlines()[-1])["dlq"] == 1
    deadline = time.time() + 180
    while True:
        runs = call("GET", "/api/v2/dags/dlq_alert/dagRuns?order_by=-run_after", token)
        done = [r for r in runs["dag_runs"] if r["state"] == "success"]
        if runs["total_entries"] > before and done:
            break
        assert time.time() < deadline, f"no dlq_alert run after the dead letter: {runs}"
        time.sleep(3)
