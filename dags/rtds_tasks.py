"""What every rtds task of the DAGs shares: the `rtds <stage>` operator, the
settings and connections it runs with, the Airflow Assets the stages read and
write, the stores (one definition: STORES_DEFINED) and the DAGs' default_args.
Not a DAG file (.airflowignore): the DAGs import it, since Airflow puts the DAG
folder on sys.path when it parses a DAG file and when it runs a task.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Asset, BaseHook
from rtds_lineage import operator_lineage
from rtds_notify import failure_notifiers

if TYPE_CHECKING:
    from airflow.sdk import XComArg
    from airflow.sdk.definitions.mappedoperator import MappedOperator

# Settings are read from the environment when a DAG is parsed, with rtds's own defaults,
# so a deployment or a test can run the pipeline on topics and stores of its own, and the
# tasks' assets name what the tasks really use.

# The rtds binary; the bash command reads it from the environment.
RTDS_BIN = os.environ.get("RTDS_BIN", "rtds")
PARQUET_OUT = os.environ.get("RTDS_OUT", "/tmp/rtds/parquet")
# The Delta table's directory (its own: a Delta table and Parquet files must not share one).
DELTA_OUT = os.environ.get("RTDS_DELTA_OUT", "/tmp/rtds/delta")
# Kafka topics, fixed when the DAG is parsed: a test can isolate its runs.
RAW_TOPIC = os.environ.get("RTDS_RAW_TOPIC", "users_raw")
CREATED_TOPIC = os.environ.get("RTDS_CREATED_TOPIC", "users_created")
# Also the topic dlq_alert's watcher reads.
DLQ_TOPIC = os.environ.get("RTDS_DLQ_TOPIC", "users_dlq")
# Where the signups_per_minute DAG's windows go: a topic, and a PostgreSQL table keyed by window and group.
SIGNUPS_TOPIC = os.environ.get("RTDS_SIGNUPS_TOPIC", "users_signups_per_minute")
SIGNUPS_TABLE = os.environ.get("RTDS_SIGNUPS_TABLE", "signups_per_minute")
# Where the loads write: they reach the stages through the inherited environment;
# read here only to name the assets (the defaults are rtds's own).
KEYSPACE = os.environ.get("RTDS_KEYSPACE", "spark_streams")
PG_SCHEMA = os.environ.get("RTDS_PG_SCHEMA", "public")
TABLE = os.environ.get("RTDS_TABLE", "created_users")

# What every DAG's tasks get unless the DAG says otherwise ({**DEFAULT_ARGS, ...}); each DAG
# sets its own execution_timeout, for how long its tasks may run.
DEFAULT_ARGS = {
    "owner": "rtds",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
    # A task that failed for good tells whom RTDS_FAILURE_NOTIFIER names (dags/rtds_notify.py).
    "on_failure_callback": failure_notifiers(),
}


def summaries_of(*task_ids: str) -> str:
    """A template of the JSON summary lines the tasks `task_ids` pushed to XCom in this run, one a line.

    Each stage prints a JSON summary as its last stdout line, which BashOperator pushes to XCom,
    with the Kafka offset ranges it consumed and produced.

    Given a list of task ids, xcom_pull returns a list whatever it finds: the value of every map index
    of a mapped task (one share or many), None for a task that pushed nothing (a task skipped),
    which `select` drops. (Given one task id, it would return a bare value when it finds exactly one.)
    """
    return f"{{{{ ti.xcom_pull(task_ids={list(task_ids)!r}) | select | join('\\n') }}}}"


# Assets, for lineage (the UI's graph) and so that DAGs can be scheduled on them.
# Their URIs name a logical cluster, "rtds", not an address: the addresses come
# from the connections at run time and differ between the local stack and
# docker-compose, while an asset is the same data wherever it runs. Each URI is
# already in the form the providers' normalizers give (kafka://server/topic;
# postgres://host:port/database/schema/table, port included), so it is one asset
# with or without the provider installed. Names default to the URIs: unique, and
# none is dlq_alert's asset, named after the topic (`users_dlq` by default), which
# its Kafka watcher updates on each dead letter (see DLQ below).
def kafka_topic(topic: str) -> Asset:
    """A Kafka topic of the pipeline as an Asset."""
    return Asset(uri=f"kafka://rtds/{topic}")


RAW = kafka_topic(RAW_TOPIC)
CREATED = kafka_topic(CREATED_TOPIC)
# The dead-letter topic as data the stages write. Deliberately not dlq_alert's
# asset (`users_dlq` by default): a task's outlet updates its asset on every
# successful run, so that asset would schedule dlq_alert after each transform and
# load, dead letters or not. dlq_alert stays scheduled by its watcher, on real
# dead letters.
DLQ = kafka_topic(DLQ_TOPIC)
SIGNUPS = kafka_topic(SIGNUPS_TOPIC)
SIGNUPS_STORED = Asset(uri=f"postgres://rtds:5432/rtds/{PG_SCHEMA}/{SIGNUPS_TABLE}")


@dataclass(frozen=True)
class Store:
    """A store `rtds load --sink <name>` writes to, and what a task needs to reach it."""

    # The sink's name, as rtds knows it (RTDS_SINK): user_automation's load_<name> task.
    name: str
    # The data it holds, the outlet of its load.
    asset: Asset
    # Addresses, rendered from Airflow connections. Nothing secret: rendered fields
    # are stored and shown in the UI.
    connection_env: dict[str, str] = field(default_factory=dict)
    # Environment variable -> the Airflow connection whose URI (password included)
    # RtdsOperator adds at run time, never templated.
    secret_uris: dict[str, str] = field(default_factory=dict)
    # A sink that writes files: the directory its load gets as RTDS_OUT.
    out: str | None = None


# The stores, in the order the trigger form and the DAG list them. Adding a sink is one entry here:
# SINKS, STORES, CONNECTION_ENV and SECRET_URIS below are derived from it (rtds must know the sink,
# and the connections it names must exist: scripts/stack/airflow_connections.py).
STORES_DEFINED = (
    Store(
        "cassandra",
        Asset(uri=f"cassandra://rtds/{KEYSPACE}/{TABLE}"),
        connection_env={"RTDS_CASSANDRA_NODES": "{{ conn.rtds_cassandra.host }}:{{ conn.rtds_cassandra.port }}"},
    ),
    Store(
        "postgres",
        Asset(uri=f"postgres://rtds:5432/rtds/{PG_SCHEMA}/{TABLE}"),
        # The URL holds a password.
        secret_uris={"RTDS_POSTGRES_URL": "rtds_postgres"},
    ),
    # A load writes part-*.parquet files into RTDS_OUT/<table>; no connection.
    Store("parquet", Asset(uri=f"file://{os.path.abspath(PARQUET_OUT)}/{TABLE}"), out=PARQUET_OUT),
    # A Delta table at RTDS_OUT/<table>, one commit a batch, exactly once; no connection.
    Store("delta", Asset(uri=f"file://{os.path.abspath(DELTA_OUT)}/{TABLE}"), out=DELTA_OUT),
)
# The store the signups_per_minute DAG upserts its windows into (a sink that holds keyed rows).
SIGNUPS_STORE = next(store for store in STORES_DEFINED if store.name == "postgres")
# The sinks' names, in order (user_automation's trigger form offers them).
SINKS = [store.name for store in STORES_DEFINED]
# Sink name -> its asset.
STORES = {store.name: store.asset for store in STORES_DEFINED}
# Sink name -> the directory a file sink writes under (RTDS_OUT of its load).
OUTS = {store.name: store.out for store in STORES_DEFINED if store.out}
# What rtds reconcile reads to check a run: the topics' offsets and dead letters, each store's rows.
RECONCILED = [RAW, CREATED, DLQ, *STORES.values()]
# Kafka's address, rendered from the Airflow connection rtds_kafka (AIRFLOW_CONN_* locally).
KAFKA_ENV = {"RTDS_BROKERS": "{{ conn.rtds_kafka.host }}:{{ conn.rtds_kafka.port }}"}
# The schema registry's URL, from the connection rtds_schema_registry, for a run whose form chose
# the Avro format (`params.format`): a JSON run needs no registry, nor the connection.
REGISTRY_ENV = {
    "RTDS_SCHEMA_REGISTRY_URL": "{{ conn.rtds_schema_registry.extra_dejson.url"
    " if params.get('format') == 'avro' else '' }}"
}
# Every address a task may need: Kafka's, the registry's and every store's.
CONNECTION_ENV = {
    **KAFKA_ENV,
    **REGISTRY_ENV,
    **{k: v for store in STORES_DEFINED for k, v in store.connection_env.items()},
}
# Environment variable -> the Airflow connection whose URI it gets at run time: every store's.
SECRET_URIS = {k: v for store in STORES_DEFINED for k, v in store.secret_uris.items()}


class RtdsOperator(BashOperator):
    """A BashOperator whose command also gets connection URIs, passwords included.

    They are added to the subprocess's environment at run time, after templates
    are rendered, never to `env`: so they are not stored with the rendered fields
    nor shown in the UI. BashOperator logs the command, not its environment, and
    the SDK masks the connection's password in the task log.
    """

    def __init__(self, *, secret_uris: dict[str, str] | None = None, share: str | None = None, **kwargs):
        # A mapped task's instance is built with the share it was expanded to (rtds(..., shares=...)):
        # RTDS_SHARE joins the environment before templates are rendered, so it is in the rendered env.
        if share is not None:
            kwargs["env"] = {**(kwargs.get("env") or {}), "RTDS_SHARE": share}
        super().__init__(**kwargs)
        # Environment variable -> the Airflow connection whose URI it gets.
        self.secret_uris = dict(SECRET_URIS if secret_uris is None else secret_uris)

    def get_env(self, context) -> dict:
        env = super().get_env(context)
        for name, conn_id in self.secret_uris.items():
            env[name] = BaseHook.get_connection(conn_id).get_uri()
        return env

    def get_openlineage_facets_on_start(self):
        """OpenLineage's inputs and outputs of the task: its inlets and outlets (dags/rtds_lineage.py)."""
        return operator_lineage(self.inlets, self.outlets)


def rtds(
    stage: str,
    extra_env: dict[str, str] | None = None,
    *,
    connection_env: dict[str, str] = CONNECTION_ENV,
    shares: XComArg | None = None,
    **kwargs,
) -> RtdsOperator | MappedOperator:
    """A task running `rtds <stage>` with its settings in the environment.

    `connection_env` and `secret_uris` (default: all the stores' connections)
    let a task that talks to Kafka only need nothing else; `inlets`/`outlets`
    and any other operator argument pass through.

    With `shares` (the XCom of a task returning ["1/N", ..., "N/N"]), the task
    is mapped over them: N instances, each with its share in RTDS_SHARE and
    the same environment besides, connections and PostgreSQL URL included.
    """
    arguments = {
        "task_id": kwargs.pop("task_id", stage),
        # The plain command: parameters and connection settings reach it as RTDS_* environment
        # variables, never inside the shell string, so no value can be executed by the shell.
        "bash_command": f'"$RTDS_BIN" {stage}',
        "env": {"RTDS_BIN": RTDS_BIN, "RTDS_LOG_FORMAT": "json", **connection_env, **(extra_env or {})},
        "append_env": True,
        "do_xcom_push": True,
        **kwargs,
    }
    if shares is None:
        return RtdsOperator(**arguments)
    return RtdsOperator.partial(**arguments).expand(share=shares)
