"""Failure notifications of the rtds tasks, chosen by one setting: RTDS_FAILURE_NOTIFIER.

- `file:/var/log/rtds/failures.jsonl`: a JSON line for each task that failed for good (its last
  try): dag, task, run, try, the error; for a log shipper, and what the tests read.
- `smtp:ops@example.com,oncall@example.com`: a mail through the Airflow SMTP connection
  (the smtp provider's SmtpNotifier, `smtp_default`).
- unset or empty: none beyond the UI.

Read when a DAG file is parsed; every rtds DAG's default_args carry it (rtds_tasks.DEFAULT_ARGS).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    """Append a JSON line about the failed task instance to a file."""

    template_fields = ("path",)

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def notify(self, context) -> None:
        ti = context["ti"]
        line = {
            "at": datetime.now(UTC).isoformat(),
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "run_id": ti.run_id,
            "map_index": ti.map_index,
            "try_number": ti.try_number,
            "error": str(context.get("exception") or ""),
        }
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def failure_notifiers(setting: str | None = None) -> list[BaseNotifier]:
    """The notifiers RTDS_FAILURE_NOTIFIER (or `setting`) names; a setting of another kind is an error."""
    setting = os.environ.get("RTDS_FAILURE_NOTIFIER", "") if setting is None else setting
    if not setting:
        return []
    kind, _, target = setting.partition(":")
    if kind == "file" and target:
        return [FileNotifier(target)]
    if kind == "smtp" and target:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return [
            SmtpNotifier(
                to=[a.strip() for a in target.split(",") if a.strip()],
                subject="rtds: {{ ti.dag_id }}.{{ ti.task_id }} failed ({{ ti.run_id }})",
                html_content="Try {{ ti.try_number }} of {{ ti.task_id }} failed: {{ exception }}",
            )
        ]
    raise ValueError(f"RTDS_FAILURE_NOTIFIER={setting!r}: expected file:<path> or smtp:<address>[,<address>]")
