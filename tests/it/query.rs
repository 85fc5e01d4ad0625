//! `rtds query` over what `rtds load --sink parquet` wrote: DataFusion SQL,
//! JSON lines when piped, exit 2 on bad SQL, exit 1 with nothing to read.

use std::collections::BTreeMap;
use std::time::Duration;

use rtds::row::names;
use serde_json::Value;

use crate::harness::*;
use crate::load::{Target, clean_rows, ok};

const RUN: Duration = Duration::from_secs(180);

fn query(target: &Target, sql: &str) -> std::process::Output {
    run(rtds().args(["query", "--out"]).arg(&target.out).arg(sql), RUN)
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(out.status.success(), "query failed: {}", stderr(out));
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn query_answers_sql_over_the_parquet_output_and_refuses_bad_sql() {
    require_kafka();
    let (topic, want) = clean_rows("it_query", 300, "57");
    let target = Target::new("it_query");
    ok(&run(&mut target.load("parquet", &topic, &unique("g")), RUN));

    // Counted by gender from the rows the transform made, and by the query.
    let gender = names().position(|c| c == "gender").unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for cells in want.values() {
        *expected.entry(cells[gender].clone().unwrap_or_default()).or_default() += 1;
    }
    let rows = json_lines(&query(&target, "SELECT gender, count(*) AS n FROM created_users GROUP BY gender"));
    let got: BTreeMap<String, u64> =
        rows.iter().map(|r| (r["gender"].as_str().unwrap().to_owned(), r["n"].as_u64().unwrap())).collect();
    assert_eq!(got, expected);

    let ids: Vec<String> = json_lines(&query(&target, "SELECT id FROM created_users ORDER BY id"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, want.keys().cloned().collect::<Vec<_>>(), "every id once");

    for bad in ["SELEC id FROM created_users", "SELECT no_such_column FROM created_users"] {
        let out = query(&target, bad);
        assert_one_line_error(&out, 2);
        assert!(stderr(&out).contains("invalid SQL"), "{}", stderr(&out));
    }
    let empty = Target::new("it_query_empty");
    std::fs::create_dir_all(empty.out.join("created_users")).unwrap();
    let out = query(&empty, "SELECT count(*) FROM created_users");
    assert_one_line_error(&out, 1);
    assert!(stderr(&out).contains("no Parquet files"), "{}", stderr(&out));
}
