//! Print the row count and the first rows of the Parquet files in a directory
//! (`make demo` uses it to show what `rtds load --sink parquet` wrote).
//! Usage: cargo run --example parquet_head -- DIR [ROWS]

use std::fs::File;

use arrow::util::pretty::pretty_format_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: parquet_head DIR [ROWS]"))?;
    let show: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    let (mut total, mut head) = (0, Vec::new());
    for path in &files {
        for batch in ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?.build()? {
            let batch = batch?;
            total += batch.num_rows();
            let want = show.saturating_sub(head.iter().map(|b: &arrow::array::RecordBatch| b.num_rows()).sum());
            if want > 0 {
                let cols: Vec<usize> = ["id", "first_name", "last_name", "post_code", "email"]
                    .iter()
                    .filter_map(|c| batch.schema().index_of(c).ok())
                    .collect();
                head.push(batch.project(&cols)?.slice(0, want.min(batch.num_rows())));
            }
        }
    }
    println!("{} file(s), {total} row(s) in {dir}", files.len());
    println!("{}", pretty_format_batches(&head)?);
    Ok(())
}
