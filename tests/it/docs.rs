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

/// The paths docs/ARCHITECTURE.md's layout lists: a line `src/x.rs`, or a
/// folder line `src/x/` and the file names indented under it.
fn layout_paths(doc: &str) -> std::collections::BTreeSet<String> {
    let start = doc.find("## Layout").expect("a Layout section");
    let block = doc[start..].split("```").nth(1).expect("the layout block");
    let (mut paths, mut folder) = (std::collections::BTreeSet::new(), String::new());
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let first = line.split_whitespace().next().unwrap_or_default();
        if line.starts_with("  ") {
            paths.insert(format!("{folder}{first}"));
        } else {
            if first.ends_with('/') {
                folder = first.to_owned();
            }
            paths.insert(first.to_owned());
        }
    }
    paths
}

/// Every file under `dir` (relative to the crate), recursively.
fn files_under(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_layout_lists_every_file_of_src_and_every_top_level_folder() {
    let listed = layout_paths(&read("docs/ARCHITECTURE.md"));
    let missing: Vec<String> = files_under("src").into_iter().filter(|f| !listed.contains(f)).collect();
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md's layout does not list {missing:?}");
    let tracked = std::process::Command::new("git")
        .args(["ls-files"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git ls-files");
    let folders: std::collections::BTreeSet<String> = String::from_utf8_lossy(&tracked.stdout)
        .lines()
        .filter_map(|f| f.split_once('/').map(|(top, _)| format!("{top}/")))
        .collect();
    let missing: Vec<&String> = folders.iter().filter(|f| !listed.contains(*f)).collect();
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md's layout does not list the folders {missing:?}");
    let gone: Vec<&String> =
        listed.iter().filter(|p| !Path::new(env!("CARGO_MANIFEST_DIR")).join(p).exists()).collect();
    assert!(gone.is_empty(), "docs/ARCHITECTURE.md's layout lists what is not there: {gone:?}");
}

/// The code files outside `src/sinks/<sink>/` that name `sink` in code (its
/// module, its types, its name as a string, its registry line), in src/,
/// dags/ and airflow/plugins/.
fn naming_files(sink: rtds::sinks::Sink) -> Vec<String> {
    let name = sink.name();
    let variant = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
    // Its module by path (`sinks::parquet`, not the parquet crate's `parquet::` paths).
    let marks = [
        format!("sinks::{name}"),
        format!("\"{name}\""),
        format!("{name} => {variant}"),
        format!("Sink::{variant}"),
        format!("{variant}Opts"),
        format!("{variant}Writer"),
    ];
    let own = format!("src/sinks/{name}/");
    ["src", "dags", "airflow/plugins"]
        .iter()
        .flat_map(|d| files_under(d))
        .filter(|f| (f.ends_with(".rs") || f.ends_with(".py")) && !f.starts_with(&own))
        .filter(|f| {
            let text = read(f);
            marks.iter().any(|m| text.contains(m.as_str()))
        })
        .collect()
}

#[test]
fn a_sink_is_named_in_its_folder_its_registry_line_and_the_dags_store_list_only() {
    let doc = read("docs/ARCHITECTURE.md");
    let flat: String = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let expected = ["dags/rtds_tasks.py", "src/sinks/mod.rs"];
    for sink in rtds::sinks::Sink::ALL {
        let mut files = naming_files(*sink);
        // The file sinks' own commands: `rtds query` reads their files, `rtds maintain` and its DAG
        // keep the Delta table.
        let own_commands = [
            ("parquet", "src/query.rs"),
            ("delta", "src/query.rs"),
            ("delta", "src/maintain.rs"),
            ("delta", "dags/delta_maintenance.py"),
        ];
        files.retain(|f| !own_commands.contains(&(sink.name(), f.as_str())));
        files.sort();
        assert_eq!(files, expected, "{} is named outside its folder in {files:?}", sink.name());
    }
    // And the DAGs' one list of stores holds the same sinks as rtds's registry, in its order.
    let dags = read("dags/rtds_tasks.py");
    let defined: Vec<&str> = dags
        .split("Store(")
        .skip(1)
        .filter_map(|entry| entry.trim_start().strip_prefix('"')?.split('"').next())
        .collect();
    let registered: Vec<&str> = rtds::sinks::Sink::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(defined, registered, "dags/rtds_tasks.py's STORES_DEFINED against src/sinks/mod.rs's registry");
    let claim = format!("names it in {} code files:", expected.len());
    assert!(flat.contains(&claim), "docs/ARCHITECTURE.md does not say a sink's code {claim:?}");
}

#[test]
fn nothing_below_the_command_line_imports_it() {
    let importers: Vec<String> = files_under("src")
        .into_iter()
        .filter(|f| !["src/cli.rs", "src/entry.rs"].contains(&f.as_str()))
        .filter(|f| read(f).contains("crate::cli"))
        .collect();
    assert!(importers.is_empty(), "src/cli.rs is imported from below it by {importers:?}");
}
