"""dlq_alert: event-driven alerting on dead letters. A Kafka watcher in
Airflow's triggerer reads the DLQ topic (RTDS_DLQ_TOPIC, default users_dlq);
every dead letter updates the asset named after it, which schedules this DAG,
whose task logs why each record failed, where it came from and in which stage.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task

# The topic the stages write dead letters to (dags/rtds_tasks.py), and the DAGs' default_args.
from rtds_tasks import DEFAULT_ARGS, DLQ_TOPIC

# The asset is named after the topic, `users_dlq` by default: not rtds_tasks.DLQ, the stages'
# outlet, which every successful transform and load updates (it would schedule this DAG, dead
# letters or not). Only this watcher updates it: once per dead letter.
users_dlq = Asset(
    DLQ_TOPIC,
    watchers=[
        AssetWatcher(
            name=f"{DLQ_TOPIC}_watcher",
            trigger=MessageQueueTrigger(
                scheme="kafka",
                topics=[DLQ_TOPIC],
                # Runs in the triggerer, on each record: airflow/plugins/rtds_dlq.py makes of it
                # the event's extra (the rtds-error, rtds-stage and source headers).
                apply_function="rtds_dlq.dead_letter",
                kafka_config_id="rtds_kafka",
            ),
        )
    ],
)

with DAG(
    dag_id="dlq_alert",
    description=f"Alert on records that reached the dead-letter topic {DLQ_TOPIC}",
    schedule=[users_dlq],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(minutes=5)},
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
