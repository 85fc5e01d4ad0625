"""OpenLineage for the rtds tasks: the topics and tables a task reads and writes, its inlets and outlets.

The Airflow OpenLineage provider sends an event when each task starts and ends (where to:
[openlineage] transport, README "Operations"). A BashOperator's events name no data (the
provider cannot know what a command reads), and the providers convert only some asset
schemes (kafka, file: not cassandra or postgres without their providers), so RtdsOperator
reports its own lineage from the assets it already declares for the UI's graph.
Not a DAG file (.airflowignore).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset
    from openlineage.client.event_v2 import Dataset


def dataset(asset: Asset) -> Dataset:
    """An asset of rtds_tasks as an OpenLineage dataset, named as OpenLineage's naming spec names it.

    kafka://rtds/users_raw -> (kafka://rtds, users_raw); cassandra://rtds/ks/t -> (cassandra://rtds, ks.t);
    postgres://rtds:5432/db/schema/t -> (postgres://rtds:5432, db.schema.t); file:///dir/t -> (file, /dir/t).
    """
    from openlineage.client.event_v2 import Dataset

    uri = urlsplit(asset.uri)
    if uri.scheme == "file":
        return Dataset(namespace="file", name=uri.path)
    parts = [part for part in uri.path.split("/") if part]
    return Dataset(namespace=f"{uri.scheme}://{uri.netloc}", name=".".join(parts))


def operator_lineage(inlets: list, outlets: list) -> OperatorLineage:
    """The inputs and outputs of a task: its asset inlets and outlets."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset

    return OperatorLineage(
        inputs=[dataset(a) for a in inlets if isinstance(a, Asset)],
        outputs=[dataset(a) for a in outlets if isinstance(a, Asset)],
    )
