//! CUDA benchmarks (feature `cuda`; run by `.gpu/run.sh`, see `scripts/gpu-bundle.sh`).
//!
//! For f32 and bf16 at 64M and 256M elements: the fused forward, backward and in-place ops,
//! candle-nn's composite `ops::leaky_relu`, and a device-to-device copy of the same bytes into a
//! preallocated buffer (the bandwidth limit); the same ops on views narrowed by one element (a
//! misaligned start: `*_narrow`) and on the transpose of an `[n / 4096, 4096]` tensor (a strided
//! walk: `*_transposed`, forward and backward). Timed with CUDA events (median of 30 after 5
//! warm-up runs). One JSON object per line, the format of `scripts/bench_torch.py`, then ratios
//! within this run. `cargo bench --features cuda --bench cuda [-- SIZES]`.
//!
//! PReLU (after the ratios, same format): a weight of 64 channels over `[n / 65536, 64, 1024]`
//! (NCHW), forward and backward (dx and dweight), and backward over the channel-last view
//! (`[n / 65536, 1024, 64]` permuted), for f32 and bf16.

use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
use candle_core::cuda_backend::cudarc::driver::DeviceRepr;
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{DType, Device, Result, Storage, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, PreluBackward, PreluOp};
use std::collections::HashMap;

const ALPHA: f64 = 0.01;

/// Median milliseconds of `iters` runs of `f`, timed with CUDA events on candle's stream.
fn time_ms(dev: &Device, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let stream = dev.as_cuda_device()?.cuda_stream();
    for _ in 0..5 {
        f()?;
    }
    dev.synchronize()?;
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut ms = Vec::new();
    for _ in 0..30 {
        let start = stream.record_event(flags).w()?;
        f()?;
        let end = stream.record_event(flags).w()?;
        end.synchronize().w()?;
        ms.push(start.elapsed_ms(&end).w()? as f64);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

/// A device-to-device copy of `x`'s storage into a preallocated buffer.
fn copy_ms<T: CudaDType + DeviceRepr>(dev: &Device, x: &Tensor) -> Result<f64> {
    let (s, _) = x.storage_and_layout();
    let Storage::Cuda(s) = &*s else {
        candle_core::bail!("not a CUDA tensor")
    };
    let src = s.as_cuda_slice::<T>()?;
    let cuda = dev.as_cuda_device()?;
    // SAFETY: only written (by the copy) and never read as T.
    let mut dst = unsafe { cuda.alloc::<T>(src.len()) }?;
    let stream = cuda.cuda_stream();
    time_ms(dev, || stream.memcpy_dtod(src, &mut dst).w())
}

fn main() -> Result<()> {
    let dev = Device::new_cuda(0)?;
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![64 << 20, 256 << 20]
    } else {
        sizes
    };
    let mut rows: HashMap<(usize, DType, &str), (f64, f64)> = HashMap::new();
    for &n in &sizes {
        for dtype in [DType::F32, DType::BF16] {
            let x = Tensor::randn(0f32, 1f32, n, &dev)?.to_dtype(dtype)?;
            let dy = Tensor::randn(0f32, 1f32, n, &dev)?.to_dtype(dtype)?;
            let es = dtype.size_in_bytes();
            let mut run = |op: &'static str, bytes: usize, ms: f64| {
                let gbs = bytes as f64 / ms / 1e6;
                println!(
                    "{{\"impl\": \"candle-leaky-relu\", \"op\": \"{op}\", \"dtype\": \"{}\", \"n\": {n}, \"ms\": {ms:.4}, \"gb_per_s\": {gbs:.1}}}",
                    dtype.as_str()
                );
                rows.insert((n, dtype, op), (ms, gbs));
            };
            let copy = match dtype {
                DType::F32 => copy_ms::<f32>(&dev, &x)?,
                _ => copy_ms::<half::bf16>(&dev, &x)?,
            };
            run("copy", 2 * n * es, copy);
            let ms = time_ms(&dev, || x.apply_op1(LeakyRelu(ALPHA)).map(drop))?;
            run("forward", 2 * n * es, ms);
            let ms = time_ms(&dev, || {
                x.apply_op2_no_bwd(&dy, &LeakyReluBackward(ALPHA)).map(drop)
            })?;
            run("backward", 3 * n * es, ms);
            let ms = time_ms(&dev, || x.inplace_op1(&LeakyRelu(ALPHA)))?;
            run("inplace", 2 * n * es, ms);
            let ms = time_ms(&dev, || candle_nn::ops::leaky_relu(&x, ALPHA).map(drop))?;
            run("candle_nn_composite", 2 * n * es, ms);
            // Narrowed by one element: the inputs start 2 or 4 bytes past a 16-byte boundary.
            let (xb, dyb) = (x.narrow(0, 1, n - 1)?, dy.narrow(0, 1, n - 1)?);
            let ms = time_ms(&dev, || xb.apply_op1(LeakyRelu(ALPHA)).map(drop))?;
            run("forward_narrow", 2 * n * es, ms);
            let ms = time_ms(&dev, || {
                xb.apply_op2_no_bwd(&dyb, &LeakyReluBackward(ALPHA))
                    .map(drop)
            })?;
            run("backward_narrow", 3 * n * es, ms);
            let ms = time_ms(&dev, || xb.inplace_op1(&LeakyRelu(ALPHA)))?;
            run("inplace_narrow", 2 * n * es, ms);
            if n % 4096 == 0 {
                let t = |v: &Tensor| v.reshape((n / 4096, 4096))?.t();
                let (xt, dyt) = (t(&x)?, t(&dy)?);
                let ms = time_ms(&dev, || xt.apply_op1(LeakyRelu(ALPHA)).map(drop))?;
                run("forward_transposed", 2 * n * es, ms);
                let ms = time_ms(&dev, || {
                    xt.apply_op2_no_bwd(&dyt, &LeakyReluBackward(ALPHA))
                        .map(drop)
                })?;
                run("backward_transposed", 3 * n * es, ms);
            }
        }
    }
    for &n in &sizes {
        for dtype in [DType::F32, DType::BF16] {
            let r = |op| rows[&(n, dtype, op)];
            println!(
                "{{\"ratios\": true, \"dtype\": \"{}\", \"n\": {n}, \"forward_vs_copy_bw\": {:.3}, \"backward_vs_copy_bw\": {:.3}, \"composite_time_over_ours\": {:.2}, \"narrow_time_over_aligned\": [{:.3}, {:.3}, {:.3}]{}}}",
                dtype.as_str(),
                r("forward").1 / r("copy").1,
                r("backward").1 / r("copy").1,
                r("candle_nn_composite").0 / r("forward").0,
                r("forward_narrow").0 / r("forward").0,
                r("backward_narrow").0 / r("backward").0,
                r("inplace_narrow").0 / r("inplace").0,
                rows.get(&(n, dtype, "forward_transposed")).map_or(String::new(), |t| format!(
                    ", \"transposed_time_over_contiguous\": [{:.3}, {:.3}]",
                    t.0 / r("forward").0,
                    rows[&(n, dtype, "backward_transposed")].0 / r("backward").0
                ))
            );
        }
    }
    prelu_rows(&dev, &sizes)
}

/// PReLU forward and backward with 64 channels of 1024 elements per batch row, NCHW and
/// channel-last: one JSON line each (bytes: x and dy read, the output written; the weight and
/// dweight are negligible).
fn prelu_rows(dev: &Device, sizes: &[usize]) -> Result<()> {
    for &n in sizes.iter().filter(|&&n| n % 65536 == 0) {
        for dtype in [DType::F32, DType::BF16] {
            let es = dtype.size_in_bytes();
            let x = Tensor::randn(0f32, 1f32, (n / 65536, 64, 1024), dev)?.to_dtype(dtype)?;
            let dy = Tensor::randn(0f32, 1f32, (n / 65536, 64, 1024), dev)?.to_dtype(dtype)?;
            let w = Tensor::randn(0f32, 1f32, 64, dev)?.to_dtype(dtype)?;
            let last = |t: &Tensor| t.reshape((n / 65536, 1024, 64))?.permute((0, 2, 1));
            let (xl, dyl) = (last(&x)?, last(&dy)?);
            let run = |op: &str, bytes: usize, ms: f64| {
                let gbs = bytes as f64 / ms / 1e6;
                println!(
                    "{{\"impl\": \"candle-leaky-relu\", \"op\": \"{op}\", \"dtype\": \"{}\", \"n\": {n}, \"ms\": {ms:.4}, \"gb_per_s\": {gbs:.1}}}",
                    dtype.as_str()
                );
            };
            let ms = time_ms(dev, || x.apply_op2_no_bwd(&w, &PreluOp).map(drop))?;
            run("prelu_forward", 2 * n * es, ms);
            let ms = time_ms(dev, || {
                x.apply_op3_no_bwd(&w, &dy, &PreluBackward).map(drop)
            })?;
            run("prelu_backward", 3 * n * es, ms);
            let ms = time_ms(dev, || {
                xl.apply_op3_no_bwd(&w, &dyl, &PreluBackward).map(drop)
            })?;
            run("prelu_backward_channel_last", 3 * n * es, ms);
        }
    }
    Ok(())
}
