"""user_automation: the classic tutorial's DAG, with rtds doing the work, daily.

ingest >> transform >> load_<sink> (the stores chosen in the trigger form) >> reconcile,
each task an `rtds <stage>` (rtds_tasks.rtds). The transform and the loads read exactly
the offsets the stage before produced, fanned out over `parallelism` shares of the
partitions, and reconcile proves every record reached every chosen store or the DLQ.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

# Shared with the other DAGs (dags/rtds_tasks.py); the topic names and SINKS stay importable from here.
# Topics are read from the environment when the DAG is parsed (RTDS_RAW_TOPIC, RTDS_CREATED_TOPIC,
# RTDS_DLQ_TOPIC), so a deployment or a test can run the pipeline on topics of its own; the Cassandra
# keyspace and PostgreSQL schema reach the stages through the inherited environment.
from rtds_tasks import (
    CREATED,
    CREATED_TOPIC,
    DEFAULT_ARGS,
    DLQ,
    DLQ_TOPIC,
    OUTS,
    RAW,
    RAW_TOPIC,
    RECONCILED,
    SINKS,
    STORES,
    rtds,
    summaries_of,
)

# The generator's seed: the form's, else the run's date (YYYYMMDD), so each day's scheduled run
# brings new users and a rerun of a date the same ones. A scheduled run's date is its logical
# date; a run triggered without one (Airflow 3 allows that) takes the date it was due to run.
SEED = "{{ params.seed if params.seed is not none else (logical_date or dag_run.run_after).strftime('%Y%m%d') }}"


with DAG(
    dag_id="user_automation",
    description="Random users: randomuser.me (or the seeded generator) -> Kafka -> DataFusion SQL -> stores",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    # Batch stages over up to a million users: more time, and more retries, further apart.
    default_args={
        **DEFAULT_ARGS,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "count": Param(1000, type="integer", minimum=1, maximum=1_000_000, description="Users to ingest"),
        "source": Param(
            "generate", type="string", enum=["generate", "randomuser"], description="Where users come from"
        ),
        "seed": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="Seed of the built-in generator; empty: the run's date (YYYYMMDD), "
            "so each day's run brings new users and a rerun of a date the same ones",
        ),
        "api_seed": Param(
            None, type=["null", "string"], maxLength=256, description="randomuser.me's own seed (optional)"
        ),
        "sinks": Param(
            SINKS,
            type="array",
            items={"type": "string", "enum": SINKS},
            uniqueItems=True,
            minItems=1,
            description="Stores to load",
        ),
        "format": Param(
            "json",
            type="string",
            enum=["json", "avro"],
            description="How the topics carry records: JSON, or Avro with the schema registry "
            "(Confluent wire format; the loads read either)",
        ),
        "exactly_once": Param(
            False,
            type="boolean",
            description="Kafka transactions in transform: no duplicate in the output topic; costs some throughput",
        ),
        "max_dlq_share": Param(
            "1%",
            type="string",
            pattern=r"^(100|[0-9]{1,2}(\.[0-9]+)?)%$|^(0(\.[0-9]+)?|1(\.0+)?)$",
            description="reconcile fails the run when more than this share of a stage's input went to the DLQ "
            "(e.g. 1%, 0.05; 0 forbids any)",
        ),
        "parallelism": Param(
            1,
            type="integer",
            minimum=1,
            maximum=12,
            description="Transform tasks, and load tasks per chosen store, "
            "each a disjoint share of the run's Kafka partitions",
        ),
    },
    tags=["rtds"],
) as dag:
    ingest = rtds(
        "ingest",
        {
            "RTDS_TOPIC": RAW_TOPIC,
            "RTDS_SOURCE": "{{ params.source }}",
            "RTDS_COUNT": "{{ params.count }}",
            "RTDS_SEED": SEED,
            "RTDS_API_SEED": "{{ params.api_seed or '' }}",
            "RTDS_FORMAT": "{{ params.format }}",
        },
        outlets=[RAW],
    )

    # Fan-out: `parallelism` N splits the run's Kafka partitions into N disjoint shares, and the
    # transform and every load_<sink> are mapped over them (dynamic task mapping): N instances of
    # each, the same `rtds <stage>` with its share in RTDS_SHARE (K/N: the partitions p with
    # p % N == K-1), so a run spreads over as many workers as the executor has. A share with no
    # partition (N above the topics' partitions) reads nothing, and succeeds. The task ids stay
    # transform and load_<sink>, one instance each at N=1.
    @task
    def shares(params: dict) -> list[str]:
        """The shares of the run's partitions, one a mapped transform and load: ["1/N", ..., "N/N"]."""
        n = params["parallelism"]
        return [f"{k}/{n}" for k in range(1, n + 1)]

    # One XCom, expanded by the transform and every load.
    run_shares = shares()
    transform = rtds(
        "transform",
        {
            "RTDS_INPUT_TOPIC": RAW_TOPIC,
            "RTDS_OUTPUT_TOPIC": CREATED_TOPIC,
            "RTDS_DLQ_TOPIC": DLQ_TOPIC,
            # The transform and each load read exactly the offsets their upstream run produced (its
            # summaries, one a line), without a consumer group: nothing is committed, and the
            # `--follow` services of the same stages (docker-compose.yml) are never in the way, nor
            # they in the run's. Each transform share reads ingest's summary, its partitions of it.
            "RTDS_FROM_SUMMARY": summaries_of("ingest"),
            # The form's exactly_once (default off): the task writes in one Kafka transaction, committed
            # at its end, so no duplicate in the output topic, for some throughput. rtds derives the
            # transactional id from the offsets it reads: a retry fences the attempt it replaces (and
            # aborts what a killed one wrote), and concurrent runs never fence each other.
            # rtds parses a bool from the environment as the literal true or false.
            "RTDS_EXACTLY_ONCE": "{{ 'true' if params.exactly_once else 'false' }}",
            "RTDS_OUTPUT_FORMAT": "{{ params.format }}",
        },
        inlets=[RAW],
        outlets=[CREATED, DLQ],
        shares=run_shares,
    )
    loads = {
        sink: rtds(
            "load",
            {
                "RTDS_SINK": sink,
                **({"RTDS_OUT": OUTS[sink]} if sink in OUTS else {}),
                "RTDS_INPUT_TOPIC": CREATED_TOPIC,
                "RTDS_DLQ_TOPIC": DLQ_TOPIC,
                # Every transform share's summary: each load share reads its partitions of all of them.
                "RTDS_FROM_SUMMARY": summaries_of("transform"),
            },
            task_id=f"load_{sink}",
            inlets=[CREATED],
            outlets=[STORES[sink], DLQ],
            shares=run_shares,
        )
        for sink in SINKS
    }

    # A load not chosen is skipped before it is expanded: none of its shares runs, and reconcile
    # (none_failed_min_one_success) runs all the same.
    @task.branch
    def choose_sinks(params: dict) -> list[str]:
        """Run only the loads the trigger form asked for.

        A load not chosen is skipped before it is expanded: its one unexpanded instance, no share runs.
        """
        return [f"load_{sink}" for sink in params["sinks"]]

    # rtds reconcile, over every summary of this run (one a line: ingest's, every transform share's,
    # every load share's; a load not chosen has none), merges each stage's shares and proves the chain:
    # each stage read all the previous one produced; in = out + dlq + filtered at every stage; every
    # row is in each chosen store by id; every dead letter is in the DLQ topic; no stage sent more than
    # the form's `max_dlq_share` of its input to the DLQ. It fails the run, naming what is missing.
    reconcile = rtds(
        "reconcile",
        {
            "RTDS_SUMMARIES": summaries_of(*(t.task_id for t in [ingest, transform, *loads.values()])),
            "RTDS_MAX_DLQ_SHARE": "{{ params.max_dlq_share }}",
        },
        inlets=RECONCILED,
        trigger_rule="none_failed_min_one_success",
    )

    ingest >> transform >> choose_sinks() >> list(loads.values()) >> reconcile
