"""replay_dlq: send dead letters back once their cause is fixed, then prove the replay run.

Triggered from the form: the stage whose dead letters go back (and, for the load, the store),
a reason (a regular expression over the dead letter's reason), a time range, how often a
record may come back, and `dry_run`, on by default: the first run counts what would go back,
by reason (the replay task's summary), and stops there. A real run replays (`rtds replay`:
each dead letter once per selection, progress under a consumer group), runs the stage they
failed in over exactly the replayed records (the load after the transform when the transform's
dead letters went back), and reconciles the replay run like any other.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

# Shared with the other DAGs (dags/rtds_tasks.py).
from rtds_tasks import (
    CREATED,
    CREATED_TOPIC,
    DEFAULT_ARGS,
    DLQ,
    DLQ_TOPIC,
    KAFKA_ENV,
    OUTS,
    RAW,
    RAW_TOPIC,
    RECONCILED,
    SINKS,
    STORES,
    rtds,
    summaries_of,
)

# Where a file sink writes, by sink name, for the load the form chose (empty for the others).
OUT_OF_SINK = "{{ " + json.dumps(OUTS) + ".get(params.sink, '') }}"
# An RFC 3339 time, or empty.
TIME = r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})$"

with DAG(
    dag_id="replay_dlq",
    description="Replay dead letters once their cause is fixed, then reconcile the replay run",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(minutes=30)},
    params={
        "stage": Param("load", type="string", enum=["transform", "load"], description="Whose dead letters go back"),
        "sink": Param(SINKS[0], type="string", enum=SINKS, description="The load's store (stage load)"),
        "reason": Param(
            "",
            type="string",
            maxLength=512,
            description="Only dead letters whose reason matches this regular expression (empty: all)",
        ),
        "from_time": Param("", type="string", pattern=TIME, description="Sent to the DLQ at or after (RFC 3339)"),
        "to_time": Param("", type="string", pattern=TIME, description="Sent to the DLQ before (RFC 3339)"),
        "max_replays": Param(
            3, type="integer", minimum=1, maximum=100, description="Leave records replayed this often in the DLQ"
        ),
        "dry_run": Param(True, type="boolean", description="Count what would go back, by reason, and stop"),
    },
    tags=["rtds"],
) as dag:
    replay = rtds(
        "replay",
        {
            "RTDS_DLQ_TOPIC": DLQ_TOPIC,
            "RTDS_REPLAY_STAGE": "{{ params.stage }}",
            "RTDS_REPLAY_SINK": "{{ params.sink if params.stage == 'load' else '' }}",
            "RTDS_REPLAY_REASON": "{{ params.reason }}",
            "RTDS_FROM_TIME": "{{ params.from_time }}",
            "RTDS_TO_TIME": "{{ params.to_time }}",
            "RTDS_MAX_REPLAYS": "{{ params.max_replays }}",
            # rtds parses a bool from the environment as the literal true or false.
            "RTDS_DRY_RUN": "{{ 'true' if params.dry_run else 'false' }}",
        },
        # Kafka only.
        connection_env=KAFKA_ENV,
        secret_uris={},
        inlets=[DLQ],
        outlets=[RAW, CREATED],
    )

    @task.branch
    def then(params: dict) -> list[str]:
        """Nothing after a dry run; else the stage the records failed in (and the load after a transform)."""
        if params["dry_run"]:
            return []
        return ["transform", "load"] if params["stage"] == "transform" else ["load"]

    transform = rtds(
        "transform",
        {
            "RTDS_INPUT_TOPIC": RAW_TOPIC,
            "RTDS_OUTPUT_TOPIC": CREATED_TOPIC,
            "RTDS_DLQ_TOPIC": DLQ_TOPIC,
            "RTDS_FROM_SUMMARY": summaries_of("replay"),
        },
        inlets=[RAW],
        outlets=[CREATED, DLQ],
    )
    load = rtds(
        "load",
        {
            "RTDS_SINK": "{{ params.sink }}",
            "RTDS_OUT": OUT_OF_SINK,
            "RTDS_INPUT_TOPIC": CREATED_TOPIC,
            "RTDS_DLQ_TOPIC": DLQ_TOPIC,
            # What the transform made of the replayed records, or the replayed rows themselves.
            "RTDS_FROM_SUMMARY": "{{ ti.xcom_pull(task_ids='transform') or ti.xcom_pull(task_ids='replay') }}",
        },
        inlets=[CREATED],
        outlets=[*STORES.values(), DLQ],
        trigger_rule="none_failed_min_one_success",
    )
    # The replay stands for the stage before the one it fed: ingest for the transform's dead
    # letters, the transform for the load's.
    reconcile = rtds(
        "reconcile",
        {
            "RTDS_SUMMARIES": summaries_of("replay", "transform", "load"),
            "RTDS_FROM": "{{ 'ingest' if params.stage == 'transform' else 'transform' }}",
        },
        inlets=RECONCILED,
        trigger_rule="none_failed_min_one_success",
    )

    replay >> then() >> [transform, load]
    transform >> load >> reconcile
