//! CUDA-specific tests (feature `cuda`, and a CUDA device; without one they print SKIPPED and
//! pass): every case of the host-run kernel tests through the op on the GPU, empty and
//! one-element tensors, a view of more than 2^31 elements, and a strided view whose offsets pass
//! 2^32 (the 64-bit index entry points). PReLU: every case of `tests/prelu_host.rs` on the GPU,
//! empty inputs, repeated runs, and offsets past 2^32. (`tests/prelu.rs` runs its contract rows,
//! views, refusals and autograd on the GPU too.)
#![cfg(feature = "cuda")]

mod common;
mod host;
#[path = "prelu_host/cases.rs"]
mod prelu_cases;

use candle_core::cuda_backend::WrapErr;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Result, Storage, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, PreluBackward, PreluOp};
use common::{assert_bits_eq, from_bits, ref_fwd, to_bits, DTYPES};
use half::f16;

fn cuda() -> Option<Device> {
    common::gpu("CUDA", || Device::new_cuda(0))
}

#[test]
fn gpu_matches_cpu_on_every_host_case() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    for dtype in DTYPES {
        let cases = host::standard_cases(&[dtype], &dev)?;
        for (i, c) in cases.iter().enumerate() {
            let got = c.device_got.as_deref().expect("run on the device");
            let (l, a) = (&c.x.layout, c.alpha);
            let what = format!(
                "case {i} ({:?} alpha {a} {:?} {:?})",
                c.op,
                l.dims(),
                l.stride()
            );
            assert_bits_eq(&what, got, &c.want);
        }
        eprintln!("{dtype:?}: {} cases equal on CUDA", cases.len());
    }
    Ok(())
}

#[test]
fn empty_and_single_element() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    for dtype in DTYPES {
        for shape in [&[0usize][..], &[3, 0], &[0, 5, 2]] {
            let x = Tensor::zeros(shape, dtype, &dev)?;
            let y = x.apply_op1(LeakyRelu(0.1))?;
            assert_eq!((y.dims(), y.dtype()), (shape, dtype));
            let dx = x.apply_op2_no_bwd(&x, &LeakyReluBackward(0.1))?;
            assert_eq!(dx.dims(), shape);
            x.inplace_op1(&LeakyRelu(0.1))?;
        }
        let x = from_bits(dtype, &[common::canonical_nan(dtype) | 1], &[1], &dev)?;
        let want = ref_fwd(dtype, to_bits(&x)?[0], 0.1);
        assert_bits_eq(
            &format!("{dtype:?} 1 element"),
            &to_bits(&x.apply_op1(LeakyRelu(0.1))?)?,
            &[want],
        );
    }
    Ok(())
}

/// Whether a test that needs `need` bytes of device memory can run: when the device has less
/// free, it reports a skip with the figures; when it has enough, `alloc` must succeed, and a
/// failure is an error (a skip without `CANDLE_LEAKY_RELU_REQUIRE_GPU`).
fn big<T>(dev: &Device, need: usize, alloc: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    let (free, total) = (dev.as_cuda_device()?.cuda_stream().context())
        .mem_get_info()
        .w()?;
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let seen = format!(
        "needs {:.1} GiB, the device had {:.1} GiB free of {:.1} GiB",
        gib(need),
        gib(free),
        gib(total)
    );
    if free < need {
        eprintln!("SKIPPED: {seen}");
        return Ok(None);
    }
    match alloc() {
        Ok(t) => Ok(Some(t)),
        Err(e) if std::env::var_os("CANDLE_LEAKY_RELU_REQUIRE_GPU").is_some() => {
            panic!("allocation failed although the test {seen}: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: allocation failed ({seen}): {e}");
            Ok(None)
        }
    }
}

/// More than 2^31 f16 elements (4 GiB of input, outputs up to 6 GiB): contiguous, a misaligned
/// narrow and a strided broadcast, checked in full against the CPU.
#[test]
fn more_than_2_pow_31_elements() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let n = (1usize << 31) + 37;
    let host: Vec<f16> = (0..n + 1)
        .map(|i| f16::from_bits((i * 40503) as u16))
        .collect();
    let Some(x) = big(&dev, 11 << 30, || Tensor::from_vec(host, n + 1, &dev))? else {
        return Ok(());
    };
    let bits = |t: &Tensor| -> Result<Vec<u16>> {
        Ok(t.flatten_all()?
            .to_vec1::<f16>()?
            .iter()
            .map(|v| v.to_bits())
            .collect())
    };
    let check = |what: &str, gpu: &Tensor, cpu: &Tensor| -> Result<()> {
        let (g, c) = (bits(gpu)?, bits(cpu)?);
        assert_eq!(g.len(), c.len(), "{what}: length");
        if let Some(i) = (0..g.len()).find(|&i| g[i] != c[i]) {
            panic!("{what}: element {i}: got {:#x}, want {:#x}", g[i], c[i]);
        }
        Ok(())
    };
    let xc = x.to_device(&Device::Cpu)?;
    for (what, off) in [("contiguous", 0), ("misaligned", 1)] {
        let (v, vc) = (x.narrow(0, off, n)?, xc.narrow(0, off, n)?);
        check(
            what,
            &v.apply_op1(LeakyRelu(-0.5))?,
            &vc.apply_op1(LeakyRelu(-0.5))?,
        )?;
    }
    // Strided: a broadcast (stride 0) view with 3 * 2^30 > 2^31 outputs.
    let b = x
        .narrow(0, 3, 1 << 30)?
        .reshape((1, 1 << 30))?
        .broadcast_as((3, 1 << 30))?;
    let bc = xc
        .narrow(0, 3, 1 << 30)?
        .reshape((1, 1 << 30))?
        .broadcast_as((3, 1 << 30))?;
    check(
        "broadcast",
        &b.apply_op1(LeakyRelu(0.01))?,
        &bc.apply_op1(LeakyRelu(0.01))?,
    )?;
    Ok(())
}

#[test]
fn non_contract_dtypes_are_refused_on_cuda() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    for dtype in [DType::U8, DType::U32, DType::I64] {
        let x = Tensor::zeros(4, dtype, &dev)?;
        assert!(x.apply_op1(LeakyRelu(0.1)).is_err(), "{dtype:?} accepted");
    }
    Ok(())
}

/// A strided view whose offsets pass 2^32 elements (17 rows of 8, rows 2^28 + 8 apart, in an
/// 8.5 GiB f16 storage that is zero elsewhere): forward and backward must take the 64-bit index
/// entry points; 32-bit offsets would wrap to other rows. In place writes the rows in storage.
#[test]
fn offsets_past_2_pow_32() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let (rows, row) = (17, (1usize << 28) + 8);
    let cuda_dev = dev.as_cuda_device()?.clone();
    let Some(mut s) = big(&dev, (rows * row * 2) + (1 << 30), || {
        cuda_dev.alloc_zeros::<f16>(rows * row)
    })?
    else {
        return Ok(());
    };
    let vals: Vec<f16> = (0..rows * 8)
        .map(|i| f16::from_bits((i as u16).wrapping_mul(40503) ^ (0x8000 * (i as u16 & 1))))
        .collect();
    let stream = cuda_dev.cuda_stream();
    for r in 0..rows {
        let mut dst = s.slice_mut(r * row..r * row + 8);
        stream.memcpy_htod(&vals[r * 8..r * 8 + 8], &mut dst).w()?;
    }
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(s, cuda_dev.clone()));
    let t = Tensor::from_storage(storage, rows * row, BackpropOp::none(), false);
    let view = t.reshape((rows, row))?.narrow(1, 0, 8)?;
    assert_eq!(view.stride(), [row, 1]);
    let rev: Vec<f16> = vals.iter().rev().copied().collect();
    let cpu = Tensor::from_vec(vals, (rows, 8), &Device::Cpu)?;
    let dy_cpu = Tensor::from_vec(rev, (rows, 8), &Device::Cpu)?;
    let dy = dy_cpu.to_device(&dev)?;
    for (what, got, want) in [
        (
            "forward",
            view.apply_op1(LeakyRelu(-0.5))?,
            cpu.apply_op1(LeakyRelu(-0.5))?,
        ),
        (
            "backward",
            view.apply_op2_no_bwd(&dy, &LeakyReluBackward(0.01))?,
            cpu.apply_op2_no_bwd(&dy_cpu, &LeakyReluBackward(0.01))?,
        ),
    ] {
        assert_bits_eq(what, &to_bits(&got)?, &to_bits(&want)?);
    }
    view.inplace_op1(&LeakyRelu(1.5))?;
    let want = to_bits(&cpu.apply_op1(LeakyRelu(1.5))?)?;
    let (st, _) = t.storage_and_layout();
    let Storage::Cuda(st) = &*st else {
        panic!("a CUDA tensor")
    };
    let slice = st.as_cuda_slice::<f16>()?;
    for r in 0..rows {
        let got = stream.clone_dtoh(&slice.slice(r * row..r * row + 8)).w()?;
        let got: Vec<u64> = got.iter().map(|v| v.to_bits() as u64).collect();
        assert_bits_eq(&format!("in place, row {r}"), &got, &want[r * 8..r * 8 + 8]);
    }
    Ok(())
}

/// Every PReLU case of the host-run kernel tests (`tests/prelu_host.rs`: views, weights, block
/// edges, three tree passes, specials, subnormal sums) through the ops on the GPU, bit for bit
/// against the CPU path: y, and dx ++ dweight.
#[test]
fn prelu_gpu_matches_cpu_on_every_host_case() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let cases = prelu_cases::case_set(&DTYPES, &dev);
    for (i, c) in cases.iter().enumerate() {
        let got = c.device_got.as_deref().expect("run on the device");
        assert_bits_eq(&format!("prelu case {i} ({})", c.what), got, &c.want);
    }
    eprintln!("{} PReLU cases equal on CUDA", cases.len());
    Ok(())
}

/// Empty x: an empty y, and dweight all +0.0 (every channel empty); a weight of x's shape with
/// no elements; and the same backward twice gives the same bits (no atomics, a fixed order).
#[test]
fn prelu_empty_and_repeatable() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    for dtype in DTYPES {
        let x = Tensor::zeros((0, 3, 4), dtype, &dev)?;
        let w = Tensor::ones(3, dtype, &dev)?;
        assert_eq!(x.apply_op2(&w, PreluOp)?.dims(), [0, 3, 4]);
        let both = x.apply_op3(&w, &x, PreluBackward)?;
        assert_bits_eq(
            &format!("{dtype:?} empty dweight"),
            &to_bits(&both)?,
            &[0, 0, 0],
        );
        let e = Tensor::zeros((2, 0), dtype, &dev)?;
        assert_eq!(e.apply_op3(&e, &e, PreluBackward)?.dims(), [0]);
        // Finite values of both signs below 2 in magnitude (the top exponent bit clear), x
        // channel-last: 900 terms in each of 7 channels.
        let top = 1u64 << (8 * dtype.size_in_bytes() - 2);
        let bits: Vec<u64> = common::random_words(5)
            .take(2 * 6300)
            .map(|b| b & common::bit_mask(dtype) & !top)
            .collect();
        let x = from_bits(dtype, &bits[..6300], &[3, 300, 7], &dev)?.permute((0, 2, 1))?;
        let dy = from_bits(dtype, &bits[6300..], &[3, 7, 300], &dev)?;
        let w = Tensor::ones(7, dtype, &dev)?;
        let first = to_bits(&x.apply_op3(&w, &dy, PreluBackward)?)?;
        for _ in 0..3 {
            let again = to_bits(&x.apply_op3(&w, &dy, PreluBackward)?)?;
            assert_bits_eq(&format!("{dtype:?} again"), &again, &first);
        }
    }
    Ok(())
}

/// PReLU over a strided view whose offsets pass 2^32 elements (17 rows of 8, rows 2^28 + 8
/// apart, in an 8.5 GiB f16 storage that is zero elsewhere), a weight of 8 channels: forward
/// and backward (dx ++ dweight) must take the 64-bit index entry points.
#[test]
fn prelu_offsets_past_2_pow_32() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let (rows, row) = (17, (1usize << 28) + 8);
    let cuda_dev = dev.as_cuda_device()?.clone();
    let Some(mut s) = big(&dev, (rows * row * 2) + (1 << 30), || {
        cuda_dev.alloc_zeros::<f16>(rows * row)
    })?
    else {
        return Ok(());
    };
    let vals: Vec<f16> = (0..rows * 8)
        .map(|i| f16::from_bits((i as u16).wrapping_mul(40503) ^ (0x8000 * (i as u16 & 1))))
        .collect();
    let stream = cuda_dev.cuda_stream();
    for r in 0..rows {
        let mut dst = s.slice_mut(r * row..r * row + 8);
        stream.memcpy_htod(&vals[r * 8..r * 8 + 8], &mut dst).w()?;
    }
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(s, cuda_dev.clone()));
    let t = Tensor::from_storage(storage, rows * row, BackpropOp::none(), false);
    let view = t.reshape((rows, row))?.narrow(1, 0, 8)?;
    let rev: Vec<f16> = vals.iter().rev().copied().collect();
    let cpu = Tensor::from_vec(vals, (rows, 8), &Device::Cpu)?;
    let dy_cpu = Tensor::from_vec(rev, (rows, 8), &Device::Cpu)?;
    let w_cpu = Tensor::new(
        &[0.25f32, -0.5, 0.0, 1.5, 3.0, -0.0, 0.01, 7.0],
        &Device::Cpu,
    )?
    .to_dtype(DType::F16)?;
    let (dy, w) = (dy_cpu.to_device(&dev)?, w_cpu.to_device(&dev)?);
    let y = view.apply_op2(&w, PreluOp)?;
    assert_bits_eq(
        "prelu forward",
        &to_bits(&y)?,
        &to_bits(&cpu.apply_op2(&w_cpu, PreluOp)?)?,
    );
    let both = view.apply_op3(&w, &dy, PreluBackward)?;
    let want = cpu.apply_op3(&w_cpu, &dy_cpu, PreluBackward)?;
    assert_bits_eq("prelu backward", &to_bits(&both)?, &to_bits(&want)?);
    Ok(())
}
