//! CUDA-specific tests (feature `cuda`, and a CUDA device; without one they print SKIPPED and
//! pass): every case of the host-run kernel tests through the op on the GPU, empty and
//! one-element tensors, and a view of more than 2^31 elements (64-bit indexing).
#![cfg(feature = "cuda")]

mod common;
mod host;

use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
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

/// More than 2^31 f16 elements (8 GiB of device memory): contiguous (vector path), a
/// misaligned narrow (scalar path) and a strided broadcast, checked in full against the CPU.
#[test]
fn more_than_2_pow_31_elements() -> Result<()> {
    let Some(dev) = cuda() else { return Ok(()) };
    let n = (1usize << 31) + 37;
    let host: Vec<f16> = (0..n + 1)
        .map(|i| f16::from_bits((i * 40503) as u16))
        .collect();
    let x = match Tensor::from_vec(host, n + 1, &dev) {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot allocate {} GiB on the device ({e})",
                (n * 2) >> 30
            );
            return Ok(());
        }
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
