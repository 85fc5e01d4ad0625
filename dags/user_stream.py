"""user_stream: the real-time path, as the tutorial streamed it — ingest users
into the raw topic for `duration` seconds, every five minutes. The long-lived
`rtds transform --follow` and `rtds load --follow --sink ...` services
(docker-compose.yml) carry them on, so rows reach the stores within moments.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

# Shared with the other DAGs (dags/rtds_tasks.py): the task is built like user_automation's ingest.
from rtds_tasks import DEFAULT_ARGS, KAFKA_ENV, RAW, RAW_TOPIC, rtds

with DAG(
    dag_id="user_stream",
    description="Stream random users into Kafka for a minute at a time",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(minutes=10)},
    params={
        "duration": Param(60, type="integer", minimum=1, maximum=3600, description="Seconds to stream"),
        "rate": Param(100, type="integer", minimum=1, maximum=100_000, description="Users per second"),
        "source": Param("generate", type="string", enum=["generate", "randomuser"]),
        "linger_ms": Param(
            25,
            type="integer",
            minimum=0,
            maximum=10_000,
            description="How long a record may wait to be sent with others (ms): longer costs less CPU a record, "
            "and adds up to that much latency",
        ),
    },
    tags=["rtds"],
) as dag:
    rtds(
        "ingest",
        {
            # The topic its outlet names: rtds's default unless RTDS_RAW_TOPIC says otherwise.
            "RTDS_TOPIC": RAW_TOPIC,
            "RTDS_SOURCE": "{{ params.source }}",
            "RTDS_DURATION": "{{ params.duration }}s",
            "RTDS_RATE": "{{ params.rate }}",
            "RTDS_LINGER": "{{ params.linger_ms }}ms",
            "RTDS_SEED": "{{ ts_nodash | replace('T', '') }}",
        },
        task_id="stream",
        # It talks to Kafka only: no store address, no PostgreSQL URL to fetch.
        connection_env=KAFKA_ENV,
        secret_uris={},
        outlets=[RAW],
    )
