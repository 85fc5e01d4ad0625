//! In-process transform of one batch (raw JSON bytes -> Arrow -> SQL -> output
//! JSON) against arrow-json decoding of the same bytes alone, on one core; and
//! rtds's own decoding alone.

use std::hint::black_box;

use arrow_json::ReaderBuilder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtds::ingest::generate::Generator;
use rtds::transform::Transformer;
use rtds::transform::decode::{RawDecoder, raw_schema};

const BATCH: usize = 5000;

fn transform(c: &mut Criterion) {
    let generator = Generator::new(7);
    let records: Vec<Vec<u8>> = (0..BATCH as u64)
        .map(|i| {
            let mut v = Vec::new();
            generator.write_record(i, &mut v);
            v
        })
        .collect();
    let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
    let joined: Vec<u8> = records.join(&b'\n');
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut transformer = rt.block_on(Transformer::new(None)).unwrap();

    let mut group = c.benchmark_group("transform_batch_5000");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("arrow_json_decode_only", |b| {
        b.iter(|| {
            let mut decoder = ReaderBuilder::new(raw_schema())
                .with_coerce_primitive(true)
                .with_batch_size(BATCH)
                .build_decoder()
                .unwrap();
            decoder.decode(&joined).unwrap();
            black_box(decoder.flush().unwrap())
        })
    });
    // rtds's decoding alone (the first step of rtds_transform), for where the time goes.
    let decoder = RawDecoder::default();
    group.bench_function("rtds_decode_only", |b| {
        b.iter(|| {
            let decoded = decoder.decode(black_box(&payloads)).unwrap();
            assert_eq!(decoded.rows.len(), BATCH);
            black_box(decoded)
        })
    });
    group.bench_function("rtds_transform", |b| {
        b.iter(|| {
            let applied = rt.block_on(transformer.apply(black_box(&payloads))).unwrap();
            assert_eq!(applied.rows.len(), BATCH);
            black_box(applied)
        })
    });
    group.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
