//! The seeded generator alone, on one core: records/s and bytes/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtds::generate::Generator;

fn generator(c: &mut Criterion) {
    let generator = Generator::new(42);
    let mut buf = Vec::with_capacity(2048);
    let mut sample = Vec::new();
    for i in 0..1000 {
        generator.write_record(i, &mut sample);
    }
    let bytes_per_record = sample.len() as u64 / 1000;
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    group.bench_function("write_record", |b| {
        b.iter(|| {
            buf.clear();
            i += 1;
            black_box(generator.write_record(black_box(i), &mut buf))
        })
    });
    group.throughput(Throughput::Bytes(bytes_per_record));
    group.bench_function("write_record_bytes", |b| {
        b.iter(|| {
            buf.clear();
            i += 1;
            black_box(generator.write_record(black_box(i), &mut buf))
        })
    });
    group.finish();
}

criterion_group!(benches, generator);
criterion_main!(benches);
