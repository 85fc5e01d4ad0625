//! In-process transform of one batch (raw JSON bytes -> Arrow -> SQL -> output
//! JSON) against arrow-json decoding of the same bytes alone, on one core; and
//! rtds's own decoding alone. Then the two sides of the comparison timed in
//! turns (`paired`), for their ratio.

use std::hint::black_box;
use std::time::Instant;

use arrow_json::ReaderBuilder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtds::generate::Generator;
use rtds::raw::decode::{RawDecoder, raw_schema};
use rtds::transform::Transformer;

const BATCH: usize = 5000;

fn transform(c: &mut Criterion) {
    let records = Generator::new(7).records(BATCH as u64);
    let payloads: Vec<Option<&[u8]>> = records.iter().map(|r| Some(r.as_slice())).collect();
    let joined: Vec<u8> = records.join(&b'\n');
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut transformer = rt.block_on(Transformer::new(None, None)).unwrap();

    let arrow_json = || {
        let mut decoder = ReaderBuilder::new(raw_schema())
            .with_coerce_primitive(true)
            .with_batch_size(BATCH)
            .build_decoder()
            .unwrap();
        decoder.decode(black_box(&joined)).unwrap();
        black_box(decoder.flush().unwrap())
    };
    let mut rtds_transform = || {
        let applied = rt.block_on(transformer.apply(black_box(&payloads))).unwrap();
        assert_eq!(applied.rows.len(), BATCH);
        black_box(applied)
    };

    let mut group = c.benchmark_group("transform_batch_5000");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("arrow_json_decode_only", |b| b.iter(arrow_json));
    // rtds's decoding alone (the first step of rtds_transform), for where the time goes.
    let decoder = RawDecoder::default();
    group.bench_function("rtds_decode_only", |b| {
        b.iter(|| {
            let decoded = decoder.decode(black_box(&payloads)).unwrap();
            assert_eq!(decoded.rows.len(), BATCH);
            black_box(decoded)
        })
    });
    group.bench_function("rtds_transform", |b| b.iter(&mut rtds_transform));
    group.finish();
    paired(arrow_json, rtds_transform);
}

/// How many times faster the transform is than arrow-json's decoding alone,
/// the two timed in turns: criterion runs one benchmark's samples after the
/// other's, so a slow spell of this VM (its steal comes in bursts of 2–10%)
/// lands on one side only, and the ratio of the means moved from 1.7 to 3.2
/// between runs minutes apart. Here a spell lands on both sides of a pair;
/// the median of the pairs' ratios is written to criterion's directory
/// (`paired.json`, read by bench/report.py) and printed.
fn paired<A, B>(mut arrow_json: impl FnMut() -> A, mut rtds_transform: impl FnMut() -> B) {
    const PAIRS: usize = 41;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..PAIRS)
        .map(|_| {
            let a = time(&mut || drop(arrow_json()));
            let b = time(&mut || drop(rtds_transform()));
            a / b
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let (low, median, high) = (ratios[PAIRS / 4], ratios[PAIRS / 2], ratios[PAIRS * 3 / 4]);
    let result = serde_json::json!({"faster": "transform_batch_5000/rtds_transform",
        "than": "transform_batch_5000/arrow_json_decode_only", "pairs": PAIRS,
        "median": median, "quartiles": [low, high]});
    println!(
        "paired: rtds_transform {median:.2}x arrow_json_decode_only (quartiles {low:.2}-{high:.2}, {PAIRS} pairs)"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), std::path::PathBuf::from);
    let file = target.join("criterion").join("paired.json");
    if let Err(e) = std::fs::write(&file, result.to_string()) {
        eprintln!("writing {}: {e}", file.display());
    }
}

criterion_group!(benches, transform);
criterion_main!(benches);
