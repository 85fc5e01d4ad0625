"""delta_maintenance: keep the Delta table the loads append to small in files, daily.
`rtds maintain` compacts its data files below a target size into files of about that
size (one commit, the rows unchanged), then vacuums the files no version younger than
the retention reads (time travel reaches back that far, no further).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

# Shared with the other DAGs (dags/rtds_tasks.py).
from rtds_tasks import DEFAULT_ARGS, OUTS, STORES, rtds

with DAG(
    dag_id="delta_maintenance",
    description="Compact and vacuum the Delta table",
    schedule=timedelta(days=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=1)},
    params={
        "target_file_size": Param(
            "128MB", type="string", pattern=r"^[0-9]+\s*([KMG]i?B|B)?$", description="Compact files below this size"
        ),
        "retention": Param(
            "168h",
            type="string",
            pattern=r"^[0-9]+\s*(s|m|h|d)$",
            description="Vacuum the files no version younger than this reads (e.g. 168h, 7d)",
        ),
    },
    tags=["rtds"],
) as dag:
    rtds(
        "maintain",
        {
            "RTDS_OUT": OUTS["delta"],
            "RTDS_TARGET_FILE_SIZE": "{{ params.target_file_size }}",
            "RTDS_RETENTION": "{{ params.retention }}",
        },
        # Files only: no connection, no URL to fetch.
        connection_env={},
        secret_uris={},
        inlets=[STORES["delta"]],
        outlets=[STORES["delta"]],
    )
