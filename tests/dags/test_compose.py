"""docker-compose.yml: no Docker engine runs here, so check the file itself —
against the Compose Specification's JSON schema (as shipped in the docker-compose
1.29.2 wheel on PyPI), and for every service the DAGs need, pinned images,
healthchecks, conditions, and no secrets."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import zipfile

import jsonschema
import pytest
import yaml

from conftest import DAGS, ROOT, STACK, airflow_connections

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_service_of_the_stack_is_there():
    expected = {
        "kafka",
        "cassandra",
        "postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "rtds-transform",
        "rtds-load-cassandra",
        "rtds-load-postgres",
        "kafka-ui",
        "registry-init",
        "registry",
    }
    assert expected <= set(SERVICES)


def test_images_are_pinned():
    for name, svc in SERVICES.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image} is not pinned"


def test_dependencies_wait_for_health_or_completion():
    allowed = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] in allowed, f"{name} -> {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck but {name} waits for it"


def test_connections_the_dags_use_are_configured(dagbag):
    used = set()
    for dag in DAGS.glob("*.py"):
        used |= set(re.findall(r"conn\.(rtds_\w+)", dag.read_text()))
    # And those read at run time, never templated (rtds_tasks.RtdsOperator: the PostgreSQL URL).
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            used |= set(getattr(task, "secret_uris", {}).values())
    assert used == {"rtds_kafka", "rtds_cassandra", "rtds_postgres", "rtds_schema_registry"}
    # The image's entrypoint makes them from the RTDS_* addresses compose sets, with the one definition.
    env = SERVICES["airflow-scheduler"]["environment"]
    made = airflow_connections().from_environment(env)
    assert {name.removeprefix("AIRFLOW_CONN_").lower() for name in made} == used
    assert "kafka:29092" in made["AIRFLOW_CONN_RTDS_KAFKA"] and "@postgres:5432/" in made["AIRFLOW_CONN_RTDS_POSTGRES"]
    assert "http://registry:8080/apis/ccompat/v7" in made["AIRFLOW_CONN_RTDS_SCHEMA_REGISTRY"]
    dockerfile = (ROOT / "airflow/Dockerfile").read_text()
    assert "COPY scripts/stack/airflow_connections.py airflow/entrypoint.sh /opt/rtds/" in dockerfile
    assert 'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/opt/rtds/entrypoint.sh"]' in dockerfile
    assert "python /opt/rtds/airflow_connections.py" in (ROOT / "airflow/entrypoint.sh").read_text()


def test_the_image_builds_rtds_from_everything_its_build_reads():
    build_stage = (ROOT / "airflow/Dockerfile").read_text().split("FROM apache/airflow")[0]
    copied = {p for line in build_stage.splitlines() if line.startswith("COPY ") for p in line.split()[1:-1]}
    needed = {"Cargo.toml", "Cargo.lock", "src", "sql", "benches", "examples"}
    needed |= {p.name for p in ROOT.glob("build.rs")}
    # And every file build.rs says it reads (today itself only).
    build_rs = (ROOT / "build.rs").read_text()
    read_by_build = {path.split("/")[0] for path in re.findall(r"rerun-if-changed=([^\"]+)\"", build_rs)}
    assert "build.rs" in read_by_build
    needed |= read_by_build
    assert needed <= copied, f"not copied into the build stage: {needed - copied}"


def test_kafka_advertises_an_address_for_containers_and_one_for_the_host():
    listeners = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka:29092" in listeners and "127.0.0.1:9092" in listeners


def test_no_secret_is_written_in_the_file():
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line) and "${" not in line:
            raise AssertionError(f"literal secret: {line}")
    assert set(COMPOSE["volumes"]) >= {"kafka", "cassandra", "postgres", "parquet", "delta"}


def compose_schema() -> dict:
    """The Compose Specification schema, from the docker-compose wheel (cached in .stack)."""
    cache = STACK / "compose-spec"
    wheels = list(cache.glob("docker_compose-1.29.2-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "docker-compose==1.29.2", "-d", str(cache)],
            check=True,
        )
        wheels = list(cache.glob("docker_compose-1.29.2-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        return json.loads(wheel.read("compose/config/compose_spec.json"))


def test_the_file_follows_the_compose_specification():
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    # The schema does catch mistakes: a misspelt key is refused.
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["kafka"]["imagee"] = broken["services"]["kafka"].pop("image")
    assert list(validator.iter_errors(broken))


def test_every_follow_service_reads_as_a_consumer_group_of_its_own():
    follow = {name: svc for name, svc in SERVICES.items() if "--follow" in (svc.get("command") or [])}
    assert set(follow) >= {"rtds-transform", "rtds-load-cassandra", "rtds-load-postgres"}
    groups = {}
    for name, svc in follow.items():
        env = svc.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment should be a mapping"
        group = env.get("RTDS_GROUP")
        assert group, f"{name} runs --follow without a consumer group of its own (RTDS_GROUP)"
        groups[name] = group
    assert len(set(groups.values())) == len(groups), f"--follow services share a consumer group: {groups}"
    # Not the group a plain `rtds transform` / `rtds load --sink X` falls back to either.
    defaults = {"rtds-transform", *(f"rtds-load-{sink}" for sink in ["cassandra", "postgres", "parquet", "delta"])}
    assert not set(groups.values()) & defaults, groups
    # Everything else the services need still comes from the shared settings.
    for name, svc in follow.items():
        assert svc["environment"]["RTDS_BROKERS"] == "kafka:29092", name
    # Each a static member of its group, one id per container: a restart takes its partitions back at once.
    for name, svc in follow.items():
        assert svc["environment"]["RTDS_GROUP_INSTANCE_ID"] == f"{name}-{{hostname}}", name


def test_the_aggregate_service_upserts_its_windows_into_the_postgres_table_the_dag_writes():
    from rtds_tasks import SIGNUPS_TABLE

    svc = SERVICES["rtds-aggregate"]
    env = svc["environment"]
    assert (env["RTDS_SINK"], env["RTDS_TABLE"]) == ("postgres", SIGNUPS_TABLE)
    assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "RTDS_POSTGRES_URL" in env, "the URL comes from the shared settings"


def test_the_transform_service_can_be_exactly_once_with_a_transactional_id_per_container():
    svc = SERVICES["rtds-transform"]
    env = svc["environment"]
    # Off unless .env says RTDS_EXACTLY_ONCE=true.
    assert env["RTDS_EXACTLY_ONCE"] == "${RTDS_EXACTLY_ONCE:-false}"
    # rtds replaces {hostname} with the container's host name: one id per replica.
    assert "{hostname}" in env["RTDS_TRANSACTIONAL_ID"], env.get("RTDS_TRANSACTIONAL_ID")
    # Nothing gives every replica the same host name, nor stops it being scaled.
    assert not {"hostname", "container_name"} & set(svc), svc
    assert svc["deploy"]["replicas"] == 1


def test_cassandra_runs_the_images_entry_point_with_the_stacks_timer_slack(tmp_path):
    svc = SERVICES["cassandra"]
    stack_script = (ROOT / "scripts/stack/cassandra.sh").read_text()
    slack = re.search(r"^CASSANDRA_TIMER_SLACK_NS=(\d+)$", stack_script, re.M).group(1)
    # Run the service's entry point as Compose would (`$$` is a literal `$`), with a stand-in
    # for the image's docker-entrypoint.sh that shows what it was given and the slack it has.
    argv = [a.replace("$$", "$") for a in svc["entrypoint"] + svc["command"]]
    stand_in = tmp_path / "docker-entrypoint.sh"
    stand_in.write_text('#!/bin/sh\necho "$@"\ncat /proc/self/timerslack_ns\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "cassandra -f", out
    assert out[1] == slack, f"the compose service runs with a timer slack of {out[1]}, the stack with {slack}"


def test_ports_are_published_on_loopback_only_and_never_twice():
    published = {}
    for name, svc in SERVICES.items():
        for port in svc.get("ports") or []:
            host, host_port, _container_port = str(port).split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert host_port not in published, f"{name} and {published[host_port]} both publish {host_port}"
            published[host_port] = name


def test_the_schema_registry_is_pinned_on_postgres_and_the_ui_and_rtds_use_it():
    stack_script = (ROOT / "scripts/stack/registry.sh").read_text()
    version = re.search(r"^REGISTRY_VERSION=(\S+)$", stack_script, re.M).group(1)
    schema = re.search(r"^REGISTRY_SCHEMA=(\S+)$", stack_script, re.M).group(1)
    svc = SERVICES["registry"]
    # The version the local stack runs, and the host address it has there.
    assert svc["image"] == f"apicurio/apicurio-registry:{version}"
    local_port = re.search(r"^REGISTRY_PORT=(\d+)$", stack_script, re.M).group(1)
    [mapping] = svc["ports"]
    _, host_port, container_port = mapping.split(":")
    assert host_port == local_port
    # Its data in compose's PostgreSQL, in the schema registry-init makes (the stack's name for it).
    env = svc["environment"]
    assert env["APICURIO_STORAGE_KIND"] == "sql" and env["APICURIO_STORAGE_SQL_KIND"] == "postgresql"
    assert env["APICURIO_DATASOURCE_URL"] == f"jdbc:postgresql://postgres:5432/rtds?currentSchema={schema}"
    assert env["APICURIO_SQL_DB_SCHEMA"] == schema
    assert env["APICURIO_DATASOURCE_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    assert f"CREATE SCHEMA IF NOT EXISTS {schema}" in SERVICES["registry-init"]["command"][-1]
    assert svc["depends_on"]["registry-init"]["condition"] == "service_completed_successfully"
    # The UI and every rtds process reach its Confluent-compatible API at the container's port.
    url = f"http://registry:{container_port}/apis/ccompat/v7"
    assert SERVICES["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"] == url
    for name, svc in SERVICES.items():
        env = svc.get("environment") or {}
        if name.startswith(("rtds-", "airflow-")):
            assert env.get("RTDS_SCHEMA_REGISTRY_URL") == url, name
        if "RTDS_SCHEMA_REGISTRY_URL" in env or "KAFKA_CLUSTERS_0_SCHEMAREGISTRY" in env:
            assert waits_for_a_healthy(name, "registry"), f"{name} does not wait for the registry"


def waits_for_a_healthy(name: str, dep: str) -> bool:
    """Whether service `name` starts after `dep` is healthy: directly, or through a service it waits for
    (airflow-apiserver & co. override the anchor's depends_on with airflow-init, which has it)."""
    needs = SERVICES[name].get("depends_on") or {}
    if needs.get(dep, {}).get("condition") == "service_healthy":
        return True
    return any(waits_for_a_healthy(other, dep) for other in needs)


def test_the_registry_healthcheck_tells_a_ready_registry_from_none():
    """The compose healthcheck (bash's /dev/tcp, no curl needed), run against the local stack's registry:
    the same application, on port REGISTRY_PORT instead of the container's 8080."""
    local_port = re.search(r"^REGISTRY_PORT=(\d+)$", (ROOT / "scripts/stack/registry.sh").read_text(), re.M).group(1)
    test = SERVICES["registry"]["healthcheck"]["test"]
    assert test[0] == "CMD" and "/dev/tcp/127.0.0.1/8080" in test[-1]
    argv = [a.replace("$$", "$").replace("/8080", f"/{local_port}") for a in test[1:]]

    def status(argv: list[str]) -> int:
        return subprocess.run(argv, check=False, stderr=subprocess.DEVNULL).returncode

    if status([*argv[:-1], f"exec 3<>/dev/tcp/127.0.0.1/{local_port}"]):
        pytest.skip(f"no registry on 127.0.0.1:{local_port} (scripts/stack.sh up registry)")
    assert status(argv) == 0
    assert status([a.replace("/health/ready", "/health/no-such-check") for a in argv]) != 0
    assert status([a.replace(f"/{local_port}", "/1") for a in argv]) != 0
