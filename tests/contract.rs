//! One test per row of the numerics contract (NUMERICS.md), per dtype, on every device.
//! Expected bits come from the test-side scalar reference (`common::ref_fwd`/`ref_bwd`) and,
//! for the contract's named consequences, from values written out by hand.

mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, LeakyReluExt};
use common::*;

/// Slopes used throughout: the default, the golden ones, ReLU, above one, tiny (subnormal
/// products in every dtype) and a value that is not exact in f32.
const ALPHAS: [f64; 8] = [0.01, 0.2, -0.5, 0.0, 1.5, 3.0, 1e-30, 0.1];

/// Bit patterns worth a look in every dtype: signed zeros, infinities, NaN payloads, subnormals,
/// extremes and ordinary values. Built from the dtype's layout (sign, exponent, mantissa bits).
fn specials(dtype: DType) -> Vec<u64> {
    let (bits, man) = match dtype {
        DType::F16 => (16, 10),
        DType::BF16 => (16, 7),
        DType::F32 => (32, 23),
        DType::F64 => (64, 52),
        d => panic!("{d:?}"),
    };
    let sign = 1u64 << (bits - 1);
    let exp_all = (sign - 1) & !((1u64 << man) - 1);
    let one = (exp_all >> 1) & exp_all; // exponent bias, mantissa 0
    let quiet = 1u64 << (man - 1);
    let mut v = vec![
        0,
        exp_all,                // +inf
        exp_all | quiet,        // canonical NaN
        exp_all | quiet | 0x15, // quiet NaN with payload
        exp_all | 1,            // signalling NaN
        exp_all | (quiet - 1),  // signalling NaN, all payload bits
        sign - 1,               // NaN, all ones
        1,                      // min subnormal
        2,
        3,
        quiet,            // mid subnormal
        (1 << man) - 1,   // max subnormal
        1 << man,         // min normal
        (1 << man) + 1,   // min normal + 1 ulp
        exp_all - 1,      // max finite
        exp_all - 2,      // max finite - 1 ulp
        one,              // 1.0
        one - 1,          // 1 - ulp
        one + 1,          // 1 + ulp
        one + quiet,      // 1.5
        one + (1 << man), // 2.0
        one - (1 << man), // 0.5
        one + (5 << (man - 3)),
    ];
    v.extend(v.clone().into_iter().map(|b| b | sign));
    v
}

/// A deterministic spread of bit patterns, to sit next to the specials.
fn randoms(dtype: DType, n: usize, seed: u64) -> Vec<u64> {
    random_words(seed)
        .take(n)
        .map(|s| s & bit_mask(dtype))
        .collect()
}

/// Every 16-bit pattern for f16/bf16; specials and randoms for f32/f64.
fn inputs(dtype: DType) -> Vec<u64> {
    match dtype {
        DType::F16 | DType::BF16 => (0..=0xFFFF).collect(),
        _ => [specials(dtype), randoms(dtype, 4000, 7)].concat(),
    }
}

fn is_nan(dtype: DType, b: u64) -> bool {
    match dtype {
        DType::F16 => half::f16::from_bits(b as u16).is_nan(),
        DType::BF16 => half::bf16::from_bits(b as u16).is_nan(),
        DType::F32 => f32::from_bits(b as u32).is_nan(),
        _ => f64::from_bits(b).is_nan(),
    }
}

fn is_positive(dtype: DType, b: u64) -> bool {
    let sign = 1u64 << (dtype.size_in_bytes() * 8 - 1);
    !is_nan(dtype, b) && b & sign == 0 && b != 0
}

/// Runs `body(dev, dtype)` for every device and every dtype it supports.
fn each(mut body: impl FnMut(&Device, DType) -> Result<()>) -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES {
            if supports(&dev, dtype) {
                body(&dev, dtype)?;
            }
        }
    }
    Ok(())
}

/// Forward of `xs` through all three entry points (op, in-place on a copy, Module), each
/// checked against `want`.
fn check_fwd(dev: &Device, dtype: DType, xs: &[u64], alpha: f64, want: &[u64]) -> Result<()> {
    let what = format!("{dev:?} {dtype:?} alpha={alpha}");
    let x = from_bits(dtype, xs, &[xs.len()], dev)?;
    assert_bits_eq(
        &format!("{what} op"),
        &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?,
        want,
    );
    let y = x.copy()?;
    y.leaky_relu_(alpha)?;
    assert_bits_eq(&format!("{what} inplace"), &to_bits(&y)?, want);
    let m = candle_nn::Module::forward(&LeakyRelu(alpha), &x)?;
    assert_bits_eq(&format!("{what} module"), &to_bits(&m)?, want);
    Ok(())
}

fn check_bwd(
    dev: &Device,
    dtype: DType,
    xs: &[u64],
    dys: &[u64],
    alpha: f64,
    want: &[u64],
) -> Result<()> {
    let x = from_bits(dtype, xs, &[xs.len()], dev)?;
    let dy = from_bits(dtype, dys, &[dys.len()], dev)?;
    let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
    assert_bits_eq(
        &format!("{dev:?} {dtype:?} alpha={alpha} bwd"),
        &to_bits(&dx)?,
        want,
    );
    Ok(())
}

// ---- Forward, row 1: x > 0 (incl. +inf, positive subnormals) -> x, bits unchanged.

#[test]
fn fwd_row_positive_passes_bits() -> Result<()> {
    each(|dev, dtype| {
        let xs: Vec<u64> = inputs(dtype)
            .into_iter()
            .filter(|&b| is_positive(dtype, b))
            .collect();
        assert!(xs.len() > 20);
        for alpha in ALPHAS {
            check_fwd(dev, dtype, &xs, alpha, &xs)?;
        }
        Ok(())
    })
}

// ---- Forward, row 2: x NaN (any payload, either sign) -> x, bits unchanged.

#[test]
fn fwd_row_nan_passes_bits() -> Result<()> {
    each(|dev, dtype| {
        let xs: Vec<u64> = inputs(dtype)
            .into_iter()
            .filter(|&b| is_nan(dtype, b))
            .collect();
        assert!(xs.len() >= 8, "{dtype:?}");
        for alpha in ALPHAS {
            check_fwd(dev, dtype, &xs, alpha, &xs)?;
        }
        Ok(())
    })
}

// ---- Forward, row 3: otherwise -> R_T(C(x) * a); NaN product -> canonical NaN.

#[test]
fn fwd_row_nonpositive_scaled() -> Result<()> {
    each(|dev, dtype| {
        let xs: Vec<u64> = (inputs(dtype).into_iter())
            .filter(|&b| !is_positive(dtype, b) && !is_nan(dtype, b))
            .collect();
        for alpha in ALPHAS {
            let want: Vec<u64> = xs.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
            check_fwd(dev, dtype, &xs, alpha, &want)?;
        }
        Ok(())
    })
}

#[test]
fn fwd_row_nan_product_is_canonical() -> Result<()> {
    each(|dev, dtype| {
        let ninf = to_bits(&Tensor::new(&[f64::NEG_INFINITY], &Device::Cpu)?.to_dtype(dtype)?)?;
        let nan = canonical_nan(dtype);
        check_fwd(dev, dtype, &ninf, 0.0, &[nan])?;
        check_fwd(dev, dtype, &ninf, -0.0, &[nan])
    })
}

/// The consequences NUMERICS.md lists, with values written out by hand.
#[test]
fn fwd_named_consequences() -> Result<()> {
    let (z, nz, inf, ninf) = (0.0f64, -0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    #[rustfmt::skip]
    let cases: &[(f64, f64, f64)] = &[
        // (x, alpha, y)
        (nz, 0.01, nz), (nz, 0.5, nz), (nz, -0.5, z), (z, 0.01, z), (z, 0.0, z), (z, -2.0, nz),
        (ninf, 0.01, ninf), (ninf, -0.5, inf), (inf, -0.5, inf), (inf, 0.0, inf),
        (-2.0, 0.0, nz), (-3.0, 0.0, nz), (-2.0, 0.5, -1.0), (-2.0, 1.5, -3.0), (-2.0, -0.5, 1.0),
        (2.0, 1.5, 2.0), (2.0, -0.5, 2.0), (-4.0, 3.0, -12.0), (0.25, 0.0, 0.25),
    ];
    each(|dev, dtype| {
        for &(x, alpha, y) in cases {
            let xb = to_bits(&Tensor::new(&[x], &Device::Cpu)?.to_dtype(dtype)?)?;
            let yb = to_bits(&Tensor::new(&[y], &Device::Cpu)?.to_dtype(dtype)?)?;
            check_fwd(dev, dtype, &xb, alpha, &yb)?;
        }
        Ok(())
    })
}

/// Subnormal inputs and subnormal products are kept, never flushed to zero.
#[test]
fn fwd_subnormals_kept() -> Result<()> {
    each(|dev, dtype| {
        let sign = 1u64 << (dtype.size_in_bytes() * 8 - 1);
        // In units of the min subnormal: 1 * 1.5 and 3 * 1.5 tie to even (2, 4); 3 * 0.5 ties to 2.
        check_fwd(
            dev,
            dtype,
            &[sign | 1, sign | 3, sign | 4],
            1.5,
            &[sign | 2, sign | 4, sign | 6],
        )?;
        check_fwd(
            dev,
            dtype,
            &[sign | 3, sign | 4],
            0.5,
            &[sign | 2, sign | 2],
        )?;
        check_fwd(dev, dtype, &[1, 2, 3], 0.5, &[1, 2, 3])
    })
}

/// `alpha as f32` for f16/bf16/f32 (not rounded to the dtype), `alpha` itself for f64:
/// alpha = 1 + 2^-20 is 1 in f16/bf16, distinct in f32; alpha = 1 + 2^-40 is distinct only in f64.
#[test]
fn slope_rounding_per_dtype() -> Result<()> {
    each(|dev, dtype| {
        // x = -(2^14); x * (1 + 2^-20) in f32 is -(2^14 + 2^-6), which rounds to -(2^14) in f16
        // and bf16 but survives in f32.
        let x = -16384.0f64;
        for alpha in [1.0 + 2f64.powi(-20), 1.0 + 2f64.powi(-40)] {
            let want = match dtype {
                DType::F64 => x * alpha,
                DType::F32 => (x as f32 * alpha as f32) as f64,
                _ => x,
            };
            let xb = to_bits(&Tensor::new(&[x], &Device::Cpu)?.to_dtype(dtype)?)?;
            let yb = to_bits(&Tensor::new(&[want], &Device::Cpu)?.to_dtype(dtype)?)?;
            check_fwd(dev, dtype, &xb, alpha, &yb)?;
        }
        Ok(())
    })
}

// ---- Backward, row 1: x > 0 -> dy, bits unchanged (NaN dy payloads too).
// ---- Backward, row 2: otherwise (x <= 0 or NaN) -> R_T(C(dy) * a); NaN product canonical.

#[test]
fn bwd_rows_against_reference() -> Result<()> {
    each(|dev, dtype| {
        let xs = inputs(dtype);
        let mut dys = randoms(dtype, xs.len(), 11);
        let sp = specials(dtype);
        for (i, d) in dys.iter_mut().enumerate().step_by(3) {
            *d = sp[i % sp.len()];
        }
        for alpha in ALPHAS {
            let want: Vec<u64> = (xs.iter().zip(&dys))
                .map(|(&x, &g)| ref_bwd(dtype, x, g, alpha))
                .collect();
            check_bwd(dev, dtype, &xs, &dys, alpha, &want)?;
            // Row 1 spelled out: where x > 0 the gradient is dy's own bits.
            for ((&x, &g), &w) in xs.iter().zip(&dys).zip(&want) {
                if is_positive(dtype, x) {
                    assert_eq!(w, g);
                }
            }
        }
        Ok(())
    })
}

#[test]
fn bwd_named_consequences() -> Result<()> {
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    #[rustfmt::skip]
    let cases: &[(f64, f64, f64, f64)] = &[
        // (x, dy, alpha, dx): gradient at 0 is alpha; NaN x scales dy; inf * 0 is NaN.
        (0.0, 1.0, 0.01, 0.01), (-0.0, 1.0, 0.25, 0.25), (0.0, 2.0, -0.5, -1.0),
        (nan, 2.0, 0.5, 1.0), (-1.0, inf, 0.0, nan), (-1.0, -inf, 0.0, nan),
        (-1.0, nan, 0.5, nan), (-1.0, inf, 0.5, inf), (3.0, -2.0, 0.5, -2.0),
        (-1.0, -2.0, 0.0, -0.0),
    ];
    each(|dev, dtype| {
        for &(x, dy, alpha, dx) in cases {
            let b = |v: f64| -> Result<Vec<u64>> {
                let bits = to_bits(&Tensor::new(&[v], &Device::Cpu)?.to_dtype(dtype)?)?;
                Ok(if v.is_nan() {
                    vec![canonical_nan(dtype)]
                } else {
                    bits
                })
            };
            check_bwd(dev, dtype, &b(x)?, &b(dy)?, alpha, &b(dx)?)?;
        }
        // dy NaN with a payload where x > 0: passed through untouched.
        let payload = canonical_nan(dtype) | 0x5;
        let one = to_bits(&Tensor::new(&[1.0f64], &Device::Cpu)?.to_dtype(dtype)?)?;
        check_bwd(dev, dtype, &one, &[payload], 0.5, &[payload])
    })
}

// ---- Slope: alpha must be finite; refused when built or applied, nothing written.

#[test]
fn slope_non_finite_refused_everywhere() -> Result<()> {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = LeakyRelu::new(bad).unwrap_err().to_string();
        assert!(
            e.contains("leaky_relu") && e.contains(&bad.to_string()),
            "{e}"
        );
        assert!(LeakyReluBackward::new(bad).is_err());
        each(|dev, dtype| {
            let x = Tensor::new(&[-1.0f64, 2.0], dev)?.to_dtype(dtype)?;
            let before = to_bits(&x)?;
            let e = x.apply_op1(LeakyRelu(bad)).unwrap_err().to_string();
            assert!(e.contains("leaky_relu") && e.contains("alpha"), "{e}");
            let e = x.leaky_relu_(bad).unwrap_err().to_string();
            assert!(
                e.contains("leaky_relu_") && e.contains(&bad.to_string()),
                "{e}"
            );
            assert_eq!(to_bits(&x)?, before, "in-place wrote despite the error");
            let e = (x.apply_op2_no_bwd(&x, &LeakyReluBackward(bad)))
                .unwrap_err()
                .to_string();
            assert!(e.contains("leaky_relu_backward"), "{e}");
            Ok(())
        })?;
    }
    for ok in [0.0, -0.0, -3.5, 7.0, f64::MAX, f64::MIN_POSITIVE] {
        assert_eq!(LeakyRelu::new(ok)?, LeakyRelu(ok));
    }
    assert_eq!(LeakyRelu::default(), LeakyRelu(0.01));
    // Equal ops compute equal bits: the slopes are compared by their bits.
    assert_ne!(LeakyRelu(0.0), LeakyRelu(-0.0));
    assert_ne!(LeakyReluBackward(0.0), LeakyReluBackward(-0.0));
    assert_eq!(LeakyRelu(f64::NAN), LeakyRelu(f64::NAN));
    let ops: std::collections::HashSet<_> =
        [LeakyRelu(0.1), LeakyRelu(0.1), LeakyRelu(-0.0)].into();
    assert_eq!(ops.len(), 2);
    Ok(())
}

// ---- Slope: finite in f64 but infinite as f32 — refused for f16/bf16/f32 tensors on every entry
// point (error naming the op, the value and the dtype; nothing written), accepted for f64.

/// Slopes whose `as f32` is ±inf: beyond f32::MAX by more than half an ulp.
const OVERFLOWING: [f64; 5] = [f64::MAX, 1e39, -3.5e38, 3.4028236e38, f64::MIN];

#[test]
fn slope_overflowing_f32_refused_for_f32_compute() -> Result<()> {
    for alpha in OVERFLOWING {
        assert!(
            (alpha as f32).is_infinite(),
            "{alpha:e} is not an overflowing slope"
        );
        // Not refused when built: the dtype is unknown there.
        assert_eq!(LeakyRelu::new(alpha)?, LeakyRelu(alpha));
        each(|dev, dtype| {
            let x = Tensor::new(&[-1.0f64, 0.0, 2.0], dev)?.to_dtype(dtype)?;
            let dy = Tensor::new(&[1.0f64, -1.0, 1.0], dev)?.to_dtype(dtype)?;
            let before = to_bits(&x)?;
            if dtype == DType::F64 {
                let want: Vec<u64> = before.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
                assert_bits_eq(
                    "f64 forward",
                    &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?,
                    &want,
                );
                let got = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
                let want: Vec<u64> = (before.iter().zip(to_bits(&dy)?))
                    .map(|(&x, g)| ref_bwd(dtype, x, g, alpha))
                    .collect();
                assert_bits_eq("f64 backward", &to_bits(&got)?, &want);
                x.leaky_relu_(alpha)?;
                let want: Vec<u64> = before.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
                assert_bits_eq("f64 in place", &to_bits(&x)?, &want);
                return Ok(());
            }
            let refused = |e: candle_core::Error, op: &str| {
                let e = e.to_string();
                let named = e.contains(op) && e.contains(&format!("{alpha:e}"));
                assert!(
                    named && e.contains(dtype.as_str()),
                    "{dev:?} {dtype:?}: {e}"
                );
            };
            refused(x.apply_op1(LeakyRelu(alpha)).unwrap_err(), "leaky_relu:");
            refused(x.leaky_relu(alpha).unwrap_err(), "leaky_relu:");
            refused(
                candle_leaky_relu::leaky_relu(&x, alpha).unwrap_err(),
                "leaky_relu:",
            );
            refused(
                x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))
                    .unwrap_err(),
                "leaky_relu_backward:",
            );
            refused(x.leaky_relu_(alpha).unwrap_err(), "leaky_relu_:");
            refused(
                x.inplace_op1(&LeakyRelu(alpha)).unwrap_err(),
                "leaky_relu_:",
            );
            assert_eq!(to_bits(&x)?, before, "in-place wrote despite the error");
            // Through autograd too: the forward op already refuses.
            let v = candle_core::Var::from_tensor(&x)?;
            assert!(v.apply_op1(LeakyRelu(alpha)).is_err());
            Ok(())
        })?;
    }
    // The largest slopes that stay finite as f32 are accepted and used as rounded.
    for alpha in [f32::MAX as f64, -(f32::MAX as f64), 3.4028235e38] {
        each(|dev, dtype| {
            let x = Tensor::new(&[-1.0f64, -0.0, 1e-3], dev)?.to_dtype(dtype)?;
            let want: Vec<u64> = to_bits(&x)?
                .iter()
                .map(|&b| ref_fwd(dtype, b, alpha))
                .collect();
            assert_bits_eq(
                "max slope",
                &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?,
                &want,
            );
            Ok(())
        })?;
    }
    Ok(())
}

// ---- Dtypes: anything but f16/bf16/f32/f64 is UnsupportedDTypeForOp naming the op.

#[test]
fn dtype_unsupported_refused() -> Result<()> {
    for dev in devices() {
        for dtype in [DType::U8, DType::U32, DType::I64, DType::F8E4M3] {
            let Ok(x) = Tensor::new(&[1.0f32, -2.0], &dev).and_then(|t| t.to_dtype(dtype)) else {
                continue; // this device cannot hold the dtype at all
            };
            let before = x.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let check = |e: candle_core::Error, op: &str| {
                let s = e.to_string();
                assert!(
                    matches!(e, candle_core::Error::UnsupportedDTypeForOp(d, o) if d == dtype && o == op),
                    "{s}"
                );
            };
            check(x.apply_op1(LeakyRelu(0.1)).unwrap_err(), "leaky_relu");
            check(x.leaky_relu_(0.1).unwrap_err(), "leaky_relu_");
            check(
                x.apply_op2_no_bwd(&x, &LeakyReluBackward(0.1)).unwrap_err(),
                "leaky_relu_backward",
            );
            assert_eq!(x.to_dtype(DType::F32)?.to_vec1::<f32>()?, before);
        }
    }
    Ok(())
}

#[test]
fn bwd_operands_must_match() -> Result<()> {
    for dev in devices() {
        let x = Tensor::new(&[1.0f32, -2.0], &dev)?;
        let e = x.apply_op2_no_bwd(&x.to_dtype(DType::F16)?, &LeakyReluBackward(0.1));
        assert!(e.unwrap_err().to_string().contains("leaky_relu_backward"));
        let e = x.apply_op2_no_bwd(&Tensor::new(&[1.0f32], &dev)?, &LeakyReluBackward(0.1));
        assert!(e.unwrap_err().to_string().contains("leaky_relu_backward"));
    }
    Ok(())
}

// ---- Names: every error names the op; candle prints the ops' own names in its errors too.

#[test]
fn op_names_as_candle_prints_them() -> Result<()> {
    use candle_core::{CustomOp1, CustomOp2, InplaceOp1};
    assert_eq!(CustomOp1::name(&LeakyRelu(0.1)), "leaky_relu");
    assert_eq!(
        CustomOp2::name(&LeakyReluBackward(0.1)),
        "leaky_relu_backward"
    );
    assert_eq!(InplaceOp1::name(&LeakyRelu(0.1)), "leaky_relu_");
    // candle's own overlap refusal, before any of ours, carries the in-place name.
    let b = Tensor::new(&[1.0f32], &Device::Cpu)?.broadcast_as(4)?;
    let e = b.inplace_op1(&LeakyRelu(0.1)).unwrap_err().to_string();
    assert!(e.starts_with("leaky_relu_:"), "{e}");
    Ok(())
}
