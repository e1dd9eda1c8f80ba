//! CPU benchmarks of PReLU on an NCHW f32 tensor of 4M elements (16x64x64x64, a slope per
//! channel): the fused forward and backward against this crate's LeakyReLU on the same tensor
//! (the same memory traffic for the forward), candle-nn's composite `PReLU` (forward, and
//! forward + backward through autograd for both), and the same input as a channel-last view:
//! through the op (`*_channel_last`: a contiguous result, every element transposed) and through
//! the layer (`layer_channel_last`: a channel-last result, as PyTorch keeps the memory format).
//! Group `prelu_rows_f32_4M`: the same elements as a `(65536, 64)` matrix (a slope per column,
//! as after a linear layer). Results and ratios: BENCHMARKS.md.
//!
//! `cargo bench --bench prelu` (all) or e.g. `cargo bench --bench prelu -- backward`.

use candle_core::{Device, Tensor, Var};
use candle_leaky_relu::{
    LeakyRelu, LeakyReluBackward, LeakyReluExt, PReLU, PreluBackward, PreluOp,
};
use candle_nn::Module;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

const DIMS: (usize, usize, usize, usize) = (16, 64, 64, 64);

fn randn(dims: (usize, usize, usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1f32, dims, &Device::Cpu).expect("input")
}

fn benches(c: &mut Criterion) {
    let (n, ch, h, w) = DIMS;
    let x = randn(DIMS);
    let dy = randn(DIMS);
    let weight = Tensor::randn(0.2f32, 0.05, ch, &Device::Cpu).expect("weight");
    // The same logical tensors, stored NHWC and seen as NCHW.
    let x_cl = randn((n, h, w, ch)).permute((0, 3, 1, 2)).expect("view");
    let dy_cl = randn((n, h, w, ch)).permute((0, 3, 1, 2)).expect("view");
    let theirs = candle_nn::PReLU::new(weight.clone(), false);

    let mut g = c.benchmark_group("prelu_f32_4M");
    g.throughput(Throughput::Bytes((x.elem_count() * 4) as u64));
    g.bench_function("forward", |b| {
        b.iter(|| black_box(x.apply_op2(&weight, PreluOp).unwrap()))
    });
    g.bench_function("forward_channel_last", |b| {
        b.iter(|| black_box(x_cl.apply_op2(&weight, PreluOp).unwrap()))
    });
    g.bench_function("layer_channel_last", |b| {
        b.iter(|| black_box(x_cl.prelu(&weight).unwrap()))
    });
    g.bench_function("leaky_relu_forward", |b| {
        b.iter(|| black_box(x.apply_op1(LeakyRelu(0.2)).unwrap()))
    });
    g.bench_function("candle_nn_forward", |b| {
        b.iter(|| black_box(theirs.forward(&x).unwrap()))
    });
    g.bench_function("backward", |b| {
        b.iter(|| black_box(x.apply_op3(&weight, &dy, PreluBackward).unwrap()))
    });
    g.bench_function("backward_channel_last", |b| {
        b.iter(|| black_box(x_cl.apply_op3(&weight, &dy_cl, PreluBackward).unwrap()))
    });
    g.bench_function("leaky_relu_backward", |b| {
        b.iter(|| black_box(x.apply_op2_no_bwd(&dy, &LeakyReluBackward(0.2)).unwrap()))
    });
    // Forward + backward through candle's autograd (dx and dweight): both layers.
    let xv = Var::from_tensor(&x).expect("var");
    let wv = Var::from_tensor(&weight).expect("var");
    let (ours_v, theirs_v) = (
        PReLU::new(wv.as_tensor().clone(), false),
        candle_nn::PReLU::new(wv.as_tensor().clone(), false),
    );
    let grads = |m: &dyn Module| {
        let loss = (m.forward(xv.as_tensor()).unwrap() * &dy)
            .unwrap()
            .sum_all()
            .unwrap();
        black_box(loss.backward().unwrap())
    };
    g.sample_size(10);
    g.bench_function("autograd", |b| b.iter(|| grads(&ours_v)));
    g.bench_function("candle_nn_autograd", |b| b.iter(|| grads(&theirs_v)));
    g.bench_function("tensor_copy", |b| b.iter(|| black_box(x.copy().unwrap())));
    // The floor of any op that returns a contiguous tensor from a channel-last view: candle's
    // own copy of that view into contiguous storage (a transpose, no arithmetic).
    g.bench_function("channel_last_contiguous", |b| {
        b.iter(|| black_box(x_cl.contiguous().unwrap()))
    });
    g.finish();

    let rows = (n * h * w, ch);
    let (xr, dyr) = (
        x.reshape(rows).expect("rows"),
        dy.reshape(rows).expect("rows"),
    );
    let mut g = c.benchmark_group("prelu_rows_f32_4M");
    g.throughput(Throughput::Bytes((xr.elem_count() * 4) as u64));
    g.bench_function("forward", |b| {
        b.iter(|| black_box(xr.apply_op2(&weight, PreluOp).unwrap()))
    });
    g.bench_function("backward", |b| {
        b.iter(|| black_box(xr.apply_op3(&weight, &dyr, PreluBackward).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = cpu;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cpu);
