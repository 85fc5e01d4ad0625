"""user_stream: the real-time DAG's shape."""


def test_stream_dag(dagbag):
    dag = dagbag.dags["user_stream"]
    assert dag.task_ids == ["stream"]
    task = dag.get_task("stream")
    assert task.env["RTDS_DURATION"] == "{{ params.duration }}s"
    assert dag.params.get_param("duration").value == 60
    assert task.retries >= 1 and task.execution_timeout is not None
