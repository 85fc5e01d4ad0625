//! Wrong input gives a one-line error and exit code 2 (usage) or 1 (runtime),
//! never a panic or a hang.

use std::time::Duration;

use crate::harness::*;

const QUICK: Duration = Duration::from_secs(60);

#[test]
fn unknown_flag_is_exit_2() {
    let out = run(rtds().args(["ingest", "--no-such-flag"]), QUICK);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
}

#[test]
fn bad_broker_address_is_exit_2() {
    let out = run(rtds().args(["--brokers", "localhost:99999", "check", "--only", "kafka"]), QUICK);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid address"), "{}", stderr(&out));
}

#[test]
fn secret_kafka_option_on_argv_is_refused() {
    let out = run(rtds().args(["--kafka-option", "sasl.password=hunter2", "check", "--only", "kafka"]), QUICK);
    assert_one_line_error(&out, 2);
    assert!(!stderr(&out).contains("hunter2"), "the secret was echoed: {}", stderr(&out));
}

#[test]
fn unreachable_kafka_is_exit_1_naming_the_address() {
    let out = run(rtds().args(["--brokers", "127.0.0.1:1", "check", "--only", "kafka"]), QUICK);
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
}

#[test]
fn unreachable_cassandra_is_exit_1_naming_the_address() {
    let out = run(
        rtds().args(["check", "--only", "cassandra", "--cassandra-nodes", "127.0.0.1:1", "--connect-timeout", "3s"]),
        QUICK,
    );
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
    assert_eq!(summary(&out)["ok"], false);
}

#[test]
fn unreachable_registry_is_exit_1_naming_the_address_and_an_unset_one_is_skipped() {
    let url = "http://127.0.0.1:1/apis/ccompat/v7";
    let out = run(rtds().args(["check", "--only", "registry", "--schema-registry-url", url]), QUICK);
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains(url), "{}", stderr(&out));
    assert_eq!(summary(&out)["ok"], false);

    let out = run(rtds().env_remove("RTDS_SCHEMA_REGISTRY_URL").args(["check", "--only", "registry"]), QUICK);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not configured"), "{}", stdout(&out));
}

#[test]
fn postgres_password_never_printed() {
    let out = run(
        rtds()
            .env("RTDS_POSTGRES_URL", "postgres://rtds:sup3rs3cret@127.0.0.1:1/rtds")
            .args(["check", "--only", "postgres"]),
        QUICK,
    );
    assert_one_line_error(&out, 1);
    assert!(!stderr(&out).contains("sup3rs3cret") && !stdout(&out).contains("sup3rs3cret"));
    assert!(stderr(&out).contains("127.0.0.1:1/rtds"), "{}", stderr(&out));
}

#[test]
fn an_empty_setting_counts_as_unset() {
    require_kafka();
    // What a compose file's `${RTDS_KAFKA_OPTIONS:-}` passes on.
    let out = run(
        rtds()
            .env("RTDS_KAFKA_OPTIONS", "")
            .env("RTDS_METRICS_ADDR", "")
            .env("RTDS_BROKERS", "")
            .args(["check", "--only", "kafka"]),
        QUICK,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["ok"], true);
}

#[test]
fn help_lists_the_stages() {
    let out = run(rtds().arg("--help"), QUICK);
    assert!(out.status.success());
    for stage in ["ingest", "transform", "load", "check"] {
        assert!(stdout(&out).contains(stage), "{stage} missing from --help");
    }
}

#[test]
fn a_stage_that_logs_more_than_a_pipe_holds_still_finishes() {
    require_kafka();
    let topic = unique("it_cli_chatty");
    // librdkafka's debug log through tracing: far more than a 64 KiB pipe.
    let out = run(
        rtds()
            .args(["ingest", "--source", "generate", "--count", "2000", "--topic", &topic])
            .env("RTDS_KAFKA_OPTIONS", "debug=all")
            .env("RTDS_LOG", "debug"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.len() > 1 << 16, "only {} bytes of logs", out.stderr.len());
    assert_eq!(summary(&out)["out"], 2000);
}

#[test]
fn settings_that_select_incremental_rebalancing_are_refused() {
    require_kafka();
    let (raw, created) = (unique("it_cli_coop_raw"), unique("it_cli_coop_c"));
    for (option, stage) in [
        ("partition.assignment.strategy=cooperative-sticky", ["transform", "--output-topic", &created]),
        ("group.protocol=consumer", ["load", "--sink", "parquet"]),
    ] {
        let out = run(
            rtds().args(["--kafka-option", option]).args(stage).args(["--input-topic", &raw, "--group", &unique("g")]),
            QUICK,
        );
        assert_one_line_error(&out, 2);
        assert!(stderr(&out).contains(option) && stderr(&out).contains("incremental"), "{}", stderr(&out));
    }
}
