//! The test-side PReLU reference (`tests/common/prelu.rs`) checked on its own, by the rows of
//! NUMERICS.md's PReLU section and the crate's "PReLU weight gradient: summation order":
//! hand-worked cases, the order's error bound against an exactly rounded sum (including a
//! left-to-right sum that breaks it), and PyTorch's bits in `tests/golden/prelu/` (format in
//! `tests/golden/README.md`).

mod common;

use candle_core::DType;
use common::prelu::*;
use common::{canonical_nan, DTYPES};

const P24: f64 = 16_777_216.0;

/// f32 bits of a value.
fn f32b(v: f64) -> u64 {
    (v as f32).to_bits() as u64
}

/// Bits of `v` (exactly representable) in `dtype`.
fn bits(dtype: DType, v: f64) -> u64 {
    match dtype {
        DType::F16 => half::f16::from_f64(v).to_bits() as u64,
        DType::BF16 => half::bf16::from_f64(v).to_bits() as u64,
        DType::F32 => f32b(v),
        DType::F64 => v.to_bits(),
        d => panic!("{d:?}"),
    }
}

/// Terms `t` as one f32 channel: x = -t, dy = -1 gives the term `t` exactly (x <= 0 needs t >= 0,
/// so a term t < 0 is written x = t, dy = 1).
fn f32_channel(terms: &[f64]) -> (Vec<u64>, Vec<u64>) {
    terms
        .iter()
        .map(|&t| {
            if t.is_sign_negative() {
                (f32b(t), f32b(1.0))
            } else {
                (f32b(-t), f32b(-1.0))
            }
        })
        .unzip()
}

/// `dweight` of one channel of f32 terms (scalar weight over a rank-1 x).
fn f32_dweight(terms: &[f64]) -> u64 {
    let (x, dy) = f32_channel(terms);
    prelu_dweight(DType::F32, &x, &dy, &[terms.len()], &[1]).expect("scalar weight")[0]
}

/// Contract, PReLU: "Forward: the forward table above with `a = s`", `s = C(w[c])`.
mod forward {
    use super::*;

    #[test]
    fn slope_is_the_weight_element_in_the_compute_type() {
        let h = |v| bits(DType::F16, v);
        // x > 0 and NaN x: bits unchanged, whatever the slope (NaN and inf slopes included).
        for w in [h(0.5), 0x7E00, 0x7C00, 0xFC00] {
            assert_eq!(prelu_fwd(DType::F16, 0x0001, w), 0x0001);
            assert_eq!(prelu_fwd(DType::F16, 0x7C00, w), 0x7C00);
            assert_eq!(prelu_fwd(DType::F16, 0xFE05, w), 0xFE05);
        }
        assert_eq!(prelu_fwd(DType::F16, h(-2.0), h(0.5)), h(-1.0));
        // Signed zeros: the product's sign.
        assert_eq!(prelu_fwd(DType::F16, 0x8000, h(0.5)), 0x8000);
        assert_eq!(prelu_fwd(DType::F16, 0x8000, h(-0.5)), 0x0000);
        assert_eq!(prelu_fwd(DType::F16, 0x0000, 0x8000), 0x8000);
        // A subnormal slope is used as it is: f16 2^-24 * -1 = -2^-24.
        assert_eq!(prelu_fwd(DType::F16, h(-1.0), 0x0001), 0x8001);
        // NaN and infinite slopes: what the table gives, NaN products canonical.
        assert_eq!(prelu_fwd(DType::F16, h(-1.0), 0xFE05), 0x7E00);
        assert_eq!(prelu_fwd(DType::F16, h(-1.0), 0x7C00), 0xFC00);
        assert_eq!(prelu_fwd(DType::F16, 0x8000, 0x7C00), 0x7E00);
        assert_eq!(prelu_fwd(DType::F32, 0xFF80_0000, 0), 0x7FC0_0000);
        // bf16: -(1 + 2^-7) * 1.5 = -(1.5 + 1.5 * 2^-7), exact in f32, a bf16 tie: to even.
        assert_eq!(prelu_fwd(DType::BF16, 0xBF81, 0x3FC0), 0xBFC2);
        // f64 slopes are not narrowed: 0.1 * -3 in f64.
        let (x, w) = ((-3.0f64).to_bits(), 0.1f64.to_bits());
        assert_eq!(prelu_fwd(DType::F64, x, w), (-3.0 * 0.1f64).to_bits());
    }
}

/// Contract, PReLU: "dx: the backward table above with `a = s`; the gradient at `x == 0` is `s`".
mod dx {
    use super::*;

    #[test]
    fn backward_table_with_the_weight_element() {
        let b = |v| bits(DType::BF16, v);
        assert_eq!(prelu_dx(DType::BF16, b(2.0), b(-3.0), b(0.25)), b(-3.0));
        assert_eq!(prelu_dx(DType::BF16, b(-2.0), b(-3.0), b(0.25)), b(-0.75));
        // At x == 0 (either sign) the gradient is the slope.
        assert_eq!(prelu_dx(DType::BF16, 0x0000, b(1.0), b(0.25)), b(0.25));
        assert_eq!(prelu_dx(DType::BF16, 0x8000, b(1.0), b(0.25)), b(0.25));
        // NaN x takes the slope side; a NaN dy or NaN slope gives the canonical NaN.
        assert_eq!(prelu_dx(DType::BF16, 0xFFC1, b(2.0), b(0.25)), b(0.5));
        assert_eq!(prelu_dx(DType::BF16, b(-1.0), 0xFFC1, b(0.25)), 0x7FC0);
        assert_eq!(prelu_dx(DType::BF16, b(-1.0), b(1.0), 0xFFC1), 0x7FC0);
        // x > 0 passes dy through unchanged, NaN payload included.
        assert_eq!(prelu_dx(DType::BF16, b(1.0), 0xFFC1, b(0.25)), 0xFFC1);
        // An infinite slope times a zero dy is NaN: canonical.
        assert_eq!(
            prelu_dx(DType::F32, f32b(-1.0), 0, 0x7F80_0000),
            0x7FC0_0000
        );
    }
}

/// Contract, PReLU: the channel of an element (dim 1; one slope for all; x's own shape;
/// anything else refused).
mod channels_of_elements {
    use super::*;

    #[test]
    fn per_channel_scalar_own_shape_refused() {
        assert_eq!(
            channels(&[2, 3, 2], &[3]),
            Some((3, vec![0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]))
        );
        // Counted by elements: a [3, 1] weight is per channel too.
        assert_eq!(
            weight_kind(&[2, 3, 2], &[3, 1]),
            Some(WeightKind::PerChannel)
        );
        assert_eq!(channels(&[2, 3], &[1]), Some((1, vec![0; 6])));
        assert_eq!(channels(&[], &[]), Some((1, vec![0])));
        assert_eq!(channels(&[4], &[1, 1]), Some((1, vec![0; 4])));
        assert_eq!(channels(&[2, 2], &[2, 2]), Some((4, vec![0, 1, 2, 3])));
        assert_eq!(channels(&[3], &[3]), Some((3, vec![0, 1, 2])));
        // [1, 3] with a [1, 3] weight is both per channel and own shape: the same channels.
        assert_eq!(channels(&[1, 3], &[1, 3]), Some((3, vec![0, 1, 2])));
        // Empty x: every channel is empty.
        assert_eq!(channels(&[0, 3], &[3]), Some((3, vec![])));
        for (x, w) in [
            (&[2, 3][..], &[2][..]),
            (&[4], &[2]),
            (&[2, 3], &[3, 2]),
            (&[2, 3], &[0]),
            (&[], &[2]),
        ] {
            assert_eq!(channels(x, w), None, "x {x:?}, w {w:?}");
        }
    }
}

/// Contract, PReLU, dweight: the terms `R_C(C(x) * C(dy))`, `+0.0` for `x > 0`, NaN x giving its
/// product, one channel per weight element.
mod dweight_terms {
    use super::*;

    #[test]
    fn terms() {
        let h = |v| bits(DType::F16, v);
        assert_eq!(term(DType::F16, h(2.0), h(-3.0)).to_bits(), 0);
        assert_eq!(term(DType::F16, h(-2.0), h(-3.0)), 6.0);
        assert_eq!(
            term(DType::F16, 0x8000, h(3.0)).to_bits(),
            (-0.0f64).to_bits()
        );
        assert!(
            term(DType::F16, 0x7E00, h(1.0)).is_nan(),
            "NaN x contributes"
        );
        // Terms are f32 products for f16, not rounded to f16: -65504 * 2 stays finite, and
        // -131008 + 131008 = +0.0 (PyTorch, rounding each term to f16 first, gets -inf + inf).
        assert_eq!(term(DType::F16, h(-65504.0), h(2.0)), -131008.0);
        let (x, dy) = ([h(-65504.0), h(-65504.0)], [h(2.0), h(-2.0)]);
        assert_eq!(
            prelu_dweight(DType::F16, &x, &dy, &[2], &[1]),
            Some(vec![0])
        );
        // f32: the product rounds once to f32 (not kept in f64).
        let (x, dy) = (f32b(-(1.0 + 2f64.powi(-23))), f32b(1.0 + 2f64.powi(-23)));
        assert_eq!(term(DType::F32, x, dy), -(1.0 + 2f64.powi(-22)));
    }

    #[test]
    fn one_sum_per_weight_element() {
        // x [2, 2, 2] per channel: channel 0 holds elements 0, 1, 4, 5.
        let b = |v: f64| f32b(v);
        let x: Vec<u64> = [-1.0, -2.0, -3.0, 4.0, -5.0, -6.0, 7.0, -8.0]
            .map(b)
            .to_vec();
        let dy = vec![b(1.0); 8];
        let got = prelu_dweight(DType::F32, &x, &dy, &[2, 2, 2], &[2]).unwrap();
        assert_eq!(got, vec![b(-14.0), b(-11.0)]);
        // Own shape: each element's own term (x > 0 gives +0.0).
        let got = prelu_dweight(DType::F32, &x, &dy, &[2, 2, 2], &[2, 2, 2]).unwrap();
        let want: Vec<u64> = [-1.0, -2.0, -3.0, 0.0, -5.0, -6.0, 0.0, -8.0]
            .map(b)
            .to_vec();
        assert_eq!(got, want);
        // Scalar: everything in one channel.
        let got = prelu_dweight(DType::F32, &x, &dy, &[2, 2, 2], &[1]).unwrap();
        assert_eq!(got, vec![b(-25.0)]);
        // An empty channel sums to +0.0; a refused weight has no dweight.
        assert_eq!(
            prelu_dweight(DType::F64, &[], &[], &[0, 2], &[2]),
            Some(vec![0, 0])
        );
        assert_eq!(prelu_dweight(DType::F64, &[], &[], &[0, 2], &[3]), None);
    }
}

/// NUMERICS.md, "PReLU weight gradient: summation order": blocks of 256 padded with -0.0, 16
/// lanes over a stride of 16, the lane tree, the block tree padded to a power of two. Every
/// expected value below is worked out by hand in its comment (f32, ulp 2 above 2^24).
mod dweight_order {
    use super::*;

    #[test]
    fn empty_single_and_signed_zeros() {
        assert_eq!(f32_dweight(&[]), 0, "n = 0: +0.0");
        assert_eq!(
            f32_dweight(&[-0.0]),
            0x8000_0000,
            "-0.0 + padding stays -0.0"
        );
        assert_eq!(f32_dweight(&[0.0]), 0, "+0.0 + -0.0 = +0.0");
        assert_eq!(f32_dweight(&[-0.0; 300]), 0x8000_0000);
        assert_eq!(
            f32_dweight(&[-0.0; 513]),
            0x8000_0000,
            "three -0.0 block sums padded with a -0.0 fourth"
        );
        let mut t = vec![-0.0; 300];
        t[299] = 0.0;
        assert_eq!(f32_dweight(&t), 0, "one +0.0 term makes +0.0");
        // An x > 0 element contributes +0.0 (not its product): x = 2, dy = -1.
        let (x, dy) = (vec![f32b(2.0), f32b(-0.0)], vec![f32b(-1.0), f32b(1.0)]);
        assert_eq!(
            prelu_dweight(DType::F32, &x, &dy, &[2], &[1]),
            Some(vec![0])
        );
    }

    /// t_0 = 2^24, then ones. Lane 0 keeps 2^24 (each +1 is a tie to even), lanes 1..15 hold 16
    /// ones each (lane 15: 15 when n = 255); the lane tree adds them exactly: 2^24 + 240 for
    /// n = 256, and for n = 255 2^24 + 239 -> tie -> 2^24 + 240. n = 257: block 1 sums to 1,
    /// 2^24 + 240 + 1 -> tie -> 2^24 + 240. The exact sums are 2^24 + n - 1; a left-to-right sum
    /// gives 2^24.
    #[test]
    fn n_255_256_257() {
        for n in [255, 256, 257] {
            let mut t = vec![1.0; n];
            t[0] = P24;
            assert_eq!(f32_dweight(&t), f32b(P24 + 240.0), "n = {n}");
            let exact = common::prelu::Exact::sum(t.iter().copied());
            assert_eq!(exact.to_f64(), P24 + (n - 1) as f64);
        }
    }

    /// Lanes stride by 16: t_0 = 2^24, t_32 = t_48 = 1 all sit in lane 0, where each +1 is lost
    /// (2^24); lanes of 16 consecutive terms would put the ones in lanes 2 and 3, which the tree
    /// adds first: 2^24 + 2.
    #[test]
    fn lanes_stride_by_16() {
        let mut t = vec![-0.0; 256];
        (t[0], t[32], t[48]) = (P24, 1.0, 1.0);
        assert_eq!(f32_dweight(&t), f32b(P24));
    }

    /// The lane tree pairs adjacent lanes: (1 + 2^24) + (1 + 1) = 2^24 + 2; a left-to-right sum
    /// gives 2^24, the exactly rounded sum 2^24 + 4.
    #[test]
    fn lane_tree_pairs_adjacent_lanes() {
        assert_eq!(f32_dweight(&[1.0, P24, 1.0, 1.0]), f32b(P24 + 2.0));
    }

    /// Block sums 1, 2^24, 1, 1, 2 (n = 1025, m = 5) padded to M = 8:
    /// ((1 + 2^24) + (1 + 1)) + ((2 + -0) + (-0 + -0)) = (2^24 + 2) + 2 = 2^24 + 4;
    /// summing the block sums left to right gives 2^24 + 2.
    #[test]
    fn block_tree_padded_to_a_power_of_two() {
        let mut t = vec![-0.0; 1025];
        (t[0], t[256], t[512], t[768], t[1024]) = (1.0, P24, 1.0, 1.0, 2.0);
        assert_eq!(f32_dweight(&t), f32b(P24 + 4.0));
    }

    /// n = 4097 = 16 * 256 + 1, t_0 = 2^24, all others 1: S_0 = 2^24 + 240, S_1..S_15 = 256,
    /// S_16 = 1, padded to 32. Level 1: 2^24 + 496, 512 (x7), 1; level 2: 2^24 + 1008,
    /// 1024 (x3), 1; level 3: 2^24 + 2032, 2048, 1; level 4: 2^24 + 4080, 1; level 5:
    /// 2^24 + 4081 -> tie -> 2^24 + 4080. Exact: 2^24 + 4096.
    #[test]
    fn n_4097() {
        let mut t = vec![1.0; 4097];
        t[0] = P24;
        assert_eq!(f32_dweight(&t), f32b(P24 + 4080.0));
        assert_eq!(order_depth(4097), 19 + 5);
    }

    /// Subnormal sums are exact: 300 terms of 2^-149 (f32) or 2^-1074 (f64) sum to 300 units.
    #[test]
    fn subnormal_sums() {
        assert_eq!(f32_dweight(&vec![2f64.powi(-149); 300]), 300);
        let x = vec![(-f64::from_bits(1)).to_bits(); 300];
        let dy = vec![(-1.0f64).to_bits(); 300];
        assert_eq!(
            prelu_dweight(DType::F64, &x, &dy, &[300], &[1]),
            Some(vec![300])
        );
    }

    /// NaN and infinite terms: the canonical NaN of T for a NaN term or for infinities of both
    /// signs (inf - inf), an infinity for infinities of one sign.
    #[test]
    fn nan_and_infinities() {
        for dtype in DTYPES {
            let v = |f| bits(dtype, f);
            let inf = v(f64::INFINITY);
            let cases: [(Vec<u64>, Vec<u64>, u64); 4] = [
                (
                    vec![v(-1.0), v(-1.0)],
                    vec![v(1.0), v(f64::NAN)],
                    canonical_nan(dtype),
                ),
                (
                    vec![v(-f64::INFINITY), v(-f64::INFINITY)],
                    vec![v(-1.0), v(1.0)],
                    canonical_nan(dtype),
                ),
                (vec![v(-f64::INFINITY), v(-1.0)], vec![v(-1.0), v(1.0)], inf),
                // NaN x contributes its product: NaN.
                (
                    vec![v(f64::NAN), v(-1.0)],
                    vec![v(1.0), v(1.0)],
                    canonical_nan(dtype),
                ),
            ];
            for (x, dy, want) in cases {
                let got = prelu_dweight(dtype, &x, &dy, &[2], &[1]).unwrap();
                assert_eq!(got, vec![want], "{dtype:?} x {x:x?} dy {dy:x?}");
            }
        }
    }

    /// `R_T(S)`: one rounding from f32, ties to even, overflow to infinity.
    #[test]
    fn rounding_to_the_weight_dtype() {
        let h = |v| bits(DType::F16, v);
        // f16: -2^-12 * 2^-13 = -2^-25, half of f16's least subnormal: a tie, to -0.0; two of
        // them make -2^-24, the least subnormal.
        let (x, dy) = (h(-(2f64.powi(-12))), h(2f64.powi(-13)));
        assert_eq!(
            prelu_dweight(DType::F16, &[x], &[dy], &[1], &[1]),
            Some(vec![0x8000])
        );
        assert_eq!(
            prelu_dweight(DType::F16, &[x, x], &[dy, dy], &[2], &[1]),
            Some(vec![0x8001])
        );
        // f16: -32768 * -2 = 65536 in f32, beyond f16's 65504 (and its rounding threshold
        // 65520): +inf.
        assert_eq!(
            prelu_dweight(DType::F16, &[h(-32768.0)], &[h(-2.0)], &[1], &[1]),
            Some(vec![0x7C00])
        );
        // f32 overflow of the sum itself: 2^127 + 2^127 = +inf.
        assert_eq!(f32_dweight(&[2f64.powi(127), 2f64.powi(127)]), 0x7F80_0000);
        // bf16: 1 + 2^-8 is a tie: to even, 1.0; 1 + 3 * 2^-8 is a tie: to 1 + 2^-6.
        let b = |v| bits(DType::BF16, v);
        let (x, dy) = ([b(-1.0), b(-(2f64.powi(-8)))], [b(-1.0), b(-1.0)]);
        assert_eq!(
            prelu_dweight(DType::BF16, &x, &dy, &[2], &[1]),
            Some(vec![b(1.0)])
        );
        let (x, dy) = ([b(-1.0), b(-3.0 * 2f64.powi(-8))], [b(-1.0), b(-1.0)]);
        assert_eq!(
            prelu_dweight(DType::BF16, &x, &dy, &[2], &[1]),
            Some(vec![b(1.0 + 2f64.powi(-6))])
        );
    }
}

/// The exact sum used to check the bound: exactly rounded, not merely accurate.
mod exact_sum {
    use super::*;

    #[test]
    fn exactly_rounded() {
        let two = |e: i32| 2f64.powi(e);
        assert_eq!(Exact::sum([1e308, 1e308, -1e308]).to_f64(), 1e308);
        assert_eq!(Exact::sum([1.0, two(-60), -1.0]).to_f64(), two(-60));
        assert_eq!(Exact::sum([0.1, 0.2]).to_f64(), 0.30000000000000004);
        // 1 + 2^-24 + 2^-60: through f64 it is 1 + 2^-24, an f32 tie that goes to 1.0; rounded
        // once to f32 it is above the tie: 1 + 2^-23.
        let e = Exact::sum([1.0, two(-24), two(-60)]);
        assert_eq!(e.to_f32(), 1.0 + 2f32.powi(-23));
        assert_eq!(e.to_f64() as f32, 1.0);
        // Ties to even in f64: 1 + 2^-53 -> 1; 1 + 3 * 2^-53 -> 1 + 2^-51.
        assert_eq!(Exact::sum([1.0, two(-53)]).to_f64(), 1.0);
        assert_eq!(
            Exact::sum([1.0, two(-53), two(-52)]).to_f64(),
            1.0 + two(-51)
        );
        // Subnormals: f64 units add exactly; f32 2^-150 is a tie to 0, a bit more is 2^-149.
        let tiny = f64::from_bits(1);
        assert_eq!(Exact::sum([tiny, tiny, tiny]).to_f64(), f64::from_bits(3));
        assert_eq!(Exact::sum([two(-150)]).to_f32().to_bits(), 0);
        assert_eq!(Exact::sum([-two(-150)]).to_f32().to_bits(), 0x8000_0000);
        assert_eq!(Exact::sum([two(-150), tiny]).to_f32(), f32::from_bits(1));
        // f32 overflow: MAX + half an ulp is a tie that rounds to the even neighbour, 2^128: inf.
        let max = f32::MAX as f64;
        assert_eq!(Exact::sum([max, two(103)]).to_f32(), f32::INFINITY);
        assert_eq!(Exact::sum([max, two(103), -tiny]).to_f32(), f32::MAX);
        assert_eq!(
            Exact::sum([-f64::MAX, -f64::MAX]).to_f64(),
            f64::NEG_INFINITY
        );
        assert_eq!(
            Exact::sum([f64::MAX, f64::MAX, -f64::MAX]).to_f64(),
            f64::MAX
        );
        assert_eq!(Exact::sum([]).signum(), 0);
    }

    /// `within_gamma` decides exactly: with d = 1, p = 24, terms [2^24 - 1] and value 2^24 the
    /// error 1 equals gamma_1 * A = (2^-24 / (1 - 2^-24)) * (2^24 - 1) exactly.
    #[test]
    fn bound_decided_exactly() {
        let a = P24 - 1.0;
        assert!(within_gamma(&[a], P24, 1, 24, 0.0));
        assert!(!within_gamma(&[a], P24 + 2f64.powi(-20), 1, 24, 0.0));
        assert!(!within_gamma(&[a], a - 1.0 - 2f64.powi(-20), 1, 24, 0.0));
        assert!(within_gamma(
            &[a],
            P24 + 2f64.powi(-20),
            1,
            24,
            2f64.powi(-20)
        ));
        assert!(within_gamma(&[1.0, 2.0], 3.0, 0, 53, 0.0));
        assert!(!within_gamma(&[1.0, 2.0], 3.0 + 2f64.powi(-51), 0, 53, 0.0));
    }
}

/// NUMERICS.md, "Error bound": `|S - sum t| <= gamma_d * sum |t|`, `d = 19 + log2 M`, checked
/// exactly; a left-to-right sum of the same terms breaks it, so the check can fail.
mod error_bound {
    use super::*;

    fn left_to_right(f64c: bool, t: &[f64]) -> f64 {
        t.iter().fold(-0.0, |s, &v| {
            if f64c {
                s + v
            } else {
                ((s as f32) + (v as f32)) as f64
            }
        })
    }

    /// Checks the order's sum of `t` against the bound, and returns (order's ratio, naive ratio)
    /// of the error to the bound.
    fn check(f64c: bool, t: &[f64], what: &str) -> (f64, f64) {
        let p = if f64c { 53 } else { 24 };
        let d = order_depth(t.len());
        let s = order_sum(f64c, t);
        assert!(
            within_gamma(t, s, d, p, 0.0),
            "{what}: error/bound {}",
            bound_ratio(t, s, d, p)
        );
        let naive = left_to_right(f64c, t);
        (bound_ratio(t, s, d, p), bound_ratio(t, naive, d, p))
    }

    /// 1.0 then 10^6 - 1 terms of u (one unit roundoff): each left-to-right addition is a tie
    /// that rounds back to 1.0, losing about 0.06 (f32) in all; the tree adds the small terms
    /// among themselves first.
    #[test]
    fn naive_breaks_the_bound_the_tree_keeps_it() {
        for (f64c, p) in [(false, 24), (true, 53)] {
            let u = 2f64.powi(-p);
            let mut t = vec![u; 1_000_000];
            t[0] = 1.0;
            assert_eq!(order_depth(t.len()), 31);
            let (tree, naive) = check(f64c, &t, "1 + many u");
            assert!(naive > 1000.0, "p {p}: left to right error/bound {naive}");
            assert!(!within_gamma(
                &t,
                left_to_right(f64c, &t),
                31,
                p as u32,
                0.0
            ));
            eprintln!(
                "1 + (10^6 - 1) u, p = {p}: error/bound tree {tree:.3e}, left to right {naive:.3e}"
            );
        }
    }

    /// A deterministic xorshift stream.
    fn words(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Random sign and mantissa with a binary exponent drawn from `exps` (f32 or f64 values).
    fn random(f64c: bool, n: usize, seed: u64, exps: &[i32]) -> Vec<f64> {
        let mut w = words(seed);
        (0..n)
            .map(|_| {
                let (r, r2) = (w(), w());
                let e = exps[(r2 >> 8) as usize % exps.len()];
                // A full 52-bit mantissa (narrowed to f32 below for f32 compute).
                let m = 1.0 + (r >> 12) as f64 / 2f64.powi(52);
                let v = if r2 & 1 == 1 { -m } else { m } * 2f64.powi(e);
                if f64c {
                    v
                } else {
                    v as f32 as f64
                }
            })
            .collect()
    }

    #[test]
    fn adversarial_inputs() {
        let mut worst = 0f64;
        for f64c in [false, true] {
            let big = if f64c { 500 } else { 100 };
            let mut cases: Vec<(&str, Vec<f64>)> = vec![
                ("random, one binade", random(f64c, 100_000, 3, &[0])),
                ("huge/tiny mix", random(f64c, 100_000, 5, &[big, -big, 0])),
                (
                    "range of exponents",
                    random(f64c, 70_000, 7, &(-40..40).collect::<Vec<_>>()),
                ),
            ];
            // Cancellation: pairs +v, -v(1 + small) that almost cancel, and a small residue.
            let mut c = random(f64c, 50_000, 9, &[20]);
            let rounded = |v: f64| if f64c { v } else { v as f32 as f64 };
            let n = c.len();
            for i in 0..n {
                c.push(rounded(-c[i] * (1.0 + 2f64.powi(-10))));
            }
            cases.push(("cancellation", c));
            // Growing partial sums: all positive, one binade, many terms.
            cases.push((
                "all positive",
                random(f64c, 1_000_000, 11, &[0])
                    .iter()
                    .map(|v| v.abs())
                    .collect(),
            ));
            // Subnormal terms: every addition exact, so S is the exact sum.
            let tiny = if f64c {
                f64::from_bits(1)
            } else {
                2f64.powi(-149)
            };
            let sub: Vec<f64> = (0..5000)
                .map(|i| tiny * (i % 7) as f64 * if i % 3 == 0 { -1.0 } else { 1.0 })
                .collect();
            assert_eq!(
                order_sum(f64c, &sub),
                Exact::sum(sub.iter().copied()).to_f64()
            );
            for (what, t) in &cases {
                let (tree, naive) = check(f64c, t, what);
                worst = worst.max(tree);
                eprintln!("{what} (f64 compute: {f64c}, n {}): error/bound tree {tree:.3e}, left to right {naive:.3e}", t.len());
            }
        }
        assert!(worst <= 1.0);
    }

    /// The bound holds through the whole reference, from tensor bits: a per-channel weight on a
    /// [2, 3, 700] f32 x.
    #[test]
    fn through_prelu_dweight_sums() {
        let dims = [2, 3, 700];
        let n: usize = dims.iter().product();
        let xs = random(false, n, 13, &[-3, 0, 3]);
        let gs = random(false, n, 17, &[-2, 0, 2]);
        let x: Vec<u64> = xs.iter().map(|&v| f32b(v)).collect();
        let dy: Vec<u64> = gs.iter().map(|&v| f32b(v)).collect();
        let sums = prelu_dweight_sums(DType::F32, &x, &dy, &dims, &[3]).unwrap();
        let terms = channel_terms(DType::F32, &x, &dy, &dims, &[3]).unwrap();
        for (s, t) in sums.iter().zip(&terms) {
            assert_eq!(t.len(), 1400);
            assert!(within_gamma(t, *s, order_depth(t.len()), 24, 0.0));
        }
    }
}

/// PyTorch's bits (`tests/golden/prelu/`): forward, dx and the elementwise terms bit for bit on
/// non-NaN values, NaN-ness for NaN; dweight within the bounds of the exact sum.
mod golden {
    use super::*;

    /// Bit for bit on non-NaN, NaN-ness on NaN; returns whether PyTorch's value is NaN.
    #[track_caller]
    fn same(what: &str, dtype: DType, got: u64, torch: u64) -> bool {
        let torch_nan = value(dtype, torch).is_nan();
        if torch_nan {
            assert!(
                value(dtype, got).is_nan(),
                "{what}: torch NaN {torch:#x}, got {got:#x}"
            );
        } else {
            assert_eq!(got, torch, "{what}: got {got:#x}, torch {torch:#x}");
        }
        torch_nan
    }

    #[test]
    fn forward_dx_and_terms_bit_for_bit() {
        let (mut rows, mut nans) = (0, 0);
        for f in golden_files() {
            let [x, c, y, dy, dx, gw] = &f.cols;
            let (nc, chan) = channels(&f.x_dims, &f.w_dims).expect("a valid weight");
            assert_eq!(nc, f.w.len(), "{}", f.name);
            for i in 0..x.len() {
                assert_eq!(chan[i] as u64, c[i], "{} row {i}: channel", f.name);
                let w = f.w[chan[i]];
                let what = |s: &str| format!("{} row {i} {s}", f.name);
                let n1 = same(&what("y"), f.dtype, prelu_fwd(f.dtype, x[i], w), y[i]);
                let n2 = same(
                    &what("dx"),
                    f.dtype,
                    prelu_dx(f.dtype, x[i], dy[i], w),
                    dx[i],
                );
                // PyTorch's elementwise term is in T: R_T of the contract's term.
                let t = round_to(f.dtype, term(f.dtype, x[i], dy[i]));
                let n3 = same(&what("gw"), f.dtype, t, gw[i]);
                rows += 3;
                nans += n1 as usize + n2 as usize + n3 as usize;
            }
        }
        eprintln!("{rows} values compared, {nans} of them NaN in PyTorch");
        assert!(nans * 5 < rows, "too many NaN values to be meaningful");
    }

    /// The exact sum of finite terms, or the special value all terms imply (NaN, one infinity).
    enum Expect {
        Finite,
        Nan,
        Inf(f64),
    }

    fn expect(t: &[f64]) -> Expect {
        let nan = t.iter().any(|v| v.is_nan());
        let pinf = t.contains(&f64::INFINITY);
        let ninf = t.contains(&f64::NEG_INFINITY);
        match (nan || (pinf && ninf), pinf, ninf) {
            (true, _, _) => Expect::Nan,
            (_, true, _) => Expect::Inf(f64::INFINITY),
            (_, _, true) => Expect::Inf(f64::NEG_INFINITY),
            _ => Expect::Finite,
        }
    }

    /// The spacing of T's values just above |v| (the least subnormal near zero).
    fn ulp(dtype: DType, b: u64) -> f64 {
        let mag = b & (common::bit_mask(dtype) >> 1);
        let (lo, hi) = (value(dtype, mag), value(dtype, mag + 1));
        if hi.is_finite() {
            hi - lo
        } else {
            lo - value(dtype, mag - 1)
        }
    }

    /// The largest finite value of the compute type (`p` significand bits).
    fn max_of(p: u32) -> f64 {
        if p == 53 {
            f64::MAX
        } else {
            f32::MAX as f64
        }
    }

    /// The largest finite value of T.
    fn t_max(dtype: DType) -> f64 {
        match dtype {
            DType::F16 => half::f16::MAX.to_f64(),
            DType::BF16 => half::bf16::MAX.to_f64(),
            DType::F32 => f32::MAX as f64,
            _ => f64::MAX,
        }
    }

    /// dweight: the reference's channel sum S within the order's bound (`d = 19 + log2 M`) of the
    /// exact sum of the contract's terms. PyTorch sums its own elementwise terms (checked above:
    /// the contract's terms rounded to T) in its own order, in C, then rounds to T: its dweight
    /// must lie within `gamma_{n-1} * sum |g| + ulp_T / 2` of the exact sum of those terms, the
    /// bound of any order (no term takes part in more than n - 1 additions).
    #[test]
    fn dweight_within_the_bounds() {
        let (mut channels_checked, mut same_bits, mut finite) = (0, 0, 0);
        for f in golden_files() {
            let [x, _, _, dy, _, gw] = &f.cols;
            let p = if computes_in_f64(f.dtype) { 53 } else { 24 };
            let terms = channel_terms(f.dtype, x, dy, &f.x_dims, &f.w_dims).unwrap();
            let sums = prelu_dweight_sums(f.dtype, x, dy, &f.x_dims, &f.w_dims).unwrap();
            let (_, chan) = channels(&f.x_dims, &f.w_dims).unwrap();
            for (c, (t, &s)) in terms.iter().zip(&sums).enumerate() {
                let what = format!("{} channel {c} (n {})", f.name, t.len());
                let torch = f.dweight[c];
                let d_torch = value(f.dtype, torch);
                let ours = round_to(f.dtype, s);
                channels_checked += 1;
                same_bits += (ours == torch) as usize;
                // PyTorch's own terms for this channel, values in T.
                let g: Vec<f64> = (0..x.len())
                    .filter(|&i| chan[i] == c)
                    .map(|i| value(f.dtype, gw[i]))
                    .collect();
                match expect(t) {
                    Expect::Nan => {
                        assert!(s.is_nan(), "{what}: ours {s}");
                        assert!(d_torch.is_nan(), "{what}: torch {d_torch}");
                        continue;
                    }
                    Expect::Inf(inf) => {
                        assert_eq!(s, inf, "{what}");
                        assert_eq!(d_torch, inf, "{what}: torch");
                        continue;
                    }
                    Expect::Finite => {}
                }
                finite += 1;
                let d = order_depth(t.len());
                if s.is_finite() {
                    assert!(
                        within_gamma(t, s, d, p, 0.0),
                        "{what}: ours {s}, error/bound {}",
                        bound_ratio(t, s, d, p)
                    );
                } else {
                    // Only a sum whose partial sums can reach past C's range overflows.
                    let a = Exact::sum_abs(t.iter().copied()).to_f64();
                    assert!(
                        a * (1.0 + 1e-3) >= max_of(p),
                        "{what}: ours {s}, sum |t| {a}"
                    );
                }
                match expect(&g) {
                    Expect::Nan => panic!("{what}: torch's terms NaN where ours are not"),
                    // PyTorch's terms in T can overflow where the contract's (in C) do not.
                    Expect::Inf(inf) => assert_eq!(d_torch, inf, "{what}: torch"),
                    Expect::Finite if d_torch.is_finite() => {
                        let d_any = (g.len() as u32).saturating_sub(1);
                        assert!(
                            within_gamma(&g, d_torch, d_any, p, ulp(f.dtype, torch) / 2.0),
                            "{what}: torch {d_torch}, error/bound {}",
                            bound_ratio(&g, d_torch, d_any.max(1), p)
                        );
                    }
                    Expect::Finite => {
                        // Only a sum that can reach past T's range rounds to an infinity.
                        let a = Exact::sum_abs(g.iter().copied()).to_f64();
                        assert!(
                            a * (1.0 + 1e-3) >= t_max(f.dtype),
                            "{what}: torch {d_torch}, sum |g| {a}"
                        );
                    }
                }
            }
        }
        eprintln!(
            "{channels_checked} channels: {finite} with finite terms checked against the bounds; \
             {same_bits} with the same dweight bits as PyTorch"
        );
        assert!(
            finite * 2 > channels_checked,
            "most channels must have finite sums"
        );
    }
}
