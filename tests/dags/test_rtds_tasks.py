"""dags/rtds_tasks.py, what the DAGs share: the stores, defined once (STORES_DEFINED) and
found the same in every list derived from it and in the DAG; the default_args; the DLQ
topic, which dlq_alert's watcher reads from the same setting as the stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from test_user_automation import instance

from conftest import DAGS


@pytest.fixture(scope="module")
def rtds_tasks():
    # As the DAGs import it: the DAG folder on sys.path.
    sys.path.insert(0, str(DAGS))
    import rtds_tasks

    return rtds_tasks


def test_every_store_is_in_every_list_derived_from_the_one_definition(rtds_tasks):
    names = [store.name for store in rtds_tasks.STORES_DEFINED]
    assert len(set(names)) == len(names), names
    assert rtds_tasks.SINKS == names
    assert list(rtds_tasks.STORES) == names
    for store in rtds_tasks.STORES_DEFINED:
        assert rtds_tasks.STORES[store.name] is store.asset, store.name
        assert store.connection_env.items() <= rtds_tasks.CONNECTION_ENV.items(), store.name
        assert store.secret_uris.items() <= rtds_tasks.SECRET_URIS.items(), store.name
    # Nothing but Kafka's address, the registry's and the stores' is there: each other variable is one
    # store's, a store of SINKS.
    owners = {}
    for store in rtds_tasks.STORES_DEFINED:
        for name in [*store.connection_env, *store.secret_uris]:
            shared = {**rtds_tasks.KAFKA_ENV, **rtds_tasks.REGISTRY_ENV}
            assert name not in owners and name not in shared, f"{name}: {owners.get(name)}, {store.name}"
            owners[name] = store.name
    assert set(rtds_tasks.CONNECTION_ENV) == set(rtds_tasks.KAFKA_ENV) | set(rtds_tasks.REGISTRY_ENV) | {
        name for store in rtds_tasks.STORES_DEFINED for name in store.connection_env
    }
    assert rtds_tasks.CONNECTION_ENV.items() >= rtds_tasks.KAFKA_ENV.items()
    assert set(rtds_tasks.SECRET_URIS) == {name for store in rtds_tasks.STORES_DEFINED for name in store.secret_uris}
    assert set(owners.values()) <= set(rtds_tasks.SINKS)
    # A secret is fetched at run time, never rendered: not in the rendered environment too.
    assert not set(rtds_tasks.SECRET_URIS) & set(rtds_tasks.CONNECTION_ENV)
    # One asset per store.
    assert len({asset.uri for asset in rtds_tasks.STORES.values()}) == len(names)


def test_the_dag_offers_and_loads_every_store_and_no_other(dagbag, rtds_tasks):
    dag = dagbag.dags["user_automation"]
    sinks = dag.params.get_param("sinks")
    assert sinks.value == rtds_tasks.SINKS
    assert sinks.schema["items"]["enum"] == rtds_tasks.SINKS
    loads = {task.task_id for task in dag.tasks if task.task_id.startswith("load_")}
    assert loads == {f"load_{sink}" for sink in rtds_tasks.SINKS}
    assert dag.get_task("choose_sinks").downstream_task_ids == loads
    for sink, asset in rtds_tasks.STORES.items():
        load = instance(dag.get_task(f"load_{sink}"))
        assert load.env["RTDS_SINK"] == sink
        assert asset.uri in {outlet.uri for outlet in load.outlets}, sink
        # Every store's connections: the addresses rendered, the secrets fetched at run time.
        assert load.env.items() >= rtds_tasks.CONNECTION_ENV.items(), sink
        assert load.secret_uris == rtds_tasks.SECRET_URIS, sink


def test_each_dag_gets_the_shared_default_args_and_its_own_bounds(dagbag, rtds_tasks):
    # No RTDS_FAILURE_NOTIFIER here: no notifier (tests/dags/test_replay_dlq.py sets one).
    assert rtds_tasks.DEFAULT_ARGS == {
        "owner": "rtds",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": [],
    }
    minutes = timedelta(minutes=1)
    expected = {
        "user_automation": ("rtds", 2, minutes, 30 * minutes),
        "user_stream": ("rtds", 1, timedelta(seconds=30), 10 * minutes),
        "dlq_alert": ("rtds", 1, timedelta(seconds=30), 5 * minutes),
        "delta_maintenance": ("rtds", 1, timedelta(seconds=30), 60 * minutes),
        "replay_dlq": ("rtds", 1, timedelta(seconds=30), 30 * minutes),
        "signups_per_minute": ("rtds", 1, timedelta(seconds=30), 30 * minutes),
    }
    assert set(expected) == set(dagbag.dag_ids)
    for dag_id, values in expected.items():
        for task in dagbag.dags[dag_id].tasks:
            actual = (task.owner, task.retries, task.retry_delay, task.execution_timeout)
            assert actual == values, f"{dag_id}.{task.task_id}"
            if task.is_mapped:
                unmapped = instance(task)
                actual = (unmapped.owner, unmapped.retries, unmapped.retry_delay, unmapped.execution_timeout)
                assert actual == values, f"{dag_id}.{task.task_id} (an instance)"


def test_dlq_alert_watches_the_dlq_topic_the_stages_write(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "RTDS_DLQ_TOPIC": "t_dlq"}
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import dlq_alert, rtds_tasks; "
        "asset = dlq_alert.users_dlq; (watcher,) = asset.watchers; "
        "print(json.dumps([asset.name, asset.uri, watcher.name, watcher.trigger.kwargs['topics'], "
        "rtds_tasks.DLQ.uri, dlq_alert.dag.description]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(DAGS)], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    name, uri, watcher, topics, dlq, description = json.loads(out.stdout.splitlines()[-1])
    assert (name, uri, watcher, topics) == ("t_dlq", "t_dlq", "t_dlq_watcher", ["t_dlq"])
    # The stages' outlet on the same topic, a different asset (it would schedule dlq_alert on every success).
    assert dlq == "kafka://rtds/t_dlq" and dlq not in {name, uri}
    assert description.endswith("t_dlq")
