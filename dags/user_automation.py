"""user_automation: the classic tutorial's DAG, with rtds doing the work.

ingest >> transform >> load_<sink> (the sinks chosen in the trigger form) >> reconcile.
Each task runs the plain `rtds <stage>` command; parameters and connection
settings reach it as RTDS_* environment variables, never inside the shell
string, so no value can be executed by the shell. Each stage prints a JSON
summary as its last stdout line, which BashOperator pushes to XCom; reconcile
fails the run if any stage's records in != out + dlq.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task

SINKS = ["cassandra", "postgres", "parquet"]
# The rtds binary; the bash command reads it from the environment.
RTDS_BIN = os.environ.get("RTDS_BIN", "rtds")
PARQUET_OUT = os.environ.get("RTDS_OUT", "/tmp/rtds/parquet")

# Connection settings, rendered from the Airflow connections rtds_kafka,
# rtds_cassandra and rtds_postgres (AIRFLOW_CONN_* locally).
CONNECTION_ENV = {
    "RTDS_BROKERS": "{{ conn.rtds_kafka.host }}:{{ conn.rtds_kafka.port }}",
    "RTDS_CASSANDRA_NODES": "{{ conn.rtds_cassandra.host }}:{{ conn.rtds_cassandra.port }}",
    "RTDS_POSTGRES_URL": "{{ conn.rtds_postgres.get_uri() }}",
}


def rtds(stage: str, extra_env: dict[str, str] | None = None, **kwargs) -> BashOperator:
    """A task running `rtds <stage>` with its settings in the environment."""
    return BashOperator(
        task_id=kwargs.pop("task_id", stage),
        bash_command=f'"$RTDS_BIN" {stage}',
        env={"RTDS_BIN": RTDS_BIN, "RTDS_LOG_FORMAT": "json", **CONNECTION_ENV, **(extra_env or {})},
        append_env=True,
        do_xcom_push=True,
        **kwargs,
    )


with DAG(
    dag_id="user_automation",
    description="Random users: randomuser.me (or the seeded generator) -> Kafka -> DataFusion SQL -> stores",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "rtds",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "count": Param(1000, type="integer", minimum=1, maximum=1_000_000, description="Users to ingest"),
        "source": Param(
            "generate", type="string", enum=["generate", "randomuser"], description="Where users come from"
        ),
        "seed": Param(42, type="integer", minimum=0, description="Seed of the built-in generator"),
        "api_seed": Param(
            None, type=["null", "string"], maxLength=256, description="randomuser.me's own seed (optional)"
        ),
        "sinks": Param(
            SINKS,
            type="array",
            items={"type": "string", "enum": SINKS},
            uniqueItems=True,
            minItems=1,
            description="Stores to load",
        ),
    },
    tags=["rtds"],
) as dag:
    ingest = rtds(
        "ingest",
        {
            "RTDS_SOURCE": "{{ params.source }}",
            "RTDS_COUNT": "{{ params.count }}",
            "RTDS_SEED": "{{ params.seed }}",
            "RTDS_API_SEED": "{{ params.api_seed or '' }}",
        },
    )
    transform = rtds("transform")
    loads = {sink: rtds("load", {"RTDS_SINK": sink, "RTDS_OUT": PARQUET_OUT}, task_id=f"load_{sink}") for sink in SINKS}

    @task.branch
    def choose_sinks(params: dict) -> list[str]:
        """Run only the loads the trigger form asked for."""
        return [f"load_{sink}" for sink in params["sinks"]]

    @task(trigger_rule="none_failed_min_one_success")
    def reconcile(ti=None) -> dict:
        """Every stage must account for each record: in == out + dlq (+ filtered)."""
        stages = ["ingest", "transform", *(f"load_{s}" for s in SINKS)]
        report, problems = {}, []
        for task_id, raw in zip(stages, ti.xcom_pull(task_ids=stages), strict=True):
            if raw is None:
                continue  # a load that was not chosen
            summary = json.loads(raw)
            report[task_id] = summary
            accounted = summary.get("out", 0) + summary.get("dlq", 0) + summary.get("filtered", 0)
            if task_id == "ingest":
                accounted = summary.get("out", 0) + summary.get("failed", 0)
            if summary.get("in") != accounted:
                problems.append(f"{task_id}: in={summary.get('in')} but out+dlq={accounted}")
        if problems:
            raise ValueError("records lost: " + "; ".join(problems))
        return report

    ingest >> transform >> choose_sinks() >> list(loads.values()) >> reconcile()
