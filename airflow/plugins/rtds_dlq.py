"""What dlq_alert's watcher (dags/dlq_alert.py) makes of one dead letter. The
watcher names the topic (rtds_tasks.DLQ_TOPIC); nothing here depends on it.

It runs in Airflow's triggerer, which imports it by name: it lives in the
plugins folder because that folder, unlike the DAGs folder, is on the
triggerer's import path.
"""

from __future__ import annotations


def dead_letter(message) -> dict:
    """One DLQ record (a confluent-kafka Message): why, which stage, and from where."""
    headers = {key: (value or b"").decode("utf-8", "replace") for key, value in (message.headers() or [])}
    return {
        "error": headers.get("rtds-error", ""),
        "stage": headers.get("rtds-stage", ""),
        "source": f"{headers.get('rtds-source-topic', '')}/{headers.get('rtds-source-partition', '')}"
        f"@{headers.get('rtds-source-offset', '')}",
    }
