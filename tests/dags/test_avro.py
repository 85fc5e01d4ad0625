"""rtds's Avro, read by an independent client: confluent-kafka's AvroDeserializer with its
SchemaRegistryClient (fastavro underneath) decodes the clean rows `rtds transform
--output-format avro` wrote, and every field equals the JSON path's row for the same input."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import rtds_bin, stack_env

USERS = 150


def rtds(*args: str) -> dict:
    env = {**os.environ, **stack_env()}
    done = subprocess.run([rtds_bin(), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_all(topic: str, n: int, brokers: str) -> dict[str, bytes]:
    """Key -> value of the first `n` records of the (one-partition) topic."""
    group = f"avro-reader-{uuid.uuid4()}"
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: dict[str, bytes] = {}
    try:
        for _ in range(600):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out[msg.key().decode()] = msg.value()
            if len(out) >= n:
                break
    finally:
        consumer.close()
    assert len(out) == n, f"{len(out)} of {n} records read from {topic}"
    return out


def test_avro_rows_decoded_by_confluent_kafka_equal_the_json_rows():
    env = stack_env()
    run = uuid.uuid4().hex[:8]
    raw, avro_out, json_out = f"avro_py_raw_{run}", f"avro_py_out_{run}", f"avro_py_json_{run}"
    rtds("ingest", "--source", "generate", "--count", str(USERS), "--seed", "71", "--topic", raw, "--format", "avro")
    for out, fmt in ((avro_out, "avro"), (json_out, "json")):
        summary = rtds(
            "transform", "--input-topic", raw, "--output-topic", out, "--dlq-topic", f"{out}_dlq",
            "--group", f"{out}_g", "--partitions", "1", "--output-format", fmt,
        )  # fmt: skip
        assert summary["out"] == USERS, summary

    registry = SchemaRegistryClient({"url": env["RTDS_SCHEMA_REGISTRY_URL"]})
    deserialize = AvroDeserializer(registry)
    context = SerializationContext(avro_out, MessageField.VALUE)
    avro_rows = {k: deserialize(v, context) for k, v in read_all(avro_out, USERS, env["RTDS_BROKERS"]).items()}
    json_rows = {k: json.loads(v) for k, v in read_all(json_out, USERS, env["RTDS_BROKERS"]).items()}
    assert avro_rows.keys() == json_rows.keys()
    # The Avro rows type the contract's timestamps (timestamp-millis): the reader gets datetimes,
    # the same instants the JSON rows spell in RFC 3339.
    for key, row in json_rows.items():
        avro = avro_rows[key]
        for column in ("dob", "registered_date"):
            assert isinstance(avro[column], datetime), (key, column, avro[column])
            avro[column] = avro[column].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert avro == row, key
    assert all(row["id"] == key for key, row in avro_rows.items())
