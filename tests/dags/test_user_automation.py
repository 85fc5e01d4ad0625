"""user_automation: its shape (loaded without a database), then real runs with
`airflow dags test` against the local stack."""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from conftest import DAGS, ROOT

LOADS = ["load_cassandra", "load_postgres", "load_parquet", "load_delta"]


def instance(task, share: str = "1/1"):
    """A task as it runs: a mapped one (transform, the loads) as the instance given `share`, else itself."""
    return task.unmap({"share": share}) if task.is_mapped else task


# The template of the JSON summaries some tasks pushed to XCom in this run, one a line (summaries_of).
SUMMARIES_OF = re.compile(r"\{\{ ti\.xcom_pull\(task_ids=(\[[^]]*\])\) \| select \| join\('\\n'\) \}\}")


def summaries_of(template: str) -> list[str]:
    """The task ids whose summaries `template` joins, one a line."""
    match = SUMMARIES_OF.fullmatch(template)
    assert match, template
    return ast.literal_eval(match.group(1))


def test_dags_load_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"user_automation", "user_stream"} <= set(dagbag.dag_ids)


def test_the_shared_module_is_imported_not_parsed_as_a_dag_file(dagbag):
    # .airflowignore: the dag-processor does not parse rtds_tasks.py nor rtds_notify.py; the DAGs import them.
    assert {stat.file for stat in dagbag.dagbag_stats} == {
        "delta_maintenance.py",
        "dlq_alert.py",
        "replay_dlq.py",
        "signups_per_minute.py",
        "user_automation.py",
        "user_stream.py",
    }
    assert dagbag.dags["user_automation"].get_task("ingest").__class__.__module__ == "rtds_tasks"


def uris(assets) -> set[str]:
    return {asset.uri for asset in assets}


def test_each_task_declares_the_assets_it_reads_and_writes(dagbag):
    dag = dagbag.dags["user_automation"]
    raw, created, dlq = (f"kafka://rtds/{topic}" for topic in topics(dag).values())
    out = os.path.abspath(os.environ.get("RTDS_OUT", "/tmp/rtds/parquet"))
    delta = os.path.abspath(os.environ.get("RTDS_DELTA_OUT", "/tmp/rtds/delta"))
    stores = {
        "load_cassandra": f"cassandra://rtds/{os.environ.get('RTDS_KEYSPACE', 'spark_streams')}/created_users",
        "load_postgres": f"postgres://rtds:5432/rtds/{os.environ.get('RTDS_PG_SCHEMA', 'public')}/created_users",
        "load_parquet": f"file://{out}/created_users",
        "load_delta": f"file://{delta}/created_users",
    }
    expected = {
        "ingest": (set(), {raw}),
        "transform": ({raw}, {created, dlq}),
        **{load: ({created}, {store, dlq}) for load, store in stores.items()},
        "shares": (set(), set()),
        "choose_sinks": (set(), set()),
        # reconcile reads every topic and store to check the run.
        "reconcile": ({raw, created, dlq, *stores.values()}, set()),
    }
    assert {t.task_id: (uris(t.inlets), uris(t.outlets)) for t in dag.tasks} == expected
    # Every asset is a plain Asset named by its URI: one name, one URI, no clash between them.
    for task in dag.tasks:
        for asset in [*task.inlets, *task.outlets]:
            assert type(asset).__name__ == "Asset" and asset.name == asset.uri, (task.task_id, asset)


def test_the_dlq_asset_is_the_topic_dlq_alert_watches_but_not_its_asset(dagbag):
    """The tasks' DLQ outlet and dlq_alert's watched asset do not clash (an asset's name and URI are each
    unique), and a task's outlet, updated on every success, does not schedule dlq_alert: only dead letters do."""
    sys.path.insert(0, str(DAGS))
    import dlq_alert
    import rtds_tasks

    watched = dlq_alert.users_dlq
    assert rtds_tasks.DLQ.name != watched.name and rtds_tasks.DLQ.uri != watched.uri
    (watcher,) = watched.watchers
    if "RTDS_DLQ_TOPIC" not in os.environ:  # Else the pipeline runs on a topic of its own.
        assert watcher.trigger.kwargs["topics"] == [rtds_tasks.DLQ_TOPIC]
        assert rtds_tasks.DLQ.uri == "kafka://rtds/users_dlq"
    every_outlet = {uri for dag in dagbag.dags.values() for task in dag.tasks for uri in uris(task.outlets)}
    assert watched.uri not in every_outlet
    assert list(dagbag.dags["dlq_alert"].timetable.asset_condition.objects) == [watched]


def test_tasks_and_dependencies(dagbag):
    dag = dagbag.dags["user_automation"]
    assert set(dag.task_ids) == {"ingest", "shares", "transform", "choose_sinks", *LOADS, "reconcile"}
    assert dag.get_task("ingest").downstream_task_ids == {"transform"}
    # The run's shares, which the transform and every load are mapped over.
    assert dag.get_task("shares").downstream_task_ids == {"transform", *LOADS}
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
    assert params.get_param("sinks").schema["items"]["enum"] == ["cassandra", "postgres", "parquet", "delta"]
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    for bad in [{"count": 0}, {"count": 2_000_000}, {"source": "$(touch /tmp/x)"}, {"sinks": ["mysql"]}]:
        candidate = ParamsDict(params)
        with pytest.raises(ParamValidationError):
            for key, value in bad.items():
                candidate[key] = value
            candidate.validate()


def test_exactly_once_is_a_boolean_of_the_form_off_by_default(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags["user_automation"].params
    exactly_once = params.get_param("exactly_once")
    assert exactly_once.value is False
    assert exactly_once.schema["type"] == "boolean"
    for bad in ["true", "yes", 1]:
        with pytest.raises(ParamValidationError):
            copy.deepcopy(params)["exactly_once"] = bad


def rendered(dag, conf: dict, variable: str = "RTDS_EXACTLY_ONCE", task_id: str = "transform") -> str:
    """`variable` of a task's environment as Airflow renders it for a run triggered with `conf`."""
    params = copy.deepcopy(dag.params)  # The DAG's own Params stay untouched.
    for key, value in conf.items():
        params[key] = value
    params.validate()
    task = instance(dag.get_task(task_id))
    return task.render_template(task.env[variable], {"params": params})


def rendered_exactly_once(dag, conf: dict) -> str:
    return rendered(dag, conf)


def test_the_format_reaches_ingest_and_transform_as_environment_json_by_default(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    dag = dagbag.dags["user_automation"]
    for conf, want in [({}, "json"), ({"format": "avro"}, "avro")]:
        assert rendered(dag, conf, "RTDS_FORMAT", "ingest") == want
        assert rendered(dag, conf, "RTDS_OUTPUT_FORMAT") == want
    # A JSON run needs no registry: its URL renders empty without the connection.
    assert rendered(dag, {}, "RTDS_SCHEMA_REGISTRY_URL", "ingest") == ""
    with pytest.raises(ParamValidationError):
        copy.deepcopy(dag.params)["format"] = "xml"


def test_the_transform_gets_exactly_once_in_its_environment_as_true_or_false(dagbag):
    dag = dagbag.dags["user_automation"]
    assert rendered_exactly_once(dag, {}) == "false"
    assert rendered_exactly_once(dag, {"exactly_once": False}) == "false"
    assert rendered_exactly_once(dag, {"exactly_once": True}) == "true"
    # Only the transform runs in transactions.
    for task in dag.tasks:
        if task.task_id != "transform":
            assert "RTDS_EXACTLY_ONCE" not in (getattr(instance(task), "env", None) or {}), task.task_id


def test_retries_and_timeouts(dagbag):
    for task in dagbag.dags["user_automation"].tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay >= timedelta(seconds=30), task.task_id
        assert task.execution_timeout is not None, task.task_id


def test_no_bash_command_holds_templates_or_params(dagbag):
    for dag_id in ["user_automation", "user_stream", "delta_maintenance", "replay_dlq", "signups_per_minute"]:
        for task in map(instance, dagbag.dags[dag_id].tasks):
            command = getattr(task, "bash_command", None)
            if command is None:
                continue
            assert "{{" not in command and "params" not in command, f"{dag_id}.{task.task_id}: {command}"
            stages = "ingest|transform|load|reconcile|maintain|replay|aggregate"
            assert re.fullmatch(rf'"\$RTDS_BIN" ({stages})', command), command
            assert task.append_env is True
            assert any("params." in str(v) for v in task.env.values()) or task.task_id != "ingest"


def test_each_stage_reads_what_the_previous_one_produced(dagbag):
    dag = dagbag.dags["user_automation"]
    assert summaries_of(instance(dag.get_task("transform")).env["RTDS_FROM_SUMMARY"]) == ["ingest"]
    for load in LOADS:
        assert summaries_of(instance(dag.get_task(load)).env["RTDS_FROM_SUMMARY"]) == ["transform"], load
    for task in map(instance, dag.tasks):
        env = getattr(task, "env", None) or {}
        # A bounded run reads its upstream's offsets, never as a consumer group.
        assert not {"RTDS_GROUP", "RTDS_FOLLOW"} & set(env), task.task_id


def topics(dag) -> dict[str, str]:
    """The topics each task of user_automation is given, checked to be the same from stage to stage."""
    ingest, transform = dag.get_task("ingest").env, instance(dag.get_task("transform")).env
    assert transform["RTDS_INPUT_TOPIC"] == ingest["RTDS_TOPIC"]
    for load in LOADS:
        env = instance(dag.get_task(load)).env
        assert env["RTDS_INPUT_TOPIC"] == transform["RTDS_OUTPUT_TOPIC"], load
        assert env["RTDS_DLQ_TOPIC"] == transform["RTDS_DLQ_TOPIC"], load
    return {"raw": ingest["RTDS_TOPIC"], "created": transform["RTDS_OUTPUT_TOPIC"], "dlq": transform["RTDS_DLQ_TOPIC"]}


def test_topics_flow_from_stage_to_stage(dagbag):
    assert topics(dagbag.dags["user_automation"]) == {
        "raw": os.environ.get("RTDS_RAW_TOPIC", "users_raw"),
        "created": os.environ.get("RTDS_CREATED_TOPIC", "users_created"),
        "dlq": os.environ.get("RTDS_DLQ_TOPIC", "users_dlq"),
    }


def test_topics_come_from_the_environment_the_dag_is_parsed_in(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "RTDS_RAW_TOPIC": "t_raw",
        "RTDS_CREATED_TOPIC": "t_created",
        "RTDS_DLQ_TOPIC": "t_dlq",
    }
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import user_automation as ua; "
        "print(json.dumps([ua.RAW_TOPIC, ua.CREATED_TOPIC, ua.DLQ_TOPIC]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(DAGS)], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == ["t_raw", "t_created", "t_dlq"]


def test_reconcile_runs_rtds_reconcile_over_every_summary_of_the_run(dagbag):
    from airflow.providers.standard.operators.bash import BashOperator

    reconcile = dagbag.dags["user_automation"].get_task("reconcile")
    assert isinstance(reconcile, BashOperator)
    assert reconcile.bash_command == '"$RTDS_BIN" reconcile'
    assert reconcile.trigger_rule == "none_failed_min_one_success"
    assert summaries_of(reconcile.env["RTDS_SUMMARIES"]) == ["ingest", "transform", *LOADS]
    # It reads the stores back: the connection settings are there too, the PostgreSQL URL at run time.
    assert {"RTDS_BROKERS", "RTDS_CASSANDRA_NODES"} <= set(reconcile.env)
    assert reconcile.secret_uris == {"RTDS_POSTGRES_URL": "rtds_postgres"}


def test_no_template_renders_the_postgres_url(dagbag):
    """Rendered fields are stored and shown in the UI: the URL and its password are never templated."""
    for dag_id in ["user_automation", "user_stream", "dlq_alert"]:
        for task in map(instance, dagbag.dags[dag_id].tasks):
            for field in task.template_fields:
                value = str(getattr(task, field, ""))
                for secret in ["RTDS_POSTGRES_URL", "rtds_postgres", "get_uri", "password"]:
                    assert secret not in value, f"{dag_id}.{task.task_id}.{field}: {value}"
    for task in map(instance, dagbag.dags["user_automation"].tasks):
        if task.task_id not in {"shares", "choose_sinks"}:
            assert task.secret_uris == {"RTDS_POSTGRES_URL": "rtds_postgres"}, task.task_id


def test_the_postgres_url_reaches_the_command_at_run_time(dagbag, monkeypatch):
    from airflow.sdk import BaseHook, Connection

    # A password the secrets masker would miss in a URL, where it is percent-encoded.
    password = "p@ss/w:rd"
    connection = Connection(
        conn_id="rtds_postgres",
        conn_type="postgres",
        host="db",
        login="rtds",
        password=password,
        port=5432,
        schema="rtds",
    )
    asked = []
    monkeypatch.setattr(
        BaseHook, "get_connection", classmethod(lambda cls, conn_id: asked.append(conn_id) or connection)
    )
    task = instance(dagbag.dags["user_automation"].get_task("load_postgres"))
    env = task.get_env({})
    assert asked == ["rtds_postgres"]
    url = urlsplit(env["RTDS_POSTGRES_URL"])
    assert (url.scheme, url.username, url.hostname, url.port, url.path) == ("postgres", "rtds", "db", 5432, "/rtds")
    assert url.password == quote(password, safe="")
    assert env["RTDS_SINK"] == "postgres" and env["RTDS_BIN"] == task.env["RTDS_BIN"]
    assert "RTDS_POSTGRES_URL" not in task.env


def test_reconcile_summaries_render_one_a_line_and_nothing_for_loads_not_chosen(dagbag):
    import jinja2

    summaries = dagbag.dags["user_automation"].get_task("reconcile").env["RTDS_SUMMARIES"]
    # What each task pushed, by map index: two shares of the transform and of load_parquet, the only load chosen.
    pushed = {
        "ingest": ['{"stage":"ingest"}'],
        "transform": ['{"stage":"transform","share":1}', '{"stage":"transform","share":2}'],
        "load_parquet": ['{"stage":"load","share":1}', '{"stage":"load","share":2}'],
    }

    class TI:
        def xcom_pull(self, task_ids):
            # As Airflow 3's does, given a list of task ids: every map index's value, None for a task without any.
            assert isinstance(task_ids, list), task_ids
            return [value for task_id in task_ids for value in pushed.get(task_id, [None])]

    rendered = jinja2.Environment().from_string(summaries).render(ti=TI())
    assert rendered.splitlines() == [line for values in pushed.values() for line in values], rendered
    assert "None" not in rendered


def dags_test(env: dict, conf: dict, dag_id: str = "user_automation") -> subprocess.CompletedProcess:
    result = subprocess.run(
        [env["AIRFLOW_BIN"], "dags", "test", dag_id, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # Kept as a test artifact: the whole run's log.
    Path(env["AIRFLOW_HOME"], "dags-test.log").write_text(result.stdout + result.stderr)
    return result


def stack(part: str, command: str, check: bool = True) -> str:
    """Run a command of scripts/stack/<part>.sh (postgres_psql, cassandra_cql, kafka_cli) against the local stack."""
    script = f"ROOT={ROOT}; . scripts/stack/lib.sh; . scripts/stack/{part}.sh; {command}"
    return subprocess.run(["bash", "-c", script], cwd=ROOT, check=check, capture_output=True, text=True).stdout.strip()


def psql(sql: str, check: bool = True) -> str:
    return stack("postgres", f'postgres_psql -qAt -c "{sql}"', check)


def cql(query: str, check: bool = True) -> str:
    return stack("cassandra", f'cassandra_cql "{query}"', check)


def isolated_env(prefix: str, airflow_env: dict, tmp_path_factory) -> tuple[str, dict]:
    """A name of its own and the environment of a run that uses only its own keyspace, schema,
    topics and Parquet directory (all named after it): exact counts, whatever ran before."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    env = {
        **airflow_env,
        "RTDS_KEYSPACE": name,
        "RTDS_PG_SCHEMA": name,
        "RTDS_RAW_TOPIC": f"{name}_raw",
        "RTDS_CREATED_TOPIC": f"{name}_created",
        "RTDS_DLQ_TOPIC": f"{name}_dlq",
        "RTDS_OUT": str(tmp_path_factory.mktemp(prefix) / "parquet"),
        "RTDS_DELTA_OUT": str(tmp_path_factory.mktemp(prefix) / "delta"),
    }
    return name, env


def drop_run_data(name: str) -> None:
    """Drop what a run isolated under `name` left: schema, keyspace, topics (best effort)."""
    psql(f"DROP SCHEMA IF EXISTS {name} CASCADE", check=False)
    cql(f"DROP KEYSPACE IF EXISTS {name}", check=False)
    for topic in [f"{name}_raw", f"{name}_created", f"{name}_dlq"]:
        stack(
            "kafka",
            "kafka_cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:$KAFKA_PORT"
            f" --delete --if-exists --topic {topic}",
            check=False,
        )


def reconcile_reports(output: str) -> list[dict]:
    """The JSON reports `rtds reconcile` printed, as they appear in the task log lines of `airflow dags test`."""
    reports = []
    for line in output.splitlines():
        start = line.find("{")
        if start < 0 or '"reconcile"' not in line:
            continue
        try:
            report, _ = json.JSONDecoder().raw_decode(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(report, dict) and report.get("stage") == "reconcile" and "checks" in report:
            reports.append(report)
    return reports


@pytest.fixture(scope="module")
def real_run(airflow_env, tmp_path_factory):
    """One real run of the whole DAG, its name, environment and `airflow dags test` result.

    A keyspace, schema, topics and Parquet directory of its own: exact counts, whatever ran before.
    """
    name, env = isolated_env("dagtest", airflow_env, tmp_path_factory)
    # Reconcile's five summaries in its rendered env, whole (else Airflow stores a truncated string).
    env["AIRFLOW__CORE__MAX_TEMPLATED_FIELD_LENGTH"] = "100000"
    try:
        result = dags_test(
            env,
            # Exactly once: the transform in Kafka transactions, the loads reading read_committed
            # (make demo runs the default, at least once, end to end).
            # Avro on both topics, through the stack's schema registry.
            {
                "count": 2000,
                "seed": int(time.time()) % 100000,
                "sinks": ["cassandra", "postgres", "parquet", "delta"],
                "exactly_once": True,
                "format": "avro",
            },
        )
        yield name, env, result
    finally:
        drop_run_data(name)


def succeeded_and_reconciled(result: subprocess.CompletedProcess) -> dict:
    """The run succeeded and its last rtds reconcile report (after any retry, from the run's log) holds: that report."""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    finished = [line for line in result.stdout.splitlines() if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], finished
    reports = reconcile_reports(result.stdout + result.stderr)
    assert reports, "no rtds reconcile report in the output of airflow dags test"
    assert reports[-1]["ok"] is True, reports[-1]
    return reports[-1]


def test_a_real_run_fills_every_store_and_reconciles(real_run):
    name, env, result = real_run
    succeeded_and_reconciled(result)
    # The run was Avro: the ingest wrote it with a registered schema.
    assert re.search(r'"stage":\s*"ingest".*"format":\s*"avro".*"schema_id":\s*\d+', result.stdout + result.stderr)
    assert int(psql(f"SELECT count(*) FROM {name}.created_users")) == 2000
    assert int(cql(f"SELECT count(*) FROM {name}.created_users")) == 2000
    files = list(Path(env["RTDS_OUT"], "created_users").glob("part-*.parquet"))
    assert files, "no Parquet file written"
    assert list(Path(env["RTDS_DELTA_OUT"], "created_users", "_delta_log").glob("*.json")), "no Delta commit"


def test_a_real_run_stores_and_logs_no_postgres_password(real_run):
    name, env, result = real_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # The stack's RTDS_POSTGRES_URL (conftest's stack_env()), which the rtds_postgres connection is.
    url = urlsplit(env["AIRFLOW_CONN_RTDS_POSTGRES"])
    assert url.password and len(url.password) >= 8, "the stack's PostgreSQL URL has no real password"
    secrets = {url.password, quote(url.password, safe="")}
    # The URL itself, even with its password masked (masking misses a password that must be
    # percent-encoded in a URL): nothing else in a rendered field names PostgreSQL's address.
    address = f"@{url.hostname}:{url.port}"

    db = Path(env["AIRFLOW_HOME"], "airflow.db")
    assert db.is_file(), db
    with closing(sqlite3.connect(db)) as connection:
        rendered = connection.execute(
            "SELECT task_id, run_id, rendered_fields FROM rendered_task_instance_fields"
            " WHERE dag_id = 'user_automation'"
        ).fetchall()
        xcoms = [value for (value,) in connection.execute("SELECT value FROM xcom WHERE dag_id = 'user_automation'")]
    # This run's rendered fields are there (so the check below sees them), templates rendered.
    runs = {run_id for task_id, run_id, fields in rendered if f'"{name}_raw"' in fields and task_id == "ingest"}
    assert len(runs) == 1, runs
    this_run = {task_id: json.loads(fields) for task_id, run_id, fields in rendered if run_id in runs}
    assert {"ingest", "transform", *LOADS, "reconcile"} <= set(this_run), set(this_run)
    assert this_run["ingest"]["env"]["RTDS_COUNT"] == "2000"
    assert this_run["transform"]["env"]["RTDS_EXACTLY_ONCE"] == "true"
    assert json.loads(this_run["transform"]["env"]["RTDS_FROM_SUMMARY"])["stage"] == "ingest"
    kafka = json.loads(env["AIRFLOW_CONN_RTDS_KAFKA"])
    assert this_run["reconcile"]["env"]["RTDS_BROKERS"] == f"{kafka['host']}:{kafka['port']}"
    for task_id, run_id, fields in rendered:
        for secret in secrets:
            assert secret not in fields, f"the PostgreSQL password is in the rendered fields of {task_id} ({run_id})"
        assert address not in fields, f"the PostgreSQL URL is in the rendered fields of {task_id} ({run_id})"
        assert "RTDS_POSTGRES_URL" not in (json.loads(fields).get("env") or {}), task_id
    assert xcoms, "no XCom stored"
    for value in xcoms:
        assert not any(secret in str(value) for secret in secrets), "the PostgreSQL password is in an XCom"

    # Every task log file, and all `airflow dags test` printed (it runs the tasks in process).
    logs = {
        str(path): path.read_text(errors="replace")
        for path in Path(env["AIRFLOW_HOME"], "logs").rglob("*")
        if path.is_file()
    }
    logs["OpenLineage events"] = lineage_file(env).read_text()
    logs["airflow dags test stdout"] = result.stdout
    logs["airflow dags test stderr"] = result.stderr
    assert reconcile_reports(result.stdout + result.stderr), "the tasks' output is not in what it printed"
    for source, text in logs.items():
        assert not any(secret in text for secret in secrets), f"the PostgreSQL password is in {source}"


def lineage_file(env: dict) -> Path:
    """Where the runs' OpenLineage events go (conftest's airflow_env: the file transport)."""
    return Path(json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])["log_file_path"])


def test_a_real_run_sends_openlineage_events_naming_each_tasks_data(real_run):
    name, env, result = real_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    events = [json.loads(line) for line in lineage_file(env).read_text().splitlines()]
    raw, created, dlq = (("kafka://rtds", f"{name}_{topic}") for topic in ("raw", "created", "dlq"))
    stores = {
        "cassandra": ("cassandra://rtds", f"{name}.created_users"),
        "postgres": ("postgres://rtds:5432", f"rtds.{name}.created_users"),
        "parquet": ("file", f"{env['RTDS_OUT']}/created_users"),
        "delta": ("file", f"{env['RTDS_DELTA_OUT']}/created_users"),
    }
    expected = {
        "ingest": (set(), {raw}),
        "transform": ({raw}, {created, dlq}),
        **{f"load_{sink}": ({created}, {store, dlq}) for sink, store in stores.items()},
        "reconcile": ({raw, created, dlq, *stores.values()}, set()),
    }

    def datasets(event: dict, side: str) -> set[tuple[str, str]]:
        return {(d["namespace"], d["name"]) for d in event.get(side, [])}

    # This run's task events: each task's name, and the run's own topics among what it names.
    ours = [
        e
        for e in events
        if e["job"]["namespace"] == "rtds"
        and e["job"]["name"].startswith("user_automation.")
        and any(n.startswith(f"{name}_") or name in n for _, n in datasets(e, "inputs") | datasets(e, "outputs"))
    ]
    for task_id, (inputs, outputs) in expected.items():
        task_events = [e for e in ours if e["job"]["name"] == f"user_automation.{task_id}"]
        assert {"START", "COMPLETE"} <= {e["eventType"] for e in task_events}, (task_id, task_events)
        for event in task_events:
            assert datasets(event, "inputs") == inputs, (task_id, event["eventType"], event.get("inputs"))
            assert datasets(event, "outputs") == outputs, (task_id, event["eventType"], event.get("outputs"))


def test_shell_metacharacters_in_a_param_execute_nothing(airflow_env, tmp_path):
    pwned = Path(f"/tmp/rtds-pwned-{uuid.uuid4().hex}")
    canary = tmp_path / "canary"
    canary.mkdir()
    evil = f"$(touch {pwned}); rm -rf {canary}; `touch {pwned}`"
    result = dags_test(airflow_env, {"count": 10, "api_seed": evil, "sinks": ["parquet"]})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert not pwned.exists(), "a parameter was executed by the shell"
    assert canary.exists(), "a parameter was executed by the shell"


def test_the_default_seed_follows_the_runs_date(dagbag):
    import jinja2

    seed = dagbag.dags["user_automation"].get_task("ingest").env["RTDS_SEED"]

    class Run:
        run_after = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)

    def render(params: dict, logical_date) -> str:
        return jinja2.Environment().from_string(seed).render(params=params, logical_date=logical_date, dag_run=Run())

    day = datetime(2026, 3, 7, tzinfo=UTC)
    assert render({"seed": None}, day) == "20260307"
    assert render({"seed": None}, day) == render({"seed": None}, datetime(2026, 3, 7, 23, 59, tzinfo=UTC))
    assert render({"seed": None}, datetime(2026, 3, 8, tzinfo=UTC)) == "20260308", "the next day: new users"
    assert render({"seed": None}, None) == "20260309", "a run without a logical date: the date it ran after"
    assert render({"seed": 42}, day) == "42", "a seed given in the form wins"
    assert dagbag.dags["user_automation"].params["seed"] is None


def test_reconcile_gets_the_forms_dlq_budget(dagbag):
    import jsonschema

    dag = dagbag.dags["user_automation"]
    assert dag.get_task("reconcile").env["RTDS_MAX_DLQ_SHARE"] == "{{ params.max_dlq_share }}"
    assert dag.params["max_dlq_share"] == "1%"
    schema = dag.params.get_param("max_dlq_share").schema
    for ok in ["1%", "0", "0.05", "100%", "2.5%", "1"]:
        jsonschema.validate(ok, schema)
    for bad in ["abc", "101%", "2", "-1%", "1%; rm -rf /"]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
