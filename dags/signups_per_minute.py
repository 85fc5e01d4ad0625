"""signups_per_minute: every hour, sign-ups per nationality per minute of the hour
before (dags/sql/signups_per_minute.sql), by `rtds aggregate` over the raw records
stamped in that hour (--from-time/--to-time: no consumer group, nothing committed; a
rerun of an hour emits the same windows, keyed by window and nationality, again),
to a topic and upserted into the PostgreSQL table signups_per_minute (a dashboard's);
then `rtds reconcile` proves the windows equal the same SQL as one batch GROUP BY over
the hour's records. The form's from_time and to_time pick another range.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

# Shared with the other DAGs (dags/rtds_tasks.py).
from rtds_tasks import (
    DEFAULT_ARGS,
    DLQ,
    DLQ_TOPIC,
    KAFKA_ENV,
    RAW,
    RAW_TOPIC,
    SIGNUPS,
    SIGNUPS_STORE,
    SIGNUPS_STORED,
    SIGNUPS_TABLE,
    SIGNUPS_TOPIC,
    rtds,
    summaries_of,
)

# Beside the DAG, so that it travels with the DAG folder.
SQL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql", "signups_per_minute.sql")
# Kafka's and the registry's addresses (Avro raw users are read with its schemas), and the store's
# (its secret URIs, PostgreSQL's URL with its password, are added at run time: RtdsOperator).
ENV = {
    **KAFKA_ENV,
    "RTDS_SCHEMA_REGISTRY_URL": "{{ conn.rtds_schema_registry.extra_dejson.url }}",
    **SIGNUPS_STORE.connection_env,
}
# RFC 3339, as rtds reads times.
TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"

with DAG(
    dag_id="signups_per_minute",
    description="Sign-ups per nationality per minute, an hour at a time",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(minutes=30)},
    params={
        "from_time": Param(
            None, type=["null", "string"], pattern=TIME, description="Start (RFC 3339); empty: the run's hour"
        ),
        "to_time": Param(None, type=["null", "string"], pattern=TIME, description="End (RFC 3339); empty: the run's"),
    },
    tags=["rtds"],
) as dag:
    aggregate = rtds(
        "aggregate",
        {
            "RTDS_SQL": SQL,
            "RTDS_INPUT_TOPIC": RAW_TOPIC,
            "RTDS_OUTPUT_TOPIC": SIGNUPS_TOPIC,
            "RTDS_DLQ_TOPIC": DLQ_TOPIC,
            "RTDS_SINK": SIGNUPS_STORE.name,
            "RTDS_TABLE": SIGNUPS_TABLE,
            # A manual run's interval may be an instant: then the hour before it.
            "RTDS_FROM_TIME": "{{ params.from_time or (data_interval_start if data_interval_start < data_interval_end"
            " else data_interval_end - macros.timedelta(hours=1)).isoformat() }}",
            "RTDS_TO_TIME": "{{ params.to_time or data_interval_end.isoformat() }}",
        },
        connection_env=ENV,
        secret_uris=SIGNUPS_STORE.secret_uris,
        inlets=[RAW],
        outlets=[SIGNUPS, SIGNUPS_STORED, DLQ],
    )
    # The aggregate's summary: its records read, counted or dead-lettered, and its windows equal to the
    # same SQL as one batch GROUP BY over them.
    reconcile = rtds(
        "reconcile",
        {"RTDS_SUMMARIES": summaries_of("aggregate")},
        connection_env=ENV,
        secret_uris={},
        inlets=[RAW, SIGNUPS, DLQ],
    )
    aggregate >> reconcile
