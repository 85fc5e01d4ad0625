"""dlq_alert: event-driven. An AssetWatcher runs the Kafka provider's message
trigger in Airflow's triggerer on the `users_dlq` topic; every dead letter
updates the `users_dlq` asset, which schedules this DAG. Its task names what
went to the DLQ, from the record's headers (rtds-error, rtds-stage, source),
as airflow/plugins/rtds_dlq.py extracts them in the triggerer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

users_dlq = Asset(
    "users_dlq",
    watchers=[
        AssetWatcher(
            name="users_dlq_watcher",
            trigger=MessageQueueTrigger(
                scheme="kafka",
                topics=["users_dlq"],
                apply_function="rtds_dlq.dead_letter",
                kafka_config_id="rtds_kafka",
            ),
        )
    ],
)

with DAG(
    dag_id="dlq_alert",
    description="Alert on records that reached the dead-letter topic users_dlq",
    schedule=[users_dlq],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "owner": "rtds",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=5),
    },
    tags=["rtds"],
) as dag:

    @task
    def alert(triggering_asset_events=None) -> list[dict]:
        """Log each dead letter as an error: visible in the UI and to log-based alerting."""
        import logging

        events = [event.extra for events in (triggering_asset_events or {}).values() for event in events]
        for event in events:
            logging.getLogger("rtds.dlq").error("dead letter: %s", event)
        return events

    alert()
