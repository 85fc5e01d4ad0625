//! What the README says a figure is, the bench's report says too: a number in
//! prose comes from a run that counted it (bench/results/latest.md).

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The cells of the row of `table_row_start` in `text`'s first table row starting so.
fn row<'a>(text: &'a str, table_row_start: &str) -> Vec<&'a str> {
    let line = text.lines().find(|l| l.starts_with(table_row_start)).unwrap_or_else(|| panic!("no {table_row_start}"));
    line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect()
}

#[test]
fn the_readme_gives_exactly_onces_cost_as_the_bench_measured_it() {
    let (readme, latest) = (read("README.md"), read("bench/results/latest.md"));
    let eos = row(&latest, "| transform_eos | 100ms (default) |");
    let at_least_once = row(&latest, "| transform |");
    let (rate, share) = (eos[2], eos[3]);
    assert!(share.ends_with('%'), "{eos:?}");
    let prose = format!(
        "exactly once at 100ms (the default) ran at {share} of at least once ({rate}\nagainst {}",
        at_least_once[2]
    );
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat(&readme).contains(&flat(&prose)), "README.md does not say {prose:?} as bench/results/latest.md does");
    let rt = row(&latest, "| rt1000eos_load |");
    let latency = format!("exactly once {} / {} / {}", rt[4], rt[5], rt[6]);
    assert!(flat(&readme).contains(&flat(&latency)), "README.md does not give {latency:?}");
}
