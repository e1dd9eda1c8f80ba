//! The contract's Layouts section. Property tests over the views candle builds: random rank 0–4
//! shapes (zero-sized dims included), narrows with offsets, permutations and broadcasts, random
//! dtypes and slopes; forward, backward and in-place checked bit for bit against the scalar
//! reference on every device (12,000 cases in all). Then the views candle should never build:
//! element counts that wrap, hand-built layouts past the storage or with too few strides, handed
//! to the trait methods directly: an error naming the op, nothing written, never a panic.

mod common;

use candle_core::{DType, Device, Layout, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward, LeakyReluExt};
use common::*;
use proptest::prelude::*;

const CASES: u32 = 4000;

#[derive(Clone, Debug)]
enum View {
    /// Narrow dim `dim % rank` to `[start, start + len)`, both reduced modulo what fits.
    Narrow {
        dim: usize,
        start: usize,
        len: usize,
    },
    /// Permute the dims by the permutation drawn from `seed`.
    Permute { seed: u64 },
    /// Insert a dim at `at % (rank + 1)` and broadcast it to `size`.
    Broadcast { at: usize, size: usize },
}

#[derive(Clone, Debug)]
struct Case {
    dtype: DType,
    alpha: f64,
    dims: Vec<usize>,
    views: Vec<View>,
    seed: u64,
}

fn view() -> impl Strategy<Value = View> {
    prop_oneof![
        (0..4usize, 0..6usize, 0..6usize).prop_map(|(dim, start, len)| View::Narrow {
            dim,
            start,
            len
        }),
        any::<u64>().prop_map(|seed| View::Permute { seed }),
        (0..5usize, 0..4usize).prop_map(|(at, size)| View::Broadcast { at, size }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let alpha = prop_oneof![
        Just(0.01),
        Just(0.0),
        Just(-0.5),
        Just(1.5),
        -4.0..4.0f64,
        any::<f64>().prop_filter("finite", |a| a.is_finite()),
    ];
    (
        0..4usize,
        alpha,
        prop::collection::vec(0..6usize, 0..=4),
        prop::collection::vec(view(), 0..4),
        any::<u64>(),
    )
        .prop_map(|(d, alpha, dims, views, seed)| Case {
            dtype: DTYPES[d],
            alpha,
            dims,
            views,
            seed,
        })
}

/// Deterministic bit patterns, a third of them special values (zeros, infinities, NaNs).
fn patterns(dtype: DType, n: usize, seed: u64) -> Vec<u64> {
    let bits = dtype.size_in_bytes() * 8;
    let sign = 1u64 << (bits - 1);
    let nan = canonical_nan(dtype);
    let inf = ((1u64 << exp_bits(dtype)) - 1) << (bits - 1 - exp_bits(dtype));
    (random_words(seed).take(n))
        .map(|s| match s % 9 {
            0 => (s >> 8) & sign,
            1 => inf | ((s >> 8) & sign),
            2 => (nan | (s >> 20 & 3)) | ((s >> 8) & sign),
            _ => (s >> 4) & bit_mask(dtype),
        })
        .collect()
}

fn exp_bits(dtype: DType) -> usize {
    match dtype {
        DType::F16 => 5,
        DType::BF16 | DType::F32 => 8,
        _ => 11,
    }
}

/// Applies the view ops in order; the same ops on tensors of the same shape give the same layout.
fn apply(t: &Tensor, views: &[View]) -> Result<Tensor> {
    let mut t = t.clone();
    for v in views {
        let dims = t.dims().to_vec();
        let rank = dims.len();
        t = match *v {
            View::Narrow { dim, start, len } if rank > 0 => {
                let dim = dim % rank;
                let start = start % (dims[dim] + 1);
                t.narrow(dim, start, len % (dims[dim] - start + 1))?
            }
            View::Permute { seed } if rank > 1 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                let mut s = seed;
                for i in (1..rank).rev() {
                    perm.swap(i, (s % (i as u64 + 1)) as usize);
                    s /= i as u64 + 1;
                }
                t.permute(perm)?
            }
            View::Broadcast { at, size } if rank < 4 => {
                let at = at % (rank + 1);
                let mut shape = dims.clone();
                shape.insert(at, size);
                t.unsqueeze(at)?.broadcast_as(shape)?
            }
            _ => t,
        };
    }
    Ok(t)
}

/// The view of a fresh random tensor of `c.dims` on `dev`, and its base.
fn build(c: &Case, dev: &Device, seed: u64) -> Result<(Tensor, Tensor)> {
    let n = c.dims.iter().product();
    let base = from_bits(c.dtype, &patterns(c.dtype, n, seed), &c.dims, dev)?;
    Ok((apply(&base, &c.views)?, base))
}

/// A tensor of `shape` on `dev` with a layout unlike a plain one: a narrowed, then fully
/// transposed view (offset and reversed strides) of a larger tensor.
fn other_layout(dtype: DType, shape: &[usize], dev: &Device, seed: u64) -> Result<Tensor> {
    let big: Vec<usize> = shape.iter().rev().map(|d| d + 1).collect();
    let n = big.iter().product();
    let mut t = from_bits(dtype, &patterns(dtype, n, seed), &big, dev)?;
    for (i, &d) in shape.iter().rev().enumerate() {
        t = t.narrow(i, 1, d)?;
    }
    let rev: Vec<usize> = (0..shape.len()).rev().collect();
    t.permute(rev)
}

/// Whether the contract refuses the case's slope for its dtype (`alpha as f32` is infinite: the
/// random slopes include any finite f64). Then every entry point must refuse it and write nothing.
fn slope_refused(c: &Case) -> bool {
    c.dtype != DType::F64 && (c.alpha as f32).is_infinite()
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(r: Result<T>, op: &str, what: &str) {
    let e = r.expect_err(what).to_string();
    assert!(e.contains(op) && e.contains("overflows f32"), "{what}: {e}");
}

fn forward(c: &Case) -> Result<()> {
    for dev in devices().iter().filter(|d| supports(d, c.dtype)) {
        let (x, _) = build(c, dev, c.seed)?;
        if slope_refused(c) {
            assert_refused(
                x.apply_op1(LeakyRelu(c.alpha)),
                "leaky_relu:",
                &format!("{c:?}"),
            );
            continue;
        }
        let want: Vec<u64> = (to_bits(&x)?.iter())
            .map(|&b| ref_fwd(c.dtype, b, c.alpha))
            .collect();
        let y = x.apply_op1(LeakyRelu(c.alpha))?;
        assert_eq!(y.dims(), x.dims());
        assert!(y.is_contiguous());
        assert_bits_eq(&format!("{dev:?} forward {c:?}"), &to_bits(&y)?, &want);
    }
    Ok(())
}

fn backward(c: &Case) -> Result<()> {
    for dev in devices().iter().filter(|d| supports(d, c.dtype)) {
        let (x, _) = build(c, dev, c.seed)?;
        let dy = other_layout(c.dtype, x.dims(), dev, c.seed ^ 0x9E37)?;
        if slope_refused(c) {
            let r = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(c.alpha));
            assert_refused(r, "leaky_relu_backward:", &format!("{c:?}"));
            continue;
        }
        let want: Vec<u64> = (to_bits(&x)?.iter().zip(to_bits(&dy)?))
            .map(|(&x, g)| ref_bwd(c.dtype, x, g, c.alpha))
            .collect();
        let dx = x.apply_op2_no_bwd(&dy, &LeakyReluBackward(c.alpha))?;
        assert_bits_eq(&format!("{dev:?} backward {c:?}"), &to_bits(&dx)?, &want);
    }
    Ok(())
}

/// In place on the view: exactly the stored elements the view reaches change; all other
/// elements of the storage keep their bits. A broadcasting view (elements repeated) is refused
/// with an error and nothing is written.
fn inplace(c: &Case) -> Result<()> {
    let n: usize = c.dims.iter().product();
    let index = Tensor::arange(0u32, n as u32, &Device::Cpu)?.reshape(c.dims.as_slice())?;
    let reached = match apply(&index, &c.views)? {
        v if v.elem_count() == 0 => vec![], // see `to_bits`
        v => v.flatten_all()?.to_vec1::<u32>()?,
    };
    let original = patterns(c.dtype, n, c.seed);
    let mut want = original.clone();
    let mut seen = vec![false; n];
    let mut repeated = false;
    for &i in &reached {
        repeated |= std::mem::replace(&mut seen[i as usize], true);
        want[i as usize] = ref_fwd(c.dtype, original[i as usize], c.alpha);
    }
    for dev in devices().iter().filter(|d| supports(d, c.dtype)) {
        let (x, base) = build(c, dev, c.seed)?;
        // candle's overlap test is conservative; an empty view has no elements to overlap and
        // is accepted whatever that test says of it.
        assert!(!repeated || x.layout().has_internal_overlap());
        let overlap = x.layout().has_internal_overlap() && !reached.is_empty();
        if overlap || slope_refused(c) {
            let e = x.leaky_relu_(c.alpha).unwrap_err().to_string();
            assert!(e.contains("leaky_relu_"), "{e}");
            assert_bits_eq(
                &format!("{dev:?} refused {c:?}"),
                &to_bits(&base)?,
                &original,
            );
            continue;
        }
        x.leaky_relu_(c.alpha)?;
        assert_bits_eq(&format!("{dev:?} in-place {c:?}"), &to_bits(&base)?, &want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn forward_any_layout(c in case()) {
        forward(&c).unwrap();
    }

    #[test]
    fn backward_any_layouts(c in case()) {
        backward(&c).unwrap();
    }

    #[test]
    fn inplace_any_view(c in case()) {
        inplace(&c).unwrap();
    }
}

/// Layouts the random cases may hit rarely, spelled out: rank 0, empty, a broadcast scalar,
/// transposes, and views large enough to take the parallel paths.
#[test]
fn named_layouts() -> Result<()> {
    let cases = [
        (vec![], vec![]),
        (vec![0], vec![]),
        (vec![3, 0, 2], vec![View::Permute { seed: 0 }]),
        (vec![1], vec![View::Broadcast { at: 0, size: 3 }; 3]),
        (vec![7, 5], vec![View::Permute { seed: 0 }]),
        (
            vec![700, 800],
            vec![
                View::Narrow {
                    dim: 1,
                    start: 3,
                    len: 790,
                },
                View::Permute { seed: 0 },
            ],
        ),
        (
            vec![1 << 19],
            vec![View::Narrow {
                dim: 0,
                start: 1,
                len: (1 << 19) - 1,
            }],
        ),
        (
            vec![600, 1001],
            vec![View::Narrow {
                dim: 1,
                start: 1,
                len: 1000,
            }],
        ),
        (vec![300, 2000], vec![View::Broadcast { at: 1, size: 2 }]),
    ];
    for (dims, views) in cases {
        for (d, dtype) in DTYPES.into_iter().enumerate() {
            let c = Case {
                dtype,
                alpha: -0.3,
                dims: dims.clone(),
                views: views.clone(),
                seed: d as u64 + 5,
            };
            forward(&c)?;
            backward(&c)?;
            inplace(&c)?;
        }
    }
    Ok(())
}

// ---- Invalid views: refused before anything is read or written.

/// `broadcast_as` does not check that the element count fits: 17294947370570613760 × 1025 wraps
/// to 1024 in `usize`. Forward and backward refuse it (before, the CPU path returned 1024
/// never-written elements).
#[test]
fn wrapping_broadcast_refused() -> Result<()> {
    const HUGE: usize = 17294947370570613760;
    assert_eq!(HUGE.wrapping_mul(1025), 1024);
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            let x = from_bits(dtype, &patterns(dtype, 1025, 7), &[1025], &dev)?;
            let xb = x.broadcast_as((HUGE, 1025))?;
            let invalid = |e: candle_core::Error, op: &str| {
                let e = e.to_string();
                let named = e.contains(op) && e.contains(&HUGE.to_string());
                assert!(named && e.contains("overflows"), "{dev:?} {dtype:?}: {e}");
            };
            invalid(xb.apply_op1(LeakyRelu(0.1)).unwrap_err(), "leaky_relu:");
            let e = xb.apply_op2_no_bwd(&xb, &LeakyReluBackward(0.1));
            invalid(e.unwrap_err(), "leaky_relu_backward:");
            // In place, candle's own overlap check answers first; the direct call reaches ours.
            assert!(xb.leaky_relu_(0.1).is_err());
            let mut raw = Raw::new(&dev, dtype, &patterns(dtype, 1025, 7))?;
            invalid(
                raw.inplace(&LeakyRelu(0.1), xb.layout()).unwrap_err(),
                "leaky_relu_:",
            );
            assert_eq!(raw.bits()?, patterns(dtype, 1025, 7), "{dev:?}: written");
        }
    }
    Ok(())
}

/// What the contract says of a hand-built layout over a storage of `len` elements, worked out
/// here in `u128` arithmetic: `None` when it must be refused, else the storage offset of each
/// element in row-major order.
fn offsets(dims: &[usize], strides: &[usize], start: usize, len: usize) -> Option<Vec<usize>> {
    // (A valid view of more than 2^16 elements yields `Some` of its first 2^16 + 1 offsets only.)
    if strides.len() != dims.len() {
        return None;
    }
    // A zero dim makes the view empty, whatever the other dims multiply to.
    if dims.contains(&0) {
        return Some(vec![]);
    }
    let n = (dims.iter()).try_fold(1u128, |n, &d| {
        n.checked_mul(d as u128)
            .filter(|&n| n <= usize::MAX as u128)
    })?;
    if n == 0 {
        return Some(vec![]);
    }
    let last: u128 = start as u128
        + (dims.iter().zip(strides))
            .map(|(&d, &s)| (d as u128 - 1) * s as u128)
            .sum::<u128>();
    if last >= len as u128 {
        return None;
    }
    let mut out = vec![start];
    for (&d, &s) in dims.iter().zip(strides) {
        out = (out.iter())
            .flat_map(|&o| (0..d).map(move |i| o + i * s))
            .take((1 << 16) + 1)
            .collect();
    }
    Some(out)
}

/// A hand-built layout: small or absurd dims and strides, an offset, sometimes too few strides.
#[derive(Clone, Debug)]
struct Raw_ {
    dtype: DType,
    dims: Vec<usize>,
    strides: Vec<usize>,
    start: usize,
    len: usize,
    seed: u64,
}

fn raw_case() -> impl Strategy<Value = Raw_> {
    let size = prop_oneof![8 => 0..5usize, 1 => Just(usize::MAX / 3), 1 => Just(1usize << 33)];
    let stride = prop_oneof![8 => 0..7usize, 1 => Just(usize::MAX / 2), 1 => Just(1usize << 40)];
    let start = prop_oneof![8 => 0..40usize, 1 => Just(usize::MAX - 2)];
    (
        0..4usize,
        prop::collection::vec((size, stride), 0..=4),
        0..3usize,
        start,
        0..70usize,
        any::<u64>(),
    )
        .prop_map(|(d, dims, drop, start, len, seed)| {
            let (dims, mut strides): (Vec<_>, Vec<_>) = dims.into_iter().unzip();
            // A third of the cases lose a stride (if they have one).
            if drop == 0 {
                strides.pop();
            }
            Raw_ {
                dtype: DTYPES[d],
                dims,
                strides,
                start,
                len,
                seed,
            }
        })
}

/// Forward, backward (against a valid `dy`) and in place through the trait methods with a
/// hand-built layout: exact bits where the contract accepts the layout, else an error naming the
/// op with nothing written; in place, also an error where the view reaches an element twice.
fn raw(c: &Raw_) -> Result<()> {
    let l = Layout::new(c.dims.clone().into(), c.strides.clone(), c.start);
    let expect = offsets(&c.dims, &c.strides, c.start, c.len);
    if expect.as_ref().is_some_and(|o| o.len() > 1 << 16) {
        return Ok(()); // valid, but a broadcast too large to check here
    }
    let bits = patterns(c.dtype, c.len, c.seed);
    for dev in devices().iter().filter(|d| supports(d, c.dtype)) {
        let what = format!("{dev:?} {c:?}");
        let refused = |r: Result<()>, op: &str| {
            let e = r.expect_err(&what).to_string();
            assert!(e.contains(op), "{what}: {e}");
        };
        let mut x = Raw::new(dev, c.dtype, &bits)?;
        let n = expect.as_ref().map_or(0, |o| o.len());
        // dy: contiguous where the dims allow, else a broadcast of its one element.
        let dy_bits = patterns(c.dtype, n.max(1), c.seed ^ 1);
        let dy = Raw::new(dev, c.dtype, &dy_bits)?;
        let dy_strides = (c.dims.iter().rev())
            .try_fold((vec![], 1usize), |(mut v, p), &d| {
                v.insert(0, p);
                Some((v, p.checked_mul(d)?))
            })
            .map_or(vec![0; c.dims.len()], |(v, _)| v);
        let ldy = Layout::new(c.dims.clone().into(), dy_strides, 0);
        match &expect {
            None => {
                refused(x.fwd(&LeakyRelu(0.3), &l).map(drop), "leaky_relu:");
                let bwd = x.bwd(&l, &dy, &ldy, &LeakyReluBackward(0.3));
                refused(bwd.map(drop), "leaky_relu_backward:");
                // The bad layout as dy, against a valid x of the same dims.
                if c.strides.len() == c.dims.len() {
                    let bwd = dy.bwd(&ldy, &x, &l, &LeakyReluBackward(0.3));
                    refused(bwd.map(drop), "leaky_relu_backward:");
                }
                refused(x.inplace(&LeakyRelu(0.3), &l), "leaky_relu_:");
            }
            Some(offs) => {
                let want: Vec<u64> = offs
                    .iter()
                    .map(|&o| ref_fwd(c.dtype, bits[o], 0.3))
                    .collect();
                assert_bits_eq(&what, &x.fwd(&LeakyRelu(0.3), &l)?, &want);
                let want: Vec<u64> = (offs.iter().zip(&dy_bits))
                    .map(|(&o, &g)| ref_bwd(c.dtype, bits[o], g, 0.3))
                    .collect();
                assert_bits_eq(
                    &what,
                    &x.bwd(&l, &dy, &ldy, &LeakyReluBackward(0.3))?,
                    &want,
                );
                let mut seen = std::collections::HashSet::new();
                let repeated = !offs.iter().all(|o| seen.insert(*o));
                match x.inplace(&LeakyRelu(0.3), &l) {
                    Ok(()) => {
                        assert!(!repeated, "{what}: in place over repeated elements");
                        let mut want = bits.clone();
                        offs.iter()
                            .for_each(|&o| want[o] = ref_fwd(c.dtype, bits[o], 0.3));
                        assert_bits_eq(&what, &x.bits()?, &want);
                        continue;
                    }
                    // candle's overlap test is conservative: it may refuse a view that reaches
                    // no element twice, never accept one that does; an empty view is accepted.
                    Err(e) => assert!(
                        e.to_string().contains("overlap")
                            && l.has_internal_overlap()
                            && !offs.is_empty(),
                        "{what}: {e}"
                    ),
                }
            }
        }
        assert_bits_eq(&format!("{what}: written on error"), &x.bits()?, &bits);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hand_built_layouts_exact_or_refused(c in raw_case()) {
        raw(&c).unwrap();
    }
}

/// The hand-built layouts that used to panic or write, spelled out: past the end of the storage
/// (by the offset, by a stride, by one element), a stride vector shorter than the dims, one
/// longer, and an offset that overflows when the strides are added.
#[test]
fn named_invalid_layouts() -> Result<()> {
    let cases: [(&[usize], &[usize], usize); 7] = [
        (&[4], &[1], 7),
        (&[3, 2], &[5, 1], 0),
        (&[10], &[1], 1),
        (&[2, 5], &[5], 0),
        (&[5], &[1, 1], 0),
        (&[2, 2], &[usize::MAX, 1], 0),
        (&[2], &[1], usize::MAX),
    ];
    for (d, (dims, strides, start)) in cases.into_iter().enumerate() {
        let c = Raw_ {
            dtype: DTYPES[d % 4],
            dims: dims.to_vec(),
            strides: strides.to_vec(),
            start,
            len: 10,
            seed: d as u64,
        };
        assert!(
            offsets(dims, strides, start, 10).is_none(),
            "{c:?} is valid"
        );
        raw(&c)?;
    }
    // Empty views are valid wherever they start, even past the storage, and in place too (they
    // have no elements to overlap, whatever candle's overlap test makes of their strides).
    let m = usize::MAX;
    for (dims, strides, start) in [
        (&[0usize][..], &[1usize][..], 99),
        (&[3, 0], &[9, 1], 50),
        (&[0, 5], &[m, m], m),
        (&[4, 4, 0], &[6, 4, 0], 14),
        // A zero dim after dims whose product overflows: the count is 0, not an overflow.
        (&[m, 2, 0], &[0, 0, 0], 0),
        (&[1 << 40, 1 << 40, 0], &[1, 1, 1], 3),
    ] {
        let c = Raw_ {
            dtype: DType::F32,
            dims: dims.to_vec(),
            strides: strides.to_vec(),
            start,
            len: 10,
            seed: 1,
        };
        assert_eq!(offsets(dims, strides, start, 10), Some(vec![]));
        raw(&c)?;
    }
    Ok(())
}

/// Empty tensors built by candle, in place: contiguous with the zero-length dim after a longer
/// one (candle gives the dims before it a zero stride, which its overlap test reads as
/// overlapping), and an empty broadcast. They have no elements: accepted, nothing changes.
#[test]
fn empty_tensors_in_place_accepted() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            for shape in [&[3, 0, 5][..], &[2, 0], &[0], &[4, 0]] {
                let x = Tensor::zeros(shape, dtype, &dev)?;
                x.leaky_relu_(0.1)?;
                let y = x.leaky_relu(0.1)?;
                assert_eq!(y.dims(), shape, "{dev:?} {dtype:?}");
            }
            let b = Tensor::zeros((1, 0), dtype, &dev)?.broadcast_as((3, 0))?;
            b.leaky_relu_(0.1)?;
            assert_eq!(b.leaky_relu(0.1)?.dims(), [3, 0]);
        }
    }
    Ok(())
}
