"""user_stream: the real-time path, as the tutorial streamed it — ingest users
for `duration` seconds, every few minutes. `rtds transform --follow` and
`rtds load --follow --sink ...` run beside it as long-lived services
(docker-compose.yml runs them), so rows reach the stores within moments.

The task is built by rtds_tasks.rtds, like user_automation's, and writes the
same raw topic (RTDS_RAW_TOPIC), the asset it declares as its outlet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param
from rtds_tasks import KAFKA_ENV, RAW, RAW_TOPIC, rtds

with DAG(
    dag_id="user_stream",
    description="Stream random users into Kafka for a minute at a time",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "rtds",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=10),
    },
    params={
        "duration": Param(60, type="integer", minimum=1, maximum=3600, description="Seconds to stream"),
        "rate": Param(100, type="integer", minimum=1, maximum=100_000, description="Users per second"),
        "source": Param("generate", type="string", enum=["generate", "randomuser"]),
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
            "RTDS_SEED": "{{ ts_nodash | replace('T', '') }}",
        },
        task_id="stream",
        # It talks to Kafka only: no store address, no PostgreSQL URL to fetch.
        connection_env=KAFKA_ENV,
        secret_uris={},
        outlets=[RAW],
    )
