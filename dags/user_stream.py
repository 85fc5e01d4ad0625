"""user_stream: the real-time path, as the tutorial streamed it — ingest users
for `duration` seconds, every few minutes. `rtds transform --follow` and
`rtds load --follow --sink ...` run beside it as long-lived services
(docker-compose.yml runs them), so rows reach the stores within moments.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

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
    BashOperator(
        task_id="stream",
        bash_command='"$RTDS_BIN" ingest',
        env={
            "RTDS_BIN": os.environ.get("RTDS_BIN", "rtds"),
            "RTDS_BROKERS": "{{ conn.rtds_kafka.host }}:{{ conn.rtds_kafka.port }}",
            "RTDS_SOURCE": "{{ params.source }}",
            "RTDS_DURATION": "{{ params.duration }}s",
            "RTDS_RATE": "{{ params.rate }}",
            "RTDS_SEED": "{{ ts_nodash | replace('T', '') }}",
            "RTDS_LOG_FORMAT": "json",
        },
        append_env=True,
        do_xcom_push=True,
    )
