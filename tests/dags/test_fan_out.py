"""user_automation fans out: `parallelism` N maps the transform and every chosen load
over N shares of the run's Kafka partitions (RTDS_SHARE K/N), each load share reads
every transform share's summary, and reconcile gets every share's. Its shape and
rendering (loaded without a database), then a real run with `airflow dags test`."""

from __future__ import annotations

import copy
import json
import sqlite3
import time
from contextlib import closing
from types import SimpleNamespace

import pytest
from test_user_automation import (
    LOADS,
    cql,
    dags_test,
    drop_run_data,
    isolated_env,
    psql,
    succeeded_and_reconciled,
)

MAPPED = ["transform", *LOADS]
# Connections as the template context's `conn` gives them (attribute access on a dict in Jinja).
CONN = {"rtds_kafka": {"host": "kafka", "port": 9092}, "rtds_cassandra": {"host": "cassandra", "port": 9042}}


def summary(stage: str, share: int | None = None) -> str:
    return json.dumps({"stage": stage, "share": share})


def test_parallelism_is_a_form_param_from_1_to_12_default_1(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags["user_automation"].params
    parallelism = params.get_param("parallelism")
    assert parallelism.value == 1
    assert parallelism.schema["type"] == "integer"
    assert (parallelism.schema["minimum"], parallelism.schema["maximum"]) == (1, 12)
    assert "share" in parallelism.description
    for good in [1, 3, 12]:
        copy.deepcopy(params)["parallelism"] = good
    for bad in [0, 13, -1, "3", 2.5, None]:
        with pytest.raises(ParamValidationError):
            copy.deepcopy(params)["parallelism"] = bad


def run_shares(dag, conf: dict) -> list[str]:
    """What the `shares` task returns in a run triggered with `conf`."""
    params = copy.deepcopy(dag.params)
    for key, value in conf.items():
        params[key] = value
    return dag.get_task("shares").python_callable(params=params.validate())


def test_the_shares_task_splits_the_run_in_parallelism_shares(dagbag):
    dag = dagbag.dags["user_automation"]
    assert run_shares(dag, {}) == ["1/1"]
    assert run_shares(dag, {"parallelism": 3}) == ["1/3", "2/3", "3/3"]
    assert run_shares(dag, {"parallelism": 12}) == [f"{k}/12" for k in range(1, 13)]


def test_the_transform_and_every_load_are_mapped_over_the_shares(dagbag):
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    dag = dagbag.dags["user_automation"]
    for task_id in MAPPED:
        task = dag.get_task(task_id)
        assert task.is_mapped, task_id
        assert task.operator_class.__name__ == "RtdsOperator", task_id
        # Only the share is expanded (one instance per share), over the shares task's XCom.
        (name, value), *more = task.expand_input.value.items()
        assert name == "share" and not more, task_id
        assert isinstance(value, PlainXComArg) and value.operator.task_id == "shares", task_id
    # The rest runs once.
    for task_id in ["ingest", "shares", "choose_sinks", "reconcile"]:
        assert not dag.get_task(task_id).is_mapped, task_id
    # A load not chosen is skipped by the branch before it expands; reconcile runs anyway.
    choose = dag.get_task("choose_sinks")
    assert choose.downstream_task_ids == set(LOADS)
    assert choose.python_callable(params={"sinks": ["postgres"]}) == ["load_postgres"]
    assert dag.get_task("reconcile").trigger_rule == "none_failed_min_one_success"


class TaskInstance:
    """The task instance of a template context: its map index, and the XComs of this run (by task, by map index)."""

    def __init__(self, map_index: int, pushed: dict[str, list]):
        self.map_index, self.pushed, self.task = map_index, pushed, None

    def xcom_pull(self, task_ids, key="return_value", **kwargs):
        assert key == "return_value", key
        if isinstance(task_ids, str):  # The mapping's argument: the unmapped `shares` task's list.
            (value,) = self.pushed[task_ids]
            return value
        # As Airflow 3's does, given a list of task ids: every map index's value, None for a task without any.
        return [value for task_id in task_ids for value in self.pushed.get(task_id, [None])]


def rendered_env(dag, task_id: str, map_index: int, conf: dict, pushed: dict[str, list]) -> dict[str, str]:
    """The env instance `map_index` of a mapped task runs with, rendered as a worker renders it in a run
    triggered with `conf` whose tasks pushed `pushed`: expanded, unmapped, its templates rendered."""
    ti = TaskInstance(map_index, {"shares": [run_shares(dag, conf)], **pushed})
    # A copy: resolving the run's params sets the values of the Params the DAG and its tasks share.
    dag = copy.deepcopy(dag)
    context = {"ti": ti, "dag": dag, "dag_run": SimpleNamespace(conf=conf), "params": {}, "conn": CONN}
    dag.get_task(task_id).render_template_fields(context)
    assert context["task"].is_mapped is False and context["task"].task_id == task_id
    assert context["params"]["parallelism"] == conf.get("parallelism", 1)
    return context["task"].env


def test_rendering_with_parallelism_3_gives_each_instance_its_share(dagbag):
    dag = dagbag.dags["user_automation"]
    conf = {"parallelism": 3}
    transforms = [summary("transform", k) for k in [1, 2, 3]]
    pushed = {"ingest": [summary("ingest")], "transform": transforms}
    for task_id in MAPPED:
        envs = [rendered_env(dag, task_id, i, conf, pushed) for i in range(3)]
        assert [env["RTDS_SHARE"] for env in envs] == ["1/3", "2/3", "3/3"], task_id
        # The rest of the environment is the same for every share, connections rendered.
        rest = [{k: v for k, v in env.items() if k != "RTDS_SHARE"} for env in envs]
        assert rest[0] == rest[1] == rest[2], task_id
        assert rest[0]["RTDS_BROKERS"] == "kafka:9092" and rest[0]["RTDS_CASSANDRA_NODES"] == "cassandra:9042"
        assert "RTDS_POSTGRES_URL" not in rest[0], task_id
    # A transform share reads ingest's summary; every load share reads every transform share's, one a line.
    assert rendered_env(dag, "transform", 1, conf, pushed)["RTDS_FROM_SUMMARY"] == summary("ingest")
    for load in LOADS:
        for i in range(3):
            assert rendered_env(dag, load, i, conf, pushed)["RTDS_FROM_SUMMARY"].split("\n") == transforms, load


def test_with_parallelism_1_one_instance_reads_everything(dagbag):
    dag = dagbag.dags["user_automation"]
    pushed = {"ingest": [summary("ingest")], "transform": [summary("transform", 1)]}
    for task_id in MAPPED:
        env = rendered_env(dag, task_id, 0, {}, pushed)
        assert env["RTDS_SHARE"] == "1/1", task_id
    assert rendered_env(dag, "load_cassandra", 0, {}, pushed)["RTDS_FROM_SUMMARY"] == summary("transform", 1)


def test_every_share_gets_the_postgres_url_at_run_time(dagbag, monkeypatch):
    from airflow.sdk import BaseHook, Connection

    connection = Connection(conn_id="rtds_postgres", conn_type="postgres", host="db", login="u", password="pw")
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(lambda cls, conn_id: connection))
    mapped = dagbag.dags["user_automation"].get_task("load_postgres")
    for share in ["1/3", "2/3", "3/3"]:
        env = mapped.unmap({"share": share}).get_env({})
        assert env["RTDS_SHARE"] == share and env["RTDS_POSTGRES_URL"].startswith("postgres://u:pw@db")
        assert env["RTDS_SINK"] == "postgres"
    assert "RTDS_POSTGRES_URL" not in mapped.partial_kwargs["env"]


def test_reconcile_gets_every_share_of_every_stage(dagbag):
    import jinja2

    summaries = dagbag.dags["user_automation"].get_task("reconcile").env["RTDS_SUMMARIES"]
    pushed = {
        "ingest": [summary("ingest")],
        "transform": [summary("transform", k) for k in [1, 2, 3]],
        # Two stores chosen: load_parquet was skipped and pushed nothing.
        "load_cassandra": [summary("load_cassandra", k) for k in [1, 2, 3]],
        "load_postgres": [summary("load_postgres", k) for k in [1, 2, 3]],
    }
    rendered = jinja2.Environment().from_string(summaries).render(ti=TaskInstance(-1, pushed))
    assert rendered.split("\n") == [line for lines in pushed.values() for line in lines], rendered


# A real run, three shares: its own keyspace, schema, topics (three partitions each) and Parquet directory.
COUNT = 3000
PARALLELISM = 3


@pytest.fixture(scope="module")
def fan_out_run(airflow_env, tmp_path_factory):
    name, env = isolated_env("fanout", airflow_env, tmp_path_factory)
    # Reconcile's 16 summaries in its rendered env, whole (else Airflow stores a truncated string).
    env["AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH"] = "100000"
    conf = {
        "count": COUNT,
        "seed": int(time.time()) % 100000,
        "parallelism": PARALLELISM,
        "sinks": ["cassandra", "postgres", "parquet", "delta"],
    }
    try:
        started = time.monotonic()
        result = dags_test(env, conf)
        print(f"airflow dags test with parallelism {PARALLELISM}: {time.monotonic() - started:.0f}s")
        yield name, env, result
    finally:
        drop_run_data(name)


def this_run(env: dict, name: str) -> tuple[list[tuple], dict[tuple[str, int], dict], dict[tuple[str, int], dict]]:
    """The run's task instances (task_id, map_index, state), and by (task_id, map_index) its rendered
    fields and the JSON summaries its rtds tasks pushed to XCom."""
    with closing(sqlite3.connect(f"{env['AIRFLOW_HOME']}/airflow.db")) as db:
        rendered = db.execute(
            "SELECT task_id, map_index, run_id, rendered_fields FROM rendered_task_instance_fields"
            " WHERE dag_id = 'user_automation'"
        ).fetchall()
        (run_id,) = {run for task_id, _, run, fields in rendered if task_id == "ingest" and f'"{name}_raw"' in fields}
        tis = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = 'user_automation' AND run_id = ?",
            (run_id,),
        ).fetchall()
        xcoms = db.execute(
            "SELECT task_id, map_index, value FROM xcom"
            " WHERE dag_id = 'user_automation' AND run_id = ? AND key = 'return_value'",
            (run_id,),
        ).fetchall()
    fields = {(task_id, index): json.loads(f) for task_id, index, run, f in rendered if run == run_id}
    # An XCom value is stored JSON-encoded; an rtds task's is its summary line, a string.
    rtds_tasks = {"ingest", *MAPPED, "reconcile"}
    summaries = {(task, index): json.loads(json.loads(value)) for task, index, value in xcoms if task in rtds_tasks}
    return tis, fields, summaries


def partitions(summary: dict, topic: str) -> set[int]:
    return {r["partition"] for r in summary["consumed"] if r["topic"] == topic and r["count"] > 0}


def test_a_real_run_with_parallelism_3_fans_out_and_reconciles(fan_out_run):
    name, env, result = fan_out_run
    report = succeeded_and_reconciled(result)
    # Reconcile merged the shares of each stage: every record of the run, in every partition.
    details = {check["check"]: check["detail"] for check in report["checks"]}
    for stage in MAPPED:
        assert details[f"{stage}: every record accounted for"].startswith(f"in {COUNT} = out "), details
    for upstream, stage, topic in [("ingest", "transform", "raw"), *(("transform", load, "created") for load in LOADS)]:
        read = details[f"{upstream} -> {stage}: {name}_{topic}"]
        assert read == f"read all {COUNT} record(s) in 3 partition(s)", details
    assert int(psql(f"SELECT count(*) FROM {name}.created_users")) == COUNT
    assert int(cql(f"SELECT count(*) FROM {name}.created_users")) == COUNT

    tis, fields, summaries = this_run(env, name)
    shares = [f"{k}/{PARALLELISM}" for k in range(1, PARALLELISM + 1)]
    instances = {task_id: sorted(i for t, i, _ in tis if t == task_id) for task_id in {t for t, _, _ in tis}}
    for task_id in MAPPED:
        # PARALLELISM instances, all succeeded, each with its share.
        assert instances[task_id] == list(range(PARALLELISM)), (task_id, tis)
        assert {state for t, _, state in tis if t == task_id} == {"success"}, (task_id, tis)
        assert [fields[task_id, i]["env"]["RTDS_SHARE"] for i in range(PARALLELISM)] == shares, task_id
    for task_id in ["ingest", "shares", "choose_sinks", "reconcile"]:
        assert instances[task_id] == [-1], (task_id, tis)
    # Each load share read every transform share's summary; reconcile got every share's of every stage.
    transforms = [summaries["transform", i] for i in range(PARALLELISM)]
    for load in LOADS:
        for i in range(PARALLELISM):
            lines = fields[load, i]["env"]["RTDS_FROM_SUMMARY"].split("\n")
            assert [json.loads(line) for line in lines] == transforms, (load, i)
    lines = fields["reconcile", -1]["env"]["RTDS_SUMMARIES"].split("\n")
    expected = [summaries["ingest", -1]]
    expected += [summaries[task_id, i] for task_id in MAPPED for i in range(PARALLELISM)]
    assert [json.loads(line) for line in lines] == expected
    # The shares split the records: share K reads the partitions p with p % N == K - 1 (here one each),
    # every partition upstream produced is read by one share, and together they read every record.
    for task_id, topic in [("transform", f"{name}_raw"), *((load, f"{name}_created") for load in LOADS)]:
        read = [partitions(summaries[task_id, i], topic) for i in range(PARALLELISM)]
        assert all(read) and all(p % PARALLELISM == i for i, share in enumerate(read) for p in share), (task_id, read)
        assert set().union(*read) == {0, 1, 2}, (task_id, read)
        total = sum(summaries[task_id, i]["in"] for i in range(PARALLELISM))
        upstream = COUNT if task_id == "transform" else sum(transform["out"] for transform in transforms)
        assert total == upstream, (task_id, total, upstream)
