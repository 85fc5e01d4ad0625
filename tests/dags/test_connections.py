"""The Airflow connections to the stack: one definition (scripts/stack/airflow_connections.py)
for the stack's Airflow (scripts/stack/airflow.sh) and for these tests (conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, airflow_connections, stack_env

SCRIPT = ROOT / "scripts" / "stack" / "airflow_connections.py"
# A password with characters a shell or a URL parser could trip on.
URL = "postgres://rtds:p'a$(x)s\"s@127.0.0.1:5433/rtds"


def evaled(env: dict[str, str]) -> dict[str, str]:
    """What a shell that evals the script's output gets (the URL only ever in the environment)."""
    script = f'eval "$("{sys.executable}" "{SCRIPT}")" && env -0'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    return {k: v for k, _, v in (item.partition("=") for item in out.split("\0")) if k.startswith("AIRFLOW_CONN_")}


def test_the_printed_exports_are_the_definition_exactly():
    env = {"PATH": os.environ["PATH"], "RTDS_BROKERS": "127.0.0.1:9092", "RTDS_CASSANDRA_NODES": "127.0.0.1:9042"}
    conns = evaled({**env, "RTDS_POSTGRES_URL": URL})
    assert conns == airflow_connections().from_environment({**env, "RTDS_POSTGRES_URL": URL})
    assert conns["AIRFLOW_CONN_RTDS_POSTGRES"] == URL
    assert conns["AIRFLOW_CONN_RTDS_CASSANDRA"] == "cassandra://127.0.0.1:9042"
    kafka = json.loads(conns["AIRFLOW_CONN_RTDS_KAFKA"])
    assert (kafka["conn_type"], kafka["host"], kafka["port"]) == ("kafka", "127.0.0.1", 9092)
    # dlq_alert's watcher: the Kafka provider reads its client settings from the extras.
    assert kafka["extra"] == {
        "bootstrap.servers": "127.0.0.1:9092",
        "group.id": "rtds-dlq-alert",
        "auto.offset.reset": "earliest",
    }
    # PostgreSQL not set up yet: no rtds_postgres connection, rather than one without a password.
    assert set(evaled(env)) == {"AIRFLOW_CONN_RTDS_KAFKA", "AIRFLOW_CONN_RTDS_CASSANDRA"}


def test_the_stack_airflow_gets_the_same_connections_as_the_tests():
    script = f"ROOT={ROOT}; . scripts/stack/lib.sh; . scripts/stack/airflow.sh; airflow_vars && env -0"
    # Not the URL the suite may run with (`eval "$(scripts/stack.sh env)"`): airflow_vars must not export it.
    env = {k: v for k, v in os.environ.items() if k != "RTDS_POSTGRES_URL"}
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    conns = {k: v for k, _, v in (item.partition("=") for item in out.split("\0")) if k.startswith("AIRFLOW_CONN_")}
    assert conns == airflow_connections().from_environment(stack_env())
    # Only the connections: the addresses `scripts/stack.sh env` prints are not exported to Airflow.
    assert "RTDS_POSTGRES_URL=" not in out
