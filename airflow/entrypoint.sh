#!/usr/bin/env bash
# The Airflow image's entrypoint with the connections rtds_kafka, rtds_cassandra and
# rtds_postgres defined first, from their one definition (scripts/stack/airflow_connections.py,
# the same the local stack and the DAG tests use) and the RTDS_* addresses compose sets.
set -euo pipefail
eval "$(python /opt/rtds/airflow_connections.py)"
exec /entrypoint "$@"
