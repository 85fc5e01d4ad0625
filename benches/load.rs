//! In-process load of one batch to Parquet, on one core: the clean rows the
//! transform writes for 5,000 generated users parsed (`UserRow::parse`), and
//! parsed, laid out as Arrow and written as one zstd Parquet file in memory
//! (what `rtds load --sink parquet` does to a batch, without Kafka and disk).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use rtds::generate::Generator;
use rtds::row::UserRow;
use rtds::sinks::files::{parquet_properties, text_batch, text_schema};
use rtds::transform::Transformer;

const BATCH: usize = 5000;

fn load(c: &mut Criterion) {
    let records = Generator::new(7).records(BATCH as u64);
    let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut transformer = rt.block_on(Transformer::new(None, None)).unwrap();
    let applied = rt.block_on(transformer.apply(&payloads)).unwrap();
    let clean: Vec<Vec<u8>> = applied.rows.iter().map(|(_, row)| row.to_vec()).collect();
    assert_eq!(clean.len(), BATCH);
    let schema = text_schema();

    let parse = || -> Vec<UserRow> { clean.iter().map(|p| UserRow::parse(Some(black_box(p))).unwrap()).collect() };
    let parquet_file = || {
        let rows = parse();
        let batch = text_batch(&schema, &rows.iter().collect::<Vec<_>>()).unwrap();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(parquet_properties())).unwrap();
        writer.write(&batch).unwrap();
        black_box(writer.into_inner().unwrap().len())
    };

    let mut group = c.benchmark_group("load_batch_5000");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("parse_rows", |b| b.iter(|| black_box(parse())));
    group.bench_function("parquet_file", |b| b.iter(parquet_file));
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
