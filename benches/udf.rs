//! Criterion benchmarks of the built-in UDFs through SQL, as a user runs them, on an in-memory
//! dataset (no I/O): 64x64 frames of 128x128 uint16 (128 MiB) and float32 (256 MiB).
//!
//! `cargo bench --bench udf`; throughput is reported in input bytes per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::ArrayD;
use std::sync::Arc;
use tessera::Context;
use tessera::dataset::formats::memory::MemoryDataset;

fn context() -> Context {
    let ctx = Context::new().unwrap();
    let (ny, nx, sy, sx) = (64, 64, 128, 128);
    let n = ny * nx * sy * sx;
    let u16s = ArrayD::from_shape_vec(vec![ny, nx, sy, sx], (0..n).map(|i| (i % 1021) as u16).collect()).unwrap();
    let f32s = ArrayD::from_shape_vec(vec![ny, nx, sy, sx], (0..n).map(|i| (i % 1021) as f32).collect()).unwrap();
    ctx.register_dataset("u16", Arc::new(MemoryDataset::new(u16s).unwrap())).unwrap();
    ctx.register_dataset("f32", Arc::new(MemoryDataset::new(f32s).unwrap())).unwrap();
    ctx
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = context();
    let mut group = c.benchmark_group("sql");
    group.sample_size(10);
    for (table, bytes) in [("u16", 2u64), ("f32", 4)] {
        group.throughput(Throughput::Bytes(64 * 64 * 128 * 128 * bytes));
        for udf in ["udf_sum", "udf_sum_sig"] {
            let q = format!("SELECT {udf}(tile) FROM {table}");
            group.bench_function(format!("{udf}/{table}"), |b| {
                b.iter(|| rt.block_on(async { ctx.sql(&q).await.unwrap().collect().await.unwrap() }))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
