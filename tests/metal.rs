//! Metal-only checks (feature `metal`, on a machine with a Metal device): f64 refused, empty
//! tensors, and every dtype/slope/view of `tests/host` bit for bit against the CPU, forward,
//! backward and in place; PReLU: every case of `tests/prelu_host.rs` on the GPU (subnormal sums
//! included, which Apple GPUs flush in hardware arithmetic), f64 refused, empty inputs.
//! Type-checked for aarch64-apple-darwin by `scripts/ci-metal.sh`.
#![cfg(feature = "metal")]
mod common;
mod host;
#[path = "prelu_host/cases.rs"]
mod prelu_cases;

use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, PreluBackward, PreluOp};
use common::{assert_bits_eq, from_bits, to_bits};
use host::{patterns, ALPHAS, VIEWS};

fn metal() -> Option<Device> {
    common::gpu("Metal", || Device::new_metal(0))
}

#[test]
fn f64_is_refused() -> Result<()> {
    let Some(dev) = metal() else { return Ok(()) };
    let x = Tensor::new(&[-1.0f64, 2.0], &dev)?;
    let err = x.apply_op1(LeakyRelu(0.1)).unwrap_err().to_string();
    assert!(err.contains("leaky_relu") && err.contains("F64"), "{err}");
    assert!(x.inplace_op1(&LeakyRelu(0.1)).is_err());
    assert!(x.apply_op2_no_bwd(&x, &LeakyReluBackward(0.1)).is_err());
    Ok(())
}

#[test]
fn empty_tensors_dispatch_nothing() -> Result<()> {
    let Some(dev) = metal() else { return Ok(()) };
    for shape in [&[0][..], &[3, 0], &[0, 5]] {
        let x = Tensor::zeros(shape, DType::F32, &dev)?;
        assert_eq!(x.apply_op1(LeakyRelu(0.1))?.dims(), shape);
        assert_eq!(
            x.apply_op2_no_bwd(&x, &LeakyReluBackward(0.1))?.dims(),
            shape
        );
        x.inplace_op1(&LeakyRelu(0.1))?;
    }
    Ok(())
}

#[test]
fn views_match_cpu_bit_for_bit() -> Result<()> {
    let Some(dev) = metal() else { return Ok(()) };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let all = patterns(dtype);
        for (i, &(shape, view)) in VIEWS.iter().enumerate() {
            // x through view i, dy through view i + 3, inputs taken from all patterns
            let (dshape, dview) = VIEWS[(i + 3) % VIEWS.len()];
            let (n, dn) = (shape.iter().product(), dshape.iter().product());
            let bits = &all[i * 4099 % all.len()..][..n];
            let x = |d: &Device| from_bits(dtype, bits, shape, d).and_then(|t| view(&t));
            let dy = |d: &Device| from_bits(dtype, &all[..dn], dshape, d).and_then(|t| dview(&t));
            let (x_cpu, x_gpu, dy_cpu, dy_gpu) =
                (x(&Device::Cpu)?, x(&dev)?, dy(&Device::Cpu)?, dy(&dev)?);
            for alpha in ALPHAS {
                let what = format!("{dtype:?} view {i} alpha {alpha}");
                let fwd = |x: &Tensor| to_bits(&x.apply_op1(LeakyRelu(alpha))?);
                assert_bits_eq(&format!("fwd {what}"), &fwd(&x_gpu)?, &fwd(&x_cpu)?);
                let bwd =
                    |x: &Tensor, dy| to_bits(&x.apply_op2_no_bwd(dy, &LeakyReluBackward(alpha))?);
                let (got, want) = (bwd(&x_gpu, &dy_gpu)?, bwd(&x_cpu, &dy_cpu)?);
                assert_bits_eq(&format!("bwd {what}"), &got, &want);
                if !x_cpu.layout().has_internal_overlap() {
                    let (c, g) = (x(&Device::Cpu)?, x(&dev)?);
                    c.inplace_op1(&LeakyRelu(alpha))?;
                    g.inplace_op1(&LeakyRelu(alpha))?;
                    assert_bits_eq(&format!("in place {what}"), &to_bits(&g)?, &to_bits(&c)?);
                }
            }
        }
    }
    Ok(())
}

/// Every PReLU case of the host-run shader tests (`tests/prelu_host.rs`) through the ops on the
/// GPU, bit for bit against the CPU path: y, and dx ++ dweight.
#[test]
fn prelu_gpu_matches_cpu_on_every_host_case() -> Result<()> {
    let Some(dev) = metal() else { return Ok(()) };
    let cases = prelu_cases::case_set(&[DType::F32, DType::F16, DType::BF16], &dev);
    for (i, c) in cases.iter().enumerate() {
        let got = c.device_got.as_deref().expect("run on the device");
        assert_bits_eq(&format!("prelu case {i} ({})", c.what), got, &c.want);
    }
    eprintln!("{} PReLU cases equal on Metal", cases.len());
    Ok(())
}

/// f64 refused by PReLU; empty x: an empty y, and dweight all +0.0.
#[test]
fn prelu_f64_refused_and_empty() -> Result<()> {
    let Some(dev) = metal() else { return Ok(()) };
    let x = Tensor::new(&[-1.0f64, 2.0], &dev)?;
    let w = Tensor::new(&[0.5f64], &dev)?;
    let err = x.apply_op2(&w, PreluOp).unwrap_err().to_string();
    assert!(err.contains("prelu") && err.contains("F64"), "{err}");
    assert!(x.apply_op3(&w, &x, PreluBackward).is_err());
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let x = Tensor::zeros((0, 3, 4), dtype, &dev)?;
        let w = Tensor::ones(3, dtype, &dev)?;
        assert_eq!(x.apply_op2(&w, PreluOp)?.dims(), [0, 3, 4]);
        let both = x.apply_op3(&w, &x, PreluBackward)?;
        assert_bits_eq(
            &format!("{dtype:?} empty dweight"),
            &to_bits(&both)?,
            &[0, 0, 0],
        );
    }
    Ok(())
}
