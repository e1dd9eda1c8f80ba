//! Every CPU kernel tier through the public API, against the test-side reference of the contract
//! (`common::ref_fwd` / `ref_bwd`), bit for bit.
//!
//! The tier is chosen once per process (`CANDLE_LEAKY_RELU_CPU_TIER=scalar|avx2|avx512`), so
//! `tier_scalar`, `tier_avx2` and `tier_avx512` each run this file's `contract_in_this_tier` in
//! a child process with the variable set, and check that the child ran the tier it was given
//! (`candle_leaky_relu::cpu_tier()`). A tier this CPU lacks prints `SKIPPED tier ...` and runs
//! nothing; it is not a pass of that tier. Run alone, `contract_in_this_tier` checks whichever
//! tier the process picked (the best one, unless the variable is set).
//!
//! What each tier runs: every f16/bf16 pattern (forward, backward with x and with dy over every
//! pattern, in place), f32/f64 specials and random patterns, every length 0..=64 at every start
//! 0..=16 (contiguous views with offsets: the kernels' tails and misaligned loads and stores),
//! random strided views (transposes and narrows: short unit-stride runs), and a view past the
//! parallel threshold.

mod common;

use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, LeakyReluExt};
use common::*;
use std::process::Command;

const VAR: &str = "CANDLE_LEAKY_RELU_CPU_TIER";
const SLOPES: [f64; 5] = [0.01, -0.5, 0.0, 3.0, 1e-40];

/// The CPU features a tier needs that this CPU lacks.
fn missing(tier: &str) -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let have = [
            ("avx2", has!("avx2")),
            ("f16c", has!("f16c")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
        ];
        let need: &[&str] = match tier {
            "avx2" => &["avx2", "f16c"],
            "avx512" => &["avx512f", "avx512bw", "avx512vl"],
            _ => &[],
        };
        have.iter()
            .filter(|(f, h)| need.contains(f) && !h)
            .map(|(f, _)| *f)
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    match tier {
        "scalar" => vec![],
        _ => vec!["an x86-64 CPU"],
    }
}

/// Runs `contract_in_this_tier` in a child process forced to `tier`.
fn run_tier(tier: &str) {
    let missing = missing(tier);
    if !missing.is_empty() {
        println!("SKIPPED tier {tier}: CPU lacks {}", missing.join(", "));
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .env(VAR, tier)
        .args(["--exact", "contract_in_this_tier", "--nocapture"])
        .output()
        .expect("run the test binary");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "tier {tier}:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("running tier {tier}\n")),
        "tier {tier}: the child did not report running it:\n{stderr}"
    );
}

#[test]
fn tier_scalar() {
    run_tier("scalar");
}

#[test]
fn tier_avx2() {
    run_tier("avx2");
}

#[test]
fn tier_avx512() {
    run_tier("avx512");
}

#[test]
fn contract_in_this_tier() -> Result<()> {
    let tier = candle_leaky_relu::cpu_tier();
    assert!(
        missing(tier).is_empty(),
        "the kernels run {tier}, which this CPU lacks"
    );
    // A tier the CPU has is run exactly when asked for (a tier it lacks, or an unknown name,
    // falls back to the best one it has).
    match std::env::var(VAR) {
        Ok(want)
            if ["scalar", "avx2", "avx512"].contains(&want.as_str())
                && missing(&want).is_empty() =>
        {
            assert_eq!(tier, want, "{VAR}={want} but the kernels run {tier}")
        }
        _ => {}
    }
    eprintln!("running tier {tier}");
    for dtype in DTYPES {
        let xs = patterns(dtype);
        let n = xs.len();
        let dys: Vec<u64> = (0..n).map(|i| xs[(i * 7919 + 13) % n]).collect();
        for alpha in SLOPES {
            check(dtype, &xs, &dys, alpha)?;
            check(dtype, &dys, &xs, alpha)?;
        }
        lengths_and_starts(dtype)?;
        strided_views(dtype)?;
    }
    parallel(DType::F16)?;
    parallel(DType::BF16)?;
    Ok(())
}

/// Every pattern of the 16-bit dtypes; specials and random patterns of f32 and f64.
fn patterns(dtype: DType) -> Vec<u64> {
    if dtype.size_in_bytes() == 2 {
        return (0..=0xFFFF).collect();
    }
    let (e, m) = if dtype == DType::F32 {
        (8, 23)
    } else {
        (11, 52)
    };
    let sign = 1u64 << (e + m);
    let inf = ((1u64 << e) - 1) << m;
    let quiet = 1u64 << (m - 1);
    let mut v = vec![
        0,
        1,
        3,
        (1 << m) - 1,
        1 << m,
        inf - 1,
        inf,
        inf | quiet,
        inf | 1,
    ];
    v.push(inf | quiet | 0x2A);
    v.extend(v.clone().into_iter().map(|b| b | sign));
    v.extend(
        random_words(dtype.size_in_bytes() as u64)
            .take(20_000)
            .map(|w| w & bit_mask(dtype)),
    );
    v
}

/// Forward (op and in place) and backward of the 1-D tensors `xs` (and `dys`).
fn check(dtype: DType, xs: &[u64], dys: &[u64], alpha: f64) -> Result<()> {
    let dev = Device::Cpu;
    let what = format!("{dtype:?} alpha={alpha}");
    let x = from_bits(dtype, xs, &[xs.len()], &dev)?;
    let dy = from_bits(dtype, dys, &[dys.len()], &dev)?;
    let want: Vec<u64> = xs.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
    assert_bits_eq(
        &format!("{what} fwd"),
        &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?,
        &want,
    );
    let y = x.copy()?;
    y.leaky_relu_(alpha)?;
    assert_bits_eq(&format!("{what} in place"), &to_bits(&y)?, &want);
    let want: Vec<u64> = (xs.iter().zip(dys))
        .map(|(&x, &g)| ref_bwd(dtype, x, g, alpha))
        .collect();
    let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
    assert_bits_eq(&format!("{what} bwd"), &to_bits(&dx)?, &want);
    Ok(())
}

/// Every length 0..=64 from every start 0..=16 of a 1-D tensor: forward, backward (dy at
/// another start) and in place (which writes at the misaligned start), and in place leaves
/// everything outside the view alone.
fn lengths_and_starts(dtype: DType) -> Result<()> {
    let dev = Device::Cpu;
    let pool: Vec<u64> = random_words(0x7153)
        .take(100)
        .map(|w| w & bit_mask(dtype))
        .collect();
    let base = from_bits(dtype, &pool, &[100], &dev)?;
    let alpha = -0.5;
    for len in 0..=64 {
        for start in 0..=16 {
            let what = format!("{dtype:?} len {len} start {start}");
            let x = base.narrow(0, start, len)?;
            let xs = &pool[start..start + len];
            let want: Vec<u64> = xs.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
            assert_bits_eq(&what, &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?, &want);
            let gs = &pool[33 - start / 2..33 - start / 2 + len];
            let dy = base.narrow(0, 33 - start / 2, len)?;
            let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
            let want_b: Vec<u64> = (xs.iter().zip(gs))
                .map(|(&x, &g)| ref_bwd(dtype, x, g, alpha))
                .collect();
            assert_bits_eq(&format!("{what} bwd"), &to_bits(&dx)?, &want_b);
            let fresh = base.copy()?;
            fresh.narrow(0, start, len)?.leaky_relu_(alpha)?;
            let mut want_all = pool.clone();
            want_all[start..start + len].copy_from_slice(&want);
            assert_bits_eq(&format!("{what} in place"), &to_bits(&fresh)?, &want_all);
        }
    }
    Ok(())
}

/// Random 3-D tensors viewed through a transpose and narrows: strided walks whose unit-stride
/// runs have every short length; forward, backward (dy with its own layout) and in place.
fn strided_views(dtype: DType) -> Result<()> {
    let dev = Device::Cpu;
    let mut words = random_words(0x5EED ^ dtype.size_in_bytes() as u64);
    let mut pick = |n: usize| (words.next().expect("endless") % n as u64) as usize;
    for case in 0..150 {
        let dims = [1 + pick(6), 1 + pick(9), 1 + pick(40)];
        let n: usize = dims.iter().product();
        let bits: Vec<u64> = random_words(case)
            .take(n)
            .map(|w| w & bit_mask(dtype))
            .collect();
        let index = Tensor::arange(0u32, n as u32, &dev)?.reshape(dims.as_slice())?;
        let base = from_bits(dtype, &bits, &dims, &dev)?;
        let (t, d) = (pick(2), pick(3));
        let start = pick(dims[d]);
        let len = pick(dims[d] - start + 1);
        let view = |x: &Tensor| -> Result<Tensor> {
            let x = x.narrow(d, start, len)?;
            if t == 1 {
                x.transpose(0, 1)
            } else {
                Ok(x)
            }
        };
        let alpha = SLOPES[case as usize % SLOPES.len()];
        let what = format!("{dtype:?} case {case} dims {dims:?} narrow {d} {start}+{len} t{t}");
        let x = view(&base)?;
        let xs = to_bits(&x)?;
        let want: Vec<u64> = xs.iter().map(|&b| ref_fwd(dtype, b, alpha)).collect();
        assert_bits_eq(&what, &to_bits(&x.apply_op1(LeakyRelu(alpha))?)?, &want);
        // dy: its own bits, stored transposed (a layout unlike x's).
        let mut tdims = x.dims().to_vec();
        tdims.swap(1, 2);
        let gs: Vec<u64> = (random_words(case ^ 0xD1).take(x.elem_count()))
            .map(|w| w & bit_mask(dtype))
            .collect();
        let dy = from_bits(dtype, &gs, &tdims, &dev)?.t()?;
        let want_b: Vec<u64> = (xs.iter().zip(to_bits(&dy)?))
            .map(|(&x, g)| ref_bwd(dtype, x, g, alpha))
            .collect();
        let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(alpha))?;
        assert_bits_eq(&format!("{what} bwd"), &to_bits(&dx)?, &want_b);
        let fresh = base.copy()?;
        view(&fresh)?.leaky_relu_(alpha)?;
        let mut want_all = bits.clone();
        if x.elem_count() > 0 {
            for i in view(&index)?.flatten_all()?.to_vec1::<u32>()? {
                want_all[i as usize] = ref_fwd(dtype, bits[i as usize], alpha);
            }
        }
        assert_bits_eq(&format!("{what} in place"), &to_bits(&fresh)?, &want_all);
    }
    Ok(())
}

/// A view past the parallel threshold (2^18 elements), starting at an odd offset.
fn parallel(dtype: DType) -> Result<()> {
    let n = (1 << 18) + 77;
    let bits: Vec<u64> = random_words(99)
        .take(n + 1)
        .map(|w| w & bit_mask(dtype))
        .collect();
    let x = from_bits(dtype, &bits, &[n + 1], &Device::Cpu)?.narrow(0, 1, n)?;
    let want: Vec<u64> = bits[1..].iter().map(|&b| ref_fwd(dtype, b, 0.2)).collect();
    assert_bits_eq(
        &format!("{dtype:?} parallel"),
        &to_bits(&x.apply_op1(LeakyRelu(0.2))?)?,
        &want,
    );
    let dx = x.apply_op2_no_bwd(&x, &LeakyReluBackward(0.2))?;
    let want: Vec<u64> = bits[1..]
        .iter()
        .map(|&b| ref_bwd(dtype, b, b, 0.2))
        .collect();
    assert_bits_eq(&format!("{dtype:?} parallel bwd"), &to_bits(&dx)?, &want);
    Ok(())
}
