"""The Airflow connections the DAGs use, rtds_kafka, rtds_cassandra,
rtds_postgres and rtds_schema_registry, defined once for the local stack (scripts/stack/airflow.sh evals
what this prints) and for the DAG tests (tests/dags/conftest.py imports it).

The addresses come from the environment, as `scripts/stack.sh env` prints them
(RTDS_BROKERS, RTDS_CASSANDRA_NODES, RTDS_POSTGRES_URL, RTDS_SCHEMA_REGISTRY_URL), never from arguments:
the PostgreSQL URL holds a password, and a process's arguments are visible to
every user of the machine (ps, /proc). The compose image runs it too, at start
(airflow/entrypoint.sh), with the containers' addresses.

    python3 scripts/stack/airflow_connections.py   # export AIRFLOW_CONN_RTDS_...=... lines
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping


def connections(
    brokers: str, cassandra_nodes: str, postgres_url: str | None, registry_url: str | None = None
) -> dict[str, str]:
    """AIRFLOW_CONN_* variable -> value, for brokers and Cassandra as host:port.

    rtds_postgres and rtds_schema_registry are left out when there is no URL (the service not set
    up): only a task that needs it fails, naming the missing connection.
    """
    host, _, port = brokers.split(",")[0].rpartition(":")
    conns = {
        # JSON form: the Kafka provider (dlq_alert's watcher) reads its client settings from the extras.
        "AIRFLOW_CONN_RTDS_KAFKA": json.dumps(
            {
                "conn_type": "kafka",
                "host": host,
                "port": int(port),
                "extra": {"bootstrap.servers": brokers, "group.id": "rtds-dlq-alert", "auto.offset.reset": "earliest"},
            }
        ),
        "AIRFLOW_CONN_RTDS_CASSANDRA": f"cassandra://{cassandra_nodes}",
    }
    if postgres_url:
        # tokio-postgres takes postgres:// URLs; Airflow keeps the scheme of the URI.
        conns["AIRFLOW_CONN_RTDS_POSTGRES"] = postgres_url
    if registry_url:
        # The Confluent-compatible base URL whole (a path included), as rtds takes it.
        conns["AIRFLOW_CONN_RTDS_SCHEMA_REGISTRY"] = json.dumps({"conn_type": "http", "extra": {"url": registry_url}})
    return conns


def from_environment(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """connections() of the addresses in `env` (RTDS_BROKERS, RTDS_CASSANDRA_NODES, RTDS_POSTGRES_URL,
    RTDS_SCHEMA_REGISTRY_URL)."""
    return connections(
        env["RTDS_BROKERS"],
        env["RTDS_CASSANDRA_NODES"],
        env.get("RTDS_POSTGRES_URL"),
        env.get("RTDS_SCHEMA_REGISTRY_URL"),
    )


if __name__ == "__main__":
    # Quoted for the shell that evals them: a password may hold any character.
    for name, value in from_environment().items():
        print(f"export {name}={shlex.quote(value)}")
