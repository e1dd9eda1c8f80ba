//! CPU benchmarks: the fused op against candle-nn's composite `ops::leaky_relu`, candle's `relu`
//! (one kernel), `Tensor::copy` (allocation + single-threaded copy of the same tensor),
//! `fresh_copy` (the same bytes copied into freshly allocated memory with the op's own threading:
//! the limit for an op that writes a new tensor) and a plain memcpy into a preallocated buffer.
//! Results and ratios: BENCHMARKS.md.
//!
//! `cargo bench --bench leaky_relu` (all) or e.g. `cargo bench --bench leaky_relu -- f32_4M`;
//! `RAYON_NUM_THREADS=1` for one thread; `CANDLE_LEAKY_RELU_CPU_TIER=scalar|avx2|avx512` caps the
//! kernels' instruction set.

use candle_core::{DType, Device, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, LeakyReluExt};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use std::time::Duration;

const ALPHA: f64 = 0.01;

fn input(n: usize, dtype: DType) -> Tensor {
    // Half the values negative, all normal: no subnormal slow paths in any implementation.
    Tensor::randn(0f32, 1f32, n, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .expect("input")
}

/// `n` elements of `bytes` bytes each copied into a fresh allocation, on rayon tasks of 2^16
/// elements from 2^18 elements on: the op's own split (`src/cpu/mod.rs`) without its kernel.
fn fresh_copy(src: &[u8], n: usize) -> Vec<u8> {
    let mut dst: Vec<u8> = Vec::with_capacity(src.len());
    let task = (src.len() / n.max(1)) << 16;
    let spare = &mut dst.spare_capacity_mut()[..src.len()];
    let copy = |(d, s): (&mut [std::mem::MaybeUninit<u8>], &[u8])| {
        assert_eq!(d.len(), s.len());
        // SAFETY: `d` and `s` are distinct buffers of the same length (checked just above).
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), d.as_mut_ptr().cast(), s.len()) };
    };
    if n >= 1 << 18 {
        spare
            .par_chunks_mut(task)
            .zip(src.par_chunks(task))
            .for_each(copy);
    } else {
        copy((spare, src));
    }
    // SAFETY: every one of the `src.len()` bytes was written just above.
    unsafe { dst.set_len(src.len()) };
    dst
}

fn forward(c: &mut Criterion, name: &str, n: usize, dtype: DType, baselines: bool) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes((n * dtype.size_in_bytes()) as u64));
    if n >= 1 << 24 {
        g.sample_size(10).measurement_time(Duration::from_secs(6));
    }
    let x = input(n, dtype);
    let dy = input(n, dtype);
    g.bench_function("leaky_relu", |b| {
        b.iter(|| black_box(x.apply_op1(LeakyRelu(ALPHA)).unwrap()))
    });
    g.bench_function("tensor_copy", |b| b.iter(|| black_box(x.copy().unwrap())));
    let bytes = vec![0x3Cu8; n * dtype.size_in_bytes()];
    g.bench_function("fresh_copy", |b| {
        b.iter(|| black_box(fresh_copy(black_box(&bytes), n)))
    });
    if baselines {
        g.bench_function("candle_nn_composite", |b| {
            b.iter(|| black_box(candle_nn::ops::leaky_relu(&x, ALPHA).unwrap()))
        });
        g.bench_function("candle_relu", |b| b.iter(|| black_box(x.relu().unwrap())));
        g.bench_function("backward", |b| {
            b.iter(|| black_box(x.apply_op2_no_bwd(&dy, &LeakyReluBackward(ALPHA)).unwrap()))
        });
        // Slope -1 flips negatives once and then leaves them: no values shrink into subnormals
        // over the iterations, and the memory traffic is the same on every call.
        let y = x.copy().unwrap();
        g.bench_function("inplace", |b| b.iter(|| y.leaky_relu_(-1.0).unwrap()));
    }
    g.finish();
}

/// The physical limit: read n * 4 bytes, write them into a buffer that is already mapped.
fn memcpy(c: &mut Criterion, name: &str, n: usize) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes((n * 4) as u64));
    if n >= 1 << 24 {
        g.sample_size(10).measurement_time(Duration::from_secs(6));
    }
    let src = vec![1.5f32; n];
    let mut dst = vec![0f32; n];
    g.bench_function("memcpy_prealloc", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    forward(c, "f32_4K", 1 << 12, DType::F32, true);
    forward(c, "f32_256K", 1 << 18, DType::F32, true);
    forward(c, "f32_4M", 1 << 22, DType::F32, true);
    memcpy(c, "f32_4M", 1 << 22);
    forward(c, "f16_4M", 1 << 22, DType::F16, true);
    forward(c, "bf16_4M", 1 << 22, DType::BF16, true);
    forward(c, "f64_4M", 1 << 22, DType::F64, false);
    forward(c, "f32_64M", 1 << 26, DType::F32, false);
    memcpy(c, "f32_64M", 1 << 26);
    // Around the rayon threshold.
    for n in [1 << 16, 1 << 17, 1 << 19] {
        let mut g = c.benchmark_group("threshold");
        let x = input(n, DType::F32);
        g.throughput(Throughput::Bytes((n * 4) as u64));
        g.bench_with_input(BenchmarkId::new("leaky_relu", n), &x, |b, x| {
            b.iter(|| black_box(x.apply_op1(LeakyRelu(ALPHA)).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("tensor_copy", n), &x, |b, x| {
            b.iter(|| black_box(x.copy().unwrap()))
        });
        g.finish();
    }
}

criterion_group! {
    name = cpu;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cpu);
