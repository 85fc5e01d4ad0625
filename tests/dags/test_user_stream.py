"""user_stream: the real-time DAG's shape."""

import os


def test_stream_dag(dagbag):
    dag = dagbag.dags["user_stream"]
    assert dag.task_ids == ["stream"]
    task = dag.get_task("stream")
    assert task.env["RTDS_DURATION"] == "{{ params.duration }}s"
    assert dag.params.get_param("duration").value == 60
    # The ingest's own default window, bounded as `--linger` is (0 to 10 s).
    linger = dag.params.get_param("linger_ms")
    assert (linger.value, linger.schema["minimum"], linger.schema["maximum"]) == (25, 0, 10_000)
    assert task.retries >= 1 and task.execution_timeout is not None


def test_stream_is_the_shared_rtds_task_on_kafka_only(dagbag):
    task = dagbag.dags["user_stream"].get_task("stream")
    assert type(task).__name__ == "RtdsOperator" and task.bash_command == '"$RTDS_BIN" ingest'
    raw = os.environ.get("RTDS_RAW_TOPIC", "users_raw")
    assert task.env == {
        "RTDS_BIN": os.environ.get("RTDS_BIN", "rtds"),
        "RTDS_LOG_FORMAT": "json",
        "RTDS_BROKERS": "{{ conn.rtds_kafka.host }}:{{ conn.rtds_kafka.port }}",
        "RTDS_TOPIC": raw,
        "RTDS_SOURCE": "{{ params.source }}",
        "RTDS_DURATION": "{{ params.duration }}s",
        "RTDS_RATE": "{{ params.rate }}",
        "RTDS_LINGER": "{{ params.linger_ms }}ms",
        "RTDS_SEED": "{{ ts_nodash | replace('T', '') }}",
    }
    assert task.append_env is True and task.do_xcom_push is True
    # No store: no Cassandra address rendered, no PostgreSQL connection fetched at run time.
    assert task.secret_uris == {}
    assert task.inlets == []
    assert [asset.uri for asset in task.outlets] == [f"kafka://rtds/{raw}"]
