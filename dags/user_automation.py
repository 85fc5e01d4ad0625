"""user_automation: the classic tutorial's DAG, with rtds doing the work.

ingest >> transform >> load_<sink> (the sinks chosen in the trigger form) >> reconcile,
the transform and each load fanned out over `parallelism` shares (below).
Each task runs the plain `rtds <stage>` command, built by rtds_tasks.rtds
(parameters and connection settings in RTDS_* environment variables, never in
the shell string; the PostgreSQL URL added at run time, never templated). Each
stage prints a JSON summary as its last stdout line, which BashOperator pushes
to XCom, including the Kafka offset ranges it consumed and produced.

Each task declares the assets it reads and writes (inlets, outlets: the topics,
the stores), so the UI shows the lineage and other DAGs can be scheduled on them.

transform and each load get the previous stage's summaries in RTDS_FROM_SUMMARY
(one a line) and read exactly the offsets that upstream run produced, without a
consumer group: nothing is committed, and the `--follow` services of the same
stages (docker-compose.yml) are never in the way, nor are they in the run's way.

Fan-out: the trigger form's `parallelism` N (default 1, at most 12) splits the
run's Kafka partitions into N disjoint shares. The `shares` task returns
["1/N", ..., "N/N"], and the transform and every load_<sink> are mapped over it
(dynamic task mapping): N transform instances and N instances of each chosen
load, each the same `rtds <stage>` with its share in RTDS_SHARE (K/N: the
partitions p with p % N == K-1), so a run spreads over as many workers as the
executor has. A transform share reads ingest's summary; every load share reads
all N transform shares' summaries and takes its partitions of them. A share
with no partition (N above the topics' partitions) reads nothing, and succeeds.
The task ids stay transform and load_<sink>, one instance each at N=1.
choose_sinks skips the loads not chosen before they are expanded: none of their
shares runs, and reconcile (none_failed_min_one_success) runs all the same.

The trigger form's `exactly_once` (default off) runs the transform in Kafka
transactions (RTDS_EXACTLY_ONCE): no duplicate in the output topic, for some
throughput. Its transactional id needs nothing set: rtds derives one per run
from the offsets it reads, so a retry fences the attempt it replaces and
concurrent runs never fence each other. The task writes its offsets in one
transaction, committed at its end: a retry after a kill aborts what the
killed attempt wrote and writes each record once.

reconcile runs `rtds reconcile` over every summary of this run (RTDS_SUMMARIES,
one a line: ingest's, every transform share's, every share of every chosen
load's), merges the shares of each stage, and proves the chain: each stage read
all the previous one produced; in = out + dlq + filtered at every stage; every
row is in each chosen store by id; every dead letter is in the DLQ topic; and
no stage sent more than the form's `max_dlq_share` of its input to the DLQ.
It fails the run, naming what is missing, if any of it does not hold.

The generator's seed defaults to the run's date (YYYYMMDD): each day's
scheduled run brings new users, and a rerun of a date brings the same ones.

Topics are read from the environment when the DAG is parsed (RTDS_RAW_TOPIC,
RTDS_CREATED_TOPIC, RTDS_DLQ_TOPIC; rtds_tasks), so a deployment or a test can
run the pipeline on topics of its own; the Cassandra keyspace and PostgreSQL
schema reach the stages through the inherited environment (RTDS_KEYSPACE,
RTDS_PG_SCHEMA).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

# Shared with user_stream (dags/rtds_tasks.py); the topic names stay importable from here.
from rtds_tasks import CREATED, CREATED_TOPIC, DLQ, DLQ_TOPIC, PARQUET_OUT, RAW, RAW_TOPIC, STORES, rtds

SINKS = ["cassandra", "postgres", "parquet"]

# The generator's seed: the form's, else the run's date. A scheduled run's date is its logical
# date; a run triggered without one (Airflow 3 allows that) takes the date it was due to run.
SEED = "{{ params.seed if params.seed is not none else (logical_date or dag_run.run_after).strftime('%Y%m%d') }}"


def summaries_of(*task_ids: str) -> str:
    """A template of the JSON summary lines the tasks `task_ids` pushed to XCom in this run, one a line.

    Given a list of task ids, xcom_pull returns a list whatever it finds: the value of every map index
    of a mapped task (one share or many), None for a task that pushed nothing (a load not chosen),
    which `select` drops. (Given one task id, it would return a bare value when it finds exactly one.)
    """
    return f"{{{{ ti.xcom_pull(task_ids={list(task_ids)!r}) | select | join('\\n') }}}}"


with DAG(
    dag_id="user_automation",
    description="Random users: randomuser.me (or the seeded generator) -> Kafka -> DataFusion SQL -> stores",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "rtds",
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
        },
        outlets=[RAW],
    )

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
            "RTDS_FROM_SUMMARY": summaries_of("ingest"),
            # rtds parses a bool from the environment as the literal true or false.
            "RTDS_EXACTLY_ONCE": "{{ 'true' if params.exactly_once else 'false' }}",
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
                "RTDS_OUT": PARQUET_OUT,
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

    @task.branch
    def choose_sinks(params: dict) -> list[str]:
        """Run only the loads the trigger form asked for.

        A load not chosen is skipped before it is expanded: its one unexpanded instance, no share runs.
        """
        return [f"load_{sink}" for sink in params["sinks"]]

    # Every summary of this run, one a line: ingest's, every transform share's, every load share's
    # (a load not chosen has none).
    reconcile = rtds(
        "reconcile",
        {
            "RTDS_SUMMARIES": summaries_of(*(t.task_id for t in [ingest, transform, *loads.values()])),
            "RTDS_MAX_DLQ_SHARE": "{{ params.max_dlq_share }}",
        },
        trigger_rule="none_failed_min_one_success",
    )

    ingest >> transform >> choose_sinks() >> list(loads.values()) >> reconcile
