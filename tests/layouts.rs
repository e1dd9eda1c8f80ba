//! Property tests over layouts: random rank 0–4 shapes (zero-sized dims included), narrows with
//! offsets, permutations and broadcasts, random dtypes and slopes; forward, backward and in-place
//! checked bit for bit against the scalar reference on every device (12,000 cases in all).

mod common;

use candle_core::{DType, Device, Result, Tensor};
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

fn forward(c: &Case) -> Result<()> {
    for dev in devices().iter().filter(|d| supports(d, c.dtype)) {
        let (x, _) = build(c, dev, c.seed)?;
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
        // candle's overlap test is conservative (an empty broadcast view counts too).
        assert!(!repeated || x.layout().has_internal_overlap());
        if x.layout().has_internal_overlap() {
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
