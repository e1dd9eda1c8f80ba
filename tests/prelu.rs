//! PReLU against the contract (NUMERICS.md, "PReLU" and "PReLU weight gradient: summation
//! order"), row by row, on every device of the build: the crate's bits against the test-side
//! reference of `tests/common/prelu.rs` and PyTorch's golden bits; layouts, threads and
//! refusals; autograd, second order and the candle-nn drop-in.

mod common;

use candle_core::{DType, Device, Layout, Result, Shape, Tensor, Var};
use candle_leaky_relu::{prelu, LeakyReluExt, PReLU, PreluBackward, PreluOp};
use candle_nn::Module;
use common::prelu::*;
use common::*;

/// Bit patterns for x and dy: specials first, then random finite values of both signs.
fn patterns(dtype: DType, n: usize, seed: u64) -> Vec<u64> {
    let mask = bit_mask(dtype);
    let sign = 1u64 << (8 * dtype.size_in_bytes() - 1);
    let (exp_shift, exp_mask) = match dtype {
        DType::F16 => (10, 0x1F),
        DType::BF16 => (7, 0xFF),
        DType::F32 => (23, 0xFF),
        _ => (52, 0x7FF),
    };
    let inf = exp_mask << exp_shift;
    let specials = [
        0,
        sign,
        inf,
        inf | sign,
        inf | 1,
        inf | (1 << (exp_shift - 1)) | sign,
        1,
        1 | sign,
        (1 << exp_shift) - 1,
        inf - 1,
        (inf - 1) | sign,
        1 << exp_shift,
    ];
    let mut words = random_words(seed);
    (0..n)
        .map(|i| {
            if i < specials.len() && n > 2 * specials.len() {
                specials[i]
            } else {
                // Finite, exponents around 1 (products stay in range), random sign.
                let w = words.next().unwrap();
                let e = (exp_mask / 2 - 4 + (w >> 60) % 8) << exp_shift;
                (e | (w & ((1 << exp_shift) - 1)) | ((w >> 63) * sign)) & mask
            }
        })
        .collect()
}

/// Slope patterns: specials (NaN, infinities, signed zeros, a subnormal) and ordinary slopes.
fn weight_patterns(dtype: DType, c: usize, seed: u64) -> Vec<u64> {
    let ordinary = [0.25, -0.5, 0.01, 1.5, 0.0, -0.0, 3.0, 1e-3];
    let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let to_bits = |v: f64| -> u64 {
        match dtype {
            DType::F16 => half::f16::from_f64(v).to_bits() as u64,
            DType::BF16 => half::bf16::from_f64(v).to_bits() as u64,
            DType::F32 => (v as f32).to_bits() as u64,
            _ => v.to_bits(),
        }
    };
    (0..c)
        .map(|i| match (i + seed as usize) % 12 {
            k @ 0..=7 => to_bits(ordinary[k]),
            k @ 8..=10 => to_bits(specials[k - 8]),
            _ => 1, // the least subnormal
        })
        .collect()
}

/// The reference's forward of every element.
fn want_fwd(dtype: DType, x: &[u64], w: &[u64], xd: &[usize], wd: &[usize]) -> Vec<u64> {
    let (_, chan) = channels(xd, wd).expect("a valid weight");
    (x.iter().zip(chan))
        .map(|(&x, c)| prelu_fwd(dtype, x, w[c]))
        .collect()
}

/// The reference's `dx ++ dweight`.
fn want_bwd(
    dtype: DType,
    x: &[u64],
    w: &[u64],
    dy: &[u64],
    xd: &[usize],
    wd: &[usize],
) -> Vec<u64> {
    let (_, chan) = channels(xd, wd).expect("a valid weight");
    let mut out: Vec<u64> = (0..x.len())
        .map(|i| prelu_dx(dtype, x[i], dy[i], w[chan[i]]))
        .collect();
    out.extend(prelu_dweight(dtype, x, dy, xd, wd).expect("a valid weight"));
    out
}

/// (x dims, weight dims) covering the three weight kinds and the channel layouts.
const SHAPES: [(&[usize], &[usize]); 11] = [
    (&[2, 3, 4, 5], &[3]),
    // Channel runs longer than the backward's piece of 4096, with a partial last piece.
    (&[2, 3, 4100], &[3]),
    (&[2, 3, 4, 5], &[1]),
    (&[2, 3, 4, 5], &[1, 3, 1, 1]),
    (&[3, 4], &[4]),
    (&[3, 4], &[3, 4]),
    (&[37], &[1]),
    (&[37], &[37]),
    (&[], &[1]),
    (&[600, 2], &[2]),
    (&[2, 5, 300], &[5]),
];

// ---- Forward: the LeakyReLU forward table with the slope C(w[c]) of the element's channel.

#[test]
fn forward_rows_against_reference() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            for (s, (xd, wd)) in SHAPES.iter().enumerate() {
                let n: usize = xd.iter().product();
                let c: usize = wd.iter().product();
                let (xb, wb) = (
                    patterns(dtype, n, s as u64),
                    weight_patterns(dtype, c, s as u64),
                );
                let x = from_bits(dtype, &xb, xd, &dev)?;
                let w = from_bits(dtype, &wb, wd, &dev)?;
                let got = to_bits(&x.apply_op2(&w, PreluOp)?)?;
                let what = format!("{dev:?} {dtype:?} x {xd:?} w {wd:?}");
                assert_bits_eq(&what, &got, &want_fwd(dtype, &xb, &wb, xd, wd));
                assert_bits_eq(&what, &to_bits(&x.prelu(&w)?)?, &got);
            }
        }
    }
    Ok(())
}

// ---- dx: the backward table with a = C(w[c]); dweight: the contract's order, bit for bit.

#[test]
fn backward_rows_against_reference() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            for (s, (xd, wd)) in SHAPES.iter().enumerate() {
                let n: usize = xd.iter().product();
                let c: usize = wd.iter().product();
                let xb = patterns(dtype, n, 10 + s as u64);
                let gb = patterns(dtype, n, 20 + s as u64);
                let wb = weight_patterns(dtype, c, s as u64);
                let x = from_bits(dtype, &xb, xd, &dev)?;
                let w = from_bits(dtype, &wb, wd, &dev)?;
                let dy = from_bits(dtype, &gb, xd, &dev)?;
                let got = to_bits(&x.apply_op3(&w, &dy, PreluBackward)?)?;
                let what = format!("{dev:?} {dtype:?} x {xd:?} w {wd:?}");
                assert_bits_eq(&what, &got, &want_bwd(dtype, &xb, &wb, &gb, xd, wd));
            }
        }
    }
    Ok(())
}

/// Empty channels sum to +0.0; an empty x gives an empty output and one +0.0 per weight.
#[test]
fn empty_inputs() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            let x = Tensor::zeros((0, 3, 4), dtype, &dev)?;
            let w = Tensor::ones(3, dtype, &dev)?;
            assert_eq!(x.prelu(&w)?.dims(), [0, 3, 4]);
            let both = x.apply_op3(&w, &x, PreluBackward)?;
            assert_eq!(to_bits(&both)?, vec![0; 3], "{dev:?} {dtype:?}");
        }
    }
    Ok(())
}

// ---- PyTorch's bits: forward and dx bit for bit (NaN-ness for NaN), dweight the contract's.

#[test]
fn golden_pytorch_forward_and_dx() -> Result<()> {
    for f in golden_files() {
        let [x, _, y, dy, dx, _] = &f.cols;
        for dev in devices().into_iter().filter(|d| supports(d, f.dtype)) {
            let xt = from_bits(f.dtype, x, &f.x_dims, &dev)?;
            let wt = from_bits(f.dtype, &f.w, &f.w_dims, &dev)?;
            let gt = from_bits(f.dtype, dy, &f.x_dims, &dev)?;
            let check = |what: &str, got: &[u64], torch: &[u64]| {
                for (i, (&g, &t)) in got.iter().zip(torch).enumerate() {
                    if value(f.dtype, t).is_nan() {
                        assert!(value(f.dtype, g).is_nan(), "{} {what} {i}", f.name);
                    } else {
                        assert_eq!(g, t, "{} {what} row {i} on {dev:?}", f.name);
                    }
                }
            };
            check("y", &to_bits(&xt.apply_op2(&wt, PreluOp)?)?, y);
            let both = to_bits(&xt.apply_op3(&wt, &gt, PreluBackward)?)?;
            check("dx", &both[..x.len()], dx);
            let want = prelu_dweight(f.dtype, x, dy, &f.x_dims, &f.w_dims).unwrap();
            assert_bits_eq(
                &format!("{} dweight {dev:?}", f.name),
                &both[x.len()..],
                &want,
            );
        }
    }
    Ok(())
}

// ---- Layouts: any view of x and dy, any layout of the weight; the same bits as contiguous.

/// Views built by candle: a channel-last permute, a step-2 narrow, a transposed weight, a
/// broadcast x; each against the reference on the same logical values.
#[test]
fn views_of_x_dy_and_weight() -> Result<()> {
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            // Channel-last: NHWC memory seen as NCHW.
            let (n, c, h, w) = (2, 5, 7, 3);
            let xb = patterns(dtype, n * c * h * w, 3);
            let gb = patterns(dtype, n * c * h * w, 4);
            let wb = weight_patterns(dtype, c, 1);
            let nhwc = |b: &[u64]| -> Result<Tensor> {
                from_bits(dtype, b, &[n, h, w, c], &dev)?.permute((0, 3, 1, 2))
            };
            let (x, dy) = (nhwc(&xb)?, nhwc(&gb)?);
            let weight = from_bits(dtype, &wb, &[c], &dev)?;
            let logical = |t: &Tensor| -> Result<Vec<u64>> { to_bits(&t.contiguous()?) };
            let (lx, lg) = (logical(&x)?, logical(&dy)?);
            let xd = [n, c, h, w];
            let what = format!("{dev:?} {dtype:?} channel-last");
            assert_bits_eq(
                &what,
                &to_bits(&x.prelu(&weight)?)?,
                &want_fwd(dtype, &lx, &wb, &xd, &[c]),
            );
            let got = to_bits(&x.apply_op3(&weight, &dy, PreluBackward)?)?;
            assert_bits_eq(&what, &got, &want_bwd(dtype, &lx, &wb, &lg, &xd, &[c]));
            // The same values contiguous: dweight has the same bits as from the permuted view.
            let (xc, gc) = (x.contiguous()?, dy.contiguous()?);
            let got_c = to_bits(&xc.apply_op3(&weight, &gc, PreluBackward)?)?;
            assert_bits_eq(&format!("{what} vs contiguous"), &got, &got_c);

            // Step-2 narrow of the last dim, weight (1, c, 1) transposed storage.
            let full = from_bits(dtype, &patterns(dtype, 3 * c * 20, 9), &[3, c, 20], &dev)?;
            let xs = full.reshape((3, c, 10, 2))?.narrow(3, 1, 1)?.squeeze(3)?;
            let ws = from_bits(dtype, &wb, &[c, 1], &dev)?.t()?;
            let lxs = logical(&xs)?;
            let what = format!("{dev:?} {dtype:?} step-2");
            assert_bits_eq(
                &what,
                &to_bits(&xs.prelu(&ws)?)?,
                &want_fwd(dtype, &lxs, &wb, &[3, c, 10], &[1, c]),
            );
            let gs = from_bits(dtype, &patterns(dtype, 3 * c * 10, 5), &[3, c, 10], &dev)?;
            let lgs = logical(&gs)?;
            let got = to_bits(&xs.apply_op3(&ws, &gs, PreluBackward)?)?;
            assert_bits_eq(
                &what,
                &got,
                &want_bwd(dtype, &lxs, &wb, &lgs, &[3, c, 10], &[1, c]),
            );

            // Rows of one slope per element, strided: (7, c) narrowed out of (7, 2c + 1).
            let wide = from_bits(
                dtype,
                &patterns(dtype, 7 * (2 * c + 1), 13),
                &[7, 2 * c + 1],
                &dev,
            )?;
            let xr = wide.narrow(1, 1, c)?;
            let gr = from_bits(dtype, &patterns(dtype, 7 * c, 14), &[7, c], &dev)?;
            let gr = Tensor::cat(&[&gr, &gr], 1)?.narrow(1, c, c)?;
            let (lxr, lgr) = (logical(&xr)?, logical(&gr)?);
            // And the same rows transposed in memory: (c, 7) storage seen as (7, c).
            let xt = xr.t()?.contiguous()?.t()?;
            let gt = gr.t()?.contiguous()?.t()?;
            for (rows, xv, gv) in [("strided", &xr, &gr), ("transposed", &xt, &gt)] {
                let what = format!("{dev:?} {dtype:?} {rows} rows");
                assert_bits_eq(
                    &what,
                    &to_bits(&xv.apply_op2(&weight, PreluOp)?)?,
                    &want_fwd(dtype, &lxr, &wb, &[7, c], &[c]),
                );
                let got = to_bits(&xv.apply_op3(&weight, gv, PreluBackward)?)?;
                let want = want_bwd(dtype, &lxr, &wb, &lgr, &[7, c], &[c]);
                assert_bits_eq(&what, &got, &want);
            }

            // Mixed: one of x and dy with unit-stride rows, the other transposed.
            let want = want_bwd(dtype, &lxr, &wb, &lgr, &[7, c], &[c]);
            for (xm, gm) in [(&xr, &gt), (&xt, &gr)] {
                let got = to_bits(&xm.apply_op3(&weight, gm, PreluBackward)?)?;
                assert_bits_eq(&format!("{dev:?} {dtype:?} rows, mixed"), &got, &want);
            }
            // The last two dims transposed: many strided runs, several per channel.
            let t4 = from_bits(dtype, &patterns(dtype, 2 * c * 12, 15), &[2, c, 3, 4], &dev)?;
            let xq = t4.transpose(2, 3)?;
            let gq = from_bits(dtype, &patterns(dtype, 2 * c * 12, 16), &[2, c, 4, 3], &dev)?;
            let (lxq, lgq) = (logical(&xq)?, logical(&gq)?);
            let what = format!("{dev:?} {dtype:?} last dims transposed");
            assert_bits_eq(
                &what,
                &to_bits(&xq.apply_op2(&weight, PreluOp)?)?,
                &want_fwd(dtype, &lxq, &wb, &[2, c, 4, 3], &[c]),
            );
            let got = to_bits(&xq.apply_op3(&weight, &gq, PreluBackward)?)?;
            let want = want_bwd(dtype, &lxq, &wb, &lgq, &[2, c, 4, 3], &[c]);
            assert_bits_eq(&what, &got, &want);
            // dy every other element of a wider tensor (stride 2, which folds with the channel
            // dim): one strided run crosses several channels.
            let g2 = from_bits(
                dtype,
                &patterns(dtype, 2 * c * 24, 18),
                &[2, c, 12, 2],
                &dev,
            )?;
            let g2 = g2.narrow(3, 1, 1)?.squeeze(3)?;
            let x2 = t4.reshape((2, c, 12))?;
            let (lx2, lg2) = (logical(&x2)?, logical(&g2)?);
            let got = to_bits(&x2.apply_op3(&weight, &g2, PreluBackward)?)?;
            let want = want_bwd(dtype, &lx2, &wb, &lg2, &[2, c, 12], &[c]);
            assert_bits_eq(&format!("{what}, dy of stride 2"), &got, &want);
            // The other way round: x in order, dy with its last two dims transposed.
            let g4 = from_bits(dtype, &patterns(dtype, 2 * c * 12, 17), &[2, c, 3, 4], &dev)?;
            let (xo, go) = (t4.transpose(2, 3)?.contiguous()?, g4.transpose(2, 3)?);
            let (lxo, lgo) = (logical(&xo)?, logical(&go)?);
            let got = to_bits(&xo.apply_op3(&weight, &go, PreluBackward)?)?;
            let want = want_bwd(dtype, &lxo, &wb, &lgo, &[2, c, 4, 3], &[c]);
            assert_bits_eq(&format!("{what}, dy alone"), &got, &want);

            // A broadcast x (stride 0 along dim 0) with a per-channel weight.
            let row = from_bits(dtype, &patterns(dtype, c * 4, 11), &[1, c, 4], &dev)?;
            let xb2 = row.broadcast_as((6, c, 4))?;
            let lxb = logical(&xb2)?;
            let gb2 = from_bits(dtype, &patterns(dtype, 6 * c * 4, 12), &[6, c, 4], &dev)?;
            let lgb = logical(&gb2)?;
            let got = to_bits(&xb2.apply_op3(&weight, &gb2, PreluBackward)?)?;
            let want = want_bwd(dtype, &lxb, &wb, &lgb, &[6, c, 4], &[c]);
            assert_bits_eq(&format!("{dev:?} {dtype:?} broadcast"), &got, &want);
        }
    }
    Ok(())
}

/// The op itself (`apply_op2(&w, PreluOp)`, `apply_op3(.., PreluBackward)`) on channel-last
/// views: a contiguous result with the reference's bits. Tiles of positions full and partial
/// (more than 64 positions per row), ranks 3 to 5, an offset view, and a view past the threading
/// threshold.
#[test]
fn the_op_on_channel_last_views() -> Result<()> {
    // (logical dims, storage rows skipped before the view, storage positions cut off the end of
    // the last dim: then a row's positions are several runs in memory)
    let cases: [(&[usize], usize, usize); 8] = [
        (&[3, 5, 11], 0, 0),
        (&[2, 6, 5, 7], 1, 0),
        (&[2, 3, 2, 4, 5], 0, 0),
        (&[2, 70, 130], 0, 0),
        (&[3, 2, 9, 15], 2, 0),
        (&[2, 4, 6, 5], 1, 3),
        // Past the threading threshold: rows of more than one task's elements, and tasks of
        // several rows.
        (&[4, 8, 96, 96], 0, 0),
        (&[40, 8, 32, 32], 1, 0),
    ];
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            for (k, &(xd, skip, cut)) in cases.iter().enumerate() {
                let (r, c) = (xd.len(), xd[1]);
                // Storage dims: dim 1 last, `skip` more rows in front, `cut` more positions.
                let mut sd: Vec<usize> = std::iter::once(xd[0] + skip)
                    .chain(xd[2..].iter().copied())
                    .chain([c])
                    .collect();
                sd[r - 2] += cut;
                let back: Vec<usize> = [0, r - 1].into_iter().chain(1..r - 1).collect();
                let view = |seed: u64| -> Result<Tensor> {
                    let m = sd.iter().product();
                    from_bits(dtype, &patterns(dtype, m, seed), &sd, &dev)?
                        .narrow(0, skip, xd[0])?
                        .narrow(r - 2, 0, xd[r - 1])?
                        .permute(back.clone())
                };
                let (x, dy) = (view(90 + k as u64)?, view(100 + k as u64)?);
                let wb = weight_patterns(dtype, c, 7 + k as u64);
                let w = from_bits(dtype, &wb, &[c], &dev)?;
                let (lx, lg) = (to_bits(&x.contiguous()?)?, to_bits(&dy.contiguous()?)?);
                let what =
                    format!("{dev:?} {dtype:?} x {xd:?} (+{skip} rows, +{cut}) channel-last");
                let y = x.apply_op2(&w, PreluOp)?;
                assert!(y.is_contiguous(), "{what}");
                assert_bits_eq(&what, &to_bits(&y)?, &want_fwd(dtype, &lx, &wb, xd, &[c]));
                let got = to_bits(&x.apply_op3(&w, &dy, PreluBackward)?)?;
                let want = want_bwd(dtype, &lx, &wb, &lg, xd, &[c]);
                assert_bits_eq(&format!("{what} backward"), &got, &want);
            }
        }
    }
    Ok(())
}

/// The layer and `prelu` on channel-last views (NLC seen as NCL, NHWC as NCHW, NDHWC as NCDHW)
/// keep the layout: the result is a channel-last view with the reference's values, and
/// autograd through it gives the reference's `dx` and the contract's `dweight` bits, the same as
/// for the contiguous tensor. A weight of x's own shape, a scalar weight and a view whose dims
/// are not in order stay on the op's own path (and are contiguous).
#[test]
fn channel_last_views_keep_their_layout() -> Result<()> {
    let cases: [&[usize]; 3] = [&[3, 5, 11], &[2, 6, 5, 7], &[2, 3, 2, 4, 5]];
    for dev in devices() {
        for dtype in DTYPES.into_iter().filter(|&d| supports(&dev, d)) {
            for (k, &xd) in cases.iter().enumerate() {
                let (r, c, n) = (xd.len(), xd[1], xd.iter().product::<usize>());
                // Storage dims: dim 1 last.
                let sd: Vec<usize> = std::iter::once(xd[0])
                    .chain(xd[2..].iter().copied())
                    .chain([c])
                    .collect();
                let back: Vec<usize> = [0, r - 1].into_iter().chain(1..r - 1).collect();
                let (xb, gb) = (patterns(dtype, n, 70 + k as u64), patterns(dtype, n, 80));
                let wb = weight_patterns(dtype, c, 3 + k as u64);
                let xs = from_bits(dtype, &xb, &sd, &dev)?;
                let x = xs.permute(back.clone())?;
                let dy = from_bits(dtype, &gb, &sd, &dev)?.permute(back.clone())?;
                let w = from_bits(dtype, &wb, &[c], &dev)?;
                let what = format!("{dev:?} {dtype:?} x {xd:?} channel-last");
                let (lx, lg) = (to_bits(&x.contiguous()?)?, to_bits(&dy.contiguous()?)?);

                let y = x.prelu(&w)?;
                assert_eq!(y.dims(), xd, "{what}");
                assert_eq!(y.stride()[1], 1, "{what}: the result is channel-last");
                assert_bits_eq(&what, &to_bits(&y)?, &want_fwd(dtype, &lx, &wb, xd, &[c]));
                let layer = PReLU::new(w.clone(), false);
                assert_bits_eq(&what, &to_bits(&layer.forward(&x)?)?, &to_bits(&y)?);

                // Autograd through the channel-last path: the bits of autograd through the
                // contiguous tensor with the same values (candle's own ops around the layer are
                // the same in both; their arithmetic, e.g. adding each gradient into a zero
                // tensor, is candle's).
                let grads_of = |x: &Var, y: Tensor, w: &Var| -> Result<(Vec<u64>, Vec<u64>)> {
                    let g = (y * &dy)?.sum_all()?.backward()?;
                    let gx = g.get(x.as_tensor()).expect("dx");
                    let gx = match gx.dims() == xd {
                        true => gx.clone(),
                        false => gx.permute(back.clone())?,
                    };
                    Ok((to_bits(&gx)?, to_bits(g.get(w.as_tensor()).expect("dw"))?))
                };
                let (xv, wv) = (Var::from_tensor(&xs)?, Var::from_tensor(&w)?);
                let y = xv
                    .as_tensor()
                    .permute(back.clone())?
                    .prelu(wv.as_tensor())?;
                let got = grads_of(&xv, y, &wv)?;
                let (xc, wc) = (Var::from_tensor(&x.contiguous()?)?, Var::from_tensor(&w)?);
                let y = xc.as_tensor().prelu(wc.as_tensor())?;
                assert!(y.is_contiguous());
                let want = grads_of(&xc, y, &wc)?;
                assert_bits_eq(&format!("{what} dx"), &got.0, &want.0);
                assert_bits_eq(&format!("{what} dweight"), &got.1, &want.1);
                let fused = want_bwd(dtype, &lx, &wb, &lg, xd, &[c]);
                if dtype == DType::F32 {
                    // In f32 candle's ops around the layer are exact here: the reference's dweight
                    // (with -0.0 read as +0.0, what adding into a zero tensor gives).
                    let plus = |b: &[u64]| -> Vec<u64> {
                        b.iter()
                            .map(|&v| if v == 0x8000_0000 { 0 } else { v })
                            .collect()
                    };
                    assert_bits_eq(
                        &format!("{what} dweight"),
                        &plus(&got.1),
                        &plus(&fused[n..]),
                    );
                }
            }
            // Not channel-last in the sense above: the op's own path, a contiguous result.
            let t = from_bits(dtype, &patterns(dtype, 60, 5), &[2, 5, 3, 2], &dev)?;
            let (wc, w1) = (
                from_bits(dtype, &weight_patterns(dtype, 3, 1), &[3], &dev)?,
                from_bits(dtype, &weight_patterns(dtype, 1, 1), &[1], &dev)?,
            );
            let odd = t.permute((0, 2, 3, 1))?; // dims (2, 3, 2, 5): dim 1 has stride 2
            let x1 = t.permute((0, 3, 1, 2))?; // channel-last, but one slope for all
            for (x, w) in [(&odd, &wc), (&x1, &w1)] {
                let y = x.prelu(w)?;
                assert!(y.is_contiguous(), "{dev:?} {dtype:?} {:?}", x.dims());
                assert_bits_eq(
                    "op path",
                    &to_bits(&y)?,
                    &to_bits(&x.apply_op2(w, PreluOp)?)?,
                );
            }
        }
    }
    Ok(())
}

/// Random views (permutes, narrows, broadcasts) of large-enough tensors to take the parallel
/// paths, on the CPU under rayon pools of 1, 2 and 3 threads: the same bits every time, equal
/// to the reference.
#[test]
fn same_bits_for_any_thread_count() -> Result<()> {
    let dev = Device::Cpu;
    // Among them rows of 400 terms per channel-row (100): threads may only split every 64 rows.
    let cases: [(&[usize], &[usize], bool); 6] = [
        (&[700, 4, 100], &[4], false),
        (&[16, 8, 48, 48], &[8], false),
        (&[16, 8, 48, 48], &[8], true),
        (&[4, 1 << 17], &[1], false),
        (&[1 << 12, 96], &[96], false),
        (&[9, 3, 101, 99], &[1], true),
    ];
    for dtype in [DType::F32, DType::BF16, DType::F64] {
        for (k, &(xd, wd, channel_last)) in cases.iter().enumerate() {
            let n: usize = xd.iter().product();
            let c: usize = wd.iter().product();
            // One slope for all: one channel, whose sum a single special (NaN, infinity) would
            // make NaN whatever the order or the terms; finite values then, so that the sum's
            // bits show any change in the terms or their order.
            let pattern = |n: usize, seed: u64| -> Vec<u64> {
                match c {
                    1 => patterns(dtype, n + 24, seed)[24..].to_vec(),
                    _ => patterns(dtype, n, seed),
                }
            };
            let (xb, gb) = (pattern(n, k as u64), pattern(n, 50 + k as u64));
            let wb = weight_patterns(dtype, c, k as u64);
            let make = |b: &[u64]| -> Result<Tensor> {
                if channel_last {
                    let nhwc = [xd[0], xd[2], xd[3], xd[1]];
                    from_bits(dtype, b, &nhwc, &dev)?.permute((0, 3, 1, 2))
                } else {
                    from_bits(dtype, b, xd, &dev)
                }
            };
            let (x, dy) = (make(&xb)?, make(&gb)?);
            let w = from_bits(dtype, &wb, wd, &dev)?;
            let run = |threads: usize| -> Result<(Vec<u64>, Vec<u64>)> {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    Ok((
                        to_bits(&x.prelu(&w)?)?,
                        to_bits(&x.apply_op3(&w, &dy, PreluBackward)?)?,
                    ))
                })
            };
            let one = run(1)?;
            for t in [2, 3] {
                assert_eq!(run(t)?, one, "{dtype:?} case {k}: {t} threads");
            }
            let (lx, lg) = (to_bits(&x.contiguous()?)?, to_bits(&dy.contiguous()?)?);
            assert_bits_eq(
                &format!("{dtype:?} {k} fwd"),
                &one.0,
                &want_fwd(dtype, &lx, &wb, xd, wd),
            );
            let want = want_bwd(dtype, &lx, &wb, &lg, xd, wd);
            assert_bits_eq(&format!("{dtype:?} {k} bwd"), &one.1, &want);
        }
    }
    Ok(())
}

// ---- Refusals: before anything is read or written, naming the op.

#[test]
fn bad_weights_dtypes_and_layouts_refused() -> Result<()> {
    for dev in devices() {
        let x = Tensor::ones((2, 3, 4), DType::F32, &dev)?;
        let refused = |r: Result<Tensor>, has: &[&str]| {
            let e = r.expect_err("refused").to_string();
            assert!(e.contains("prelu"), "{e}");
            for h in has {
                assert!(e.contains(h), "{e} lacks {h}");
            }
        };
        // A weight of 2 or 4 elements fits neither channel nor scalar nor x's shape.
        refused(
            x.prelu(&Tensor::ones(2, DType::F32, &dev)?),
            &["[2, 3, 4]", "[2]"],
        );
        refused(
            x.prelu(&Tensor::ones((2, 2), DType::F32, &dev)?),
            &["[2, 2]"],
        );
        // Rank 1: only one slope or x's shape.
        let x1 = Tensor::ones(5, DType::F32, &dev)?;
        refused(
            x1.prelu(&Tensor::ones(3, DType::F32, &dev)?),
            &["[5]", "[3]"],
        );
        // The weight's dtype must be x's.
        refused(x.prelu(&Tensor::ones(3, DType::F16, &dev)?), &["dtype"]);
        // Dtypes outside the contract.
        let xi = Tensor::ones((2, 3), DType::U32, &dev)?;
        let e = xi.prelu(&Tensor::ones(3, DType::U32, &dev)?).unwrap_err();
        assert!(
            matches!(e, candle_core::Error::UnsupportedDTypeForOp(_, "prelu")),
            "{e}"
        );
        // dy of another shape or dtype.
        let w = Tensor::ones(3, DType::F32, &dev)?;
        let dy = Tensor::ones((2, 3, 5), DType::F32, &dev)?;
        refused(x.apply_op3(&w, &dy, PreluBackward), &[]);
        let dy = Tensor::ones((2, 3, 4), DType::F64, &dev)?;
        refused(x.apply_op3(&w, &dy, PreluBackward), &[]);
        // A scalar layer with more than one slope.
        let layer = PReLU::new(Tensor::ones(3, DType::F32, &dev)?, true);
        refused(layer.forward(&x), &["one element"]);
    }
    Ok(())
}

/// Hand-built weight and x layouts that reach past their storage, through the trait method.
#[test]
fn hand_built_layouts_refused() -> Result<()> {
    use candle_core::CustomOp2;
    let x = candle_core::CpuStorage::F32(vec![1.0; 12]);
    let w = candle_core::CpuStorage::F32(vec![0.5; 3]);
    let lx = Layout::contiguous(Shape::from((4, 3)));
    let cases = [
        Layout::new(Shape::from(3), vec![2], 0),
        Layout::new(Shape::from(3), vec![1], 1),
        Layout::new(Shape::from(3), vec![1, 1], 0),
        Layout::new(Shape::from(3), vec![usize::MAX], 0),
    ];
    for lw in cases {
        let e = PreluOp.cpu_fwd(&x, &lx, &w, &lw).unwrap_err().to_string();
        assert!(e.contains("prelu") && e.contains("invalid layout"), "{e}");
    }
    let bad_x = Layout::new(Shape::from((4, 3)), vec![3, 2], 0);
    let e = PreluOp
        .cpu_fwd(&x, &bad_x, &w, &Layout::contiguous(3))
        .unwrap_err()
        .to_string();
    assert!(e.contains("prelu") && e.contains("invalid layout"), "{e}");
    Ok(())
}

/// An empty x whose other dims multiply past `usize` (a hand-built layout: candle's own
/// contiguous strides would overflow), with a per-channel weight: an empty output and one +0.0
/// per weight element, never a panic on the product of the trailing dims.
#[test]
fn empty_x_with_huge_trailing_dims() -> Result<()> {
    use candle_core::{CpuStorage, CustomOp2, CustomOp3};
    let dims = [0, 3, 1 << 40, 1 << 40];
    let lx = Layout::new(Shape::from(&dims[..]), vec![1; 4], 0);
    let (x, w) = (CpuStorage::F32(vec![]), CpuStorage::F32(vec![0.5; 3]));
    let lw = Layout::contiguous(3);
    let (y, shape) = PreluOp.cpu_fwd(&x, &lx, &w, &lw)?;
    assert_eq!(shape.dims(), dims);
    assert!(matches!(y, CpuStorage::F32(v) if v.is_empty()));
    let (both, shape) = PreluBackward.cpu_fwd(&x, &lx, &w, &lw, &x, &lx)?;
    assert_eq!(shape.dims(), [3]);
    match both {
        CpuStorage::F32(v) => assert_eq!(v.iter().map(|d| d.to_bits()).collect::<Vec<_>>(), [0; 3]),
        _ => panic!("not f32"),
    }
    Ok(())
}

// ---- Names: candle prints the ops' own names, the ones every error of the crate carries.

#[test]
fn op_names_as_candle_prints_them() -> Result<()> {
    use candle_core::{CustomOp2, CustomOp3};
    assert_eq!(CustomOp2::name(&PreluOp), "prelu");
    assert_eq!(CustomOp3::name(&PreluBackward), "prelu_backward");
    // The same names in the crate's own refusals.
    let x = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
    let e = x.prelu(&Tensor::ones(4, DType::F32, &Device::Cpu)?);
    assert!(e.unwrap_err().to_string().starts_with("prelu:"));
    let w = Tensor::ones(3, DType::F32, &Device::Cpu)?;
    let e = x.apply_op3(&w, &x.to_dtype(DType::F64)?, PreluBackward);
    assert!(e.unwrap_err().to_string().contains("prelu_backward"));
    Ok(())
}

// ---- Autograd: PreluOp's backward is PreluBackward, split into (dx, dweight).

#[test]
fn autograd_gives_the_fused_gradients() -> Result<()> {
    for dev in devices() {
        let dtype = DType::F32;
        let xd = [2, 3, 4];
        let xb = patterns(dtype, 24, 7);
        let x = Var::from_tensor(&from_bits(dtype, &xb, &xd, &dev)?)?;
        let w = Var::from_tensor(&Tensor::new(&[0.25f32, -0.5, 2.0], &dev)?)?;
        let u = from_bits(dtype, &patterns(dtype, 24, 8), &xd, &dev)?;
        let y = x.prelu(&w)?;
        let grads = (y * &u)?.sum_all()?.backward()?;
        let fused = x.apply_op3(&w, &u, PreluBackward)?;
        let (dx, dw) = (fused.narrow(0, 0, 24)?, fused.narrow(0, 24, 3)?);
        // candle adds each gradient into a zero tensor: -0.0 comes back as +0.0.
        let plus = |b: Vec<u64>| -> Vec<u64> {
            b.into_iter()
                .map(|v| if v == 0x8000_0000 { 0 } else { v })
                .collect()
        };
        let got_dx = to_bits(grads.get(&x).expect("dx"))?;
        assert_bits_eq("dx", &plus(got_dx), &plus(to_bits(&dx)?));
        let got_dw = to_bits(grads.get(&w).expect("dweight"))?;
        assert_bits_eq("dweight", &plus(got_dw), &plus(to_bits(&dw)?));
    }
    Ok(())
}

/// Second order (CANDLE_GRAD_DO_NOT_DETACH): a gradient penalty through PReLU, its gradient for
/// the weight and for an input scale against f64 central differences, for every weight kind:
/// per channel (with blocks of one element on either side of the channel dim, and of several),
/// one slope, and a slope per element (rank 1 and rank 2).
#[test]
fn second_order_against_finite_differences() -> Result<()> {
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    let x6 = [-1.5f64, 0.7, -0.3, 2.0, -0.9, -2.5];
    let x12 = [
        -1.5f64, 0.7, -0.3, 2.0, -0.9, -2.5, 1.2, -0.6, 0.4, -1.1, -0.8, 1.7,
    ];
    // (x values, x dims, initial slopes, weight dims)
    type Case<'a> = (&'a [f64], &'a [usize], &'a [f64], &'a [usize]);
    let cases: [Case; 6] = [
        (&x6, &[2, 3], &[0.3, -0.2, 0.8], &[3]),
        (&x6[..3], &[1, 3], &[0.3, -0.2, 0.8], &[3]),
        (&x12, &[2, 3, 2], &[0.3, -0.2, 0.8], &[3]),
        (&x6, &[2, 3], &[0.4], &[1]),
        (&x6, &[2, 3], &[0.3, -0.2, 0.8, 0.1, 0.6, -0.4], &[2, 3]),
        (&x6[..3], &[3], &[0.3, -0.2, 0.8], &[3]),
    ];
    for (xv, xd, w0, wd) in cases {
        second_order_case(xv, xd, w0, wd)?;
    }
    Ok(())
}

/// One case of [`second_order_against_finite_differences`]: x of dims `xd`, the weight `w0` of
/// dims `wd`, a scale per element of x's last dim.
fn second_order_case(xv: &[f64], xd: &[usize], w0: &[f64], wd: &[usize]) -> Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::from_slice(xv, xd, &dev)?;
    let penalty = |w: &Var, s: &Var| -> Result<Tensor> {
        // L = sum(prelu(x * s, w)^2), s a scale along the last dim; P = |dL/dw|^2 + |dL/ds|^2.
        let inp = x.broadcast_mul(s.as_tensor())?;
        let y = inp.prelu(w.as_tensor())?;
        let g = y.sqr()?.sum_all()?.backward()?;
        let gw = g.get(w).expect("dL/dw").clone();
        let gs = g.get(s).expect("dL/ds").clone();
        (gw.sqr()?.sum_all()? + gs.sqr()?.sum_all()?)?.sum_all()
    };
    let s0: Vec<f64> = (0..xd[xd.len() - 1])
        .map(|i| [1.1, 0.9, 1.3][i % 3])
        .collect();
    let var = |v: &[f64], d: &[usize]| Var::from_tensor(&Tensor::from_slice(v, d, &dev)?);
    let (w, s) = (var(w0, wd)?, var(&s0, &[s0.len()])?);
    let g = penalty(&w, &s)?.backward()?;
    let gw = g
        .get(&w)
        .expect("dP/dw: a second-order term was dropped")
        .flatten_all()?
        .to_vec1::<f64>()?;
    let gs = g.get(&s).expect("dP/ds").to_vec1::<f64>()?;
    let h = 1e-6;
    let grads =
        (gw.iter().map(|&g| ("w", g)).enumerate()).chain(gs.iter().map(|&g| ("s", g)).enumerate());
    for (i, (which, analytic)) in grads {
        let at = |d: f64| -> Result<f64> {
            let (mut wv, mut sv) = (w0.to_vec(), s0.clone());
            if which == "w" {
                wv[i] += d
            } else {
                sv[i] += d
            }
            penalty(&var(&wv, wd)?, &var(&sv, &[sv.len()])?)?.to_scalar::<f64>()
        };
        let fd = (at(h)? - at(-h)?) / (2.0 * h);
        assert!(
            (fd - analytic).abs() <= 1e-5 * fd.abs().max(1.0),
            "x {xd:?}, weight {wd:?}: {which}[{i}]: analytic {analytic} vs finite difference {fd}"
        );
    }
    Ok(())
}

// ---- The candle-nn drop-in: the same API, the same results away from the documented changes.

#[test]
fn drop_in_for_candle_nn_prelu() -> Result<()> {
    let dev = Device::Cpu;
    for (xd, c) in [
        (vec![4, 3, 5, 5], Some(3)),
        (vec![6, 7], Some(7)),
        (vec![2, 3, 4], None),
    ] {
        let n: usize = xd.iter().product();
        // Values away from zero: candle-nn's composite differs from the contract only at 0.
        let xv: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.5) / 3.0)
            .collect();
        let x = Tensor::from_vec(xv, xd.as_slice(), &dev)?;
        let ours = {
            let map = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &dev);
            let l = prelu(c, vb.pp("p"))?;
            assert_eq!(l.is_scalar(), c.is_none());
            assert_eq!(l.weight().dims(), [c.unwrap_or(1)]);
            assert_eq!(
                map.data().lock().unwrap().keys().collect::<Vec<_>>(),
                ["p.weight"]
            );
            l
        };
        let theirs = {
            let map = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &dev);
            candle_nn::prelu(c, vb.pp("p"))?
        };
        assert_eq!(to_bits(ours.weight())?, to_bits(theirs.weight())?);
        let (yo, yt) = (ours.forward(&x)?, theirs.forward(&x)?);
        assert_bits_eq(&format!("{xd:?}"), &to_bits(&yo)?, &to_bits(&yt)?);
        // Gradients: dx bit for bit; dweight within float rounding (candle-nn sums in its order).
        let xv = Var::from_tensor(&x)?;
        let go = ours.forward(xv.as_tensor())?.sum_all()?.backward()?;
        let gt = theirs.forward(xv.as_tensor())?.sum_all()?.backward()?;
        let (dxo, dxt) = (go.get(&xv).unwrap(), gt.get(&xv).unwrap());
        assert_bits_eq("dx", &to_bits(dxo)?, &to_bits(dxt)?);
        // The weight is a Var inside each VarMap: compare its gradients.
        let (wo, wt) = (ours.weight(), theirs.weight());
        if let (Some(a), Some(b)) = (go.get(wo), gt.get(wt)) {
            for (a, b) in a.to_vec1::<f32>()?.iter().zip(b.to_vec1::<f32>()?) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        } else {
            panic!("no weight gradient");
        }
    }
    Ok(())
}

/// A PyTorch `nn.PReLU(3)` state dict saved by PyTorch (`torch.save`) loads into the layer as it
/// does into candle-nn's, and computes PyTorch's outputs (saved alongside).
#[test]
fn loads_a_pytorch_state_dict() -> Result<()> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prelu3.safetensors");
    let dev = Device::Cpu;
    let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &dev)? };
    let ours = prelu(Some(3), vb.pp("act"))?;
    let theirs = candle_nn::prelu(Some(3), vb.pp("act"))?;
    assert_eq!(to_bits(ours.weight())?, to_bits(theirs.weight())?);
    let tensors = candle_core::safetensors::load(&path, &dev)?;
    let (x, y) = (&tensors["x"], &tensors["y"]);
    assert_bits_eq("torch y", &to_bits(&ours.forward(x)?)?, &to_bits(y)?);
    Ok(())
}

/// A small convolutional net with PReLU layers trains: AdamW lowers the loss.
#[test]
fn small_conv_net_trains_with_adamw() -> Result<()> {
    use candle_nn::{conv2d, linear, Conv2dConfig, Optimizer, VarBuilder, VarMap};
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let c1 = conv2d(1, 4, 3, cfg, vb.pp("c1"))?;
    let a1 = prelu(Some(4), vb.pp("a1"))?;
    let c2 = conv2d(4, 4, 3, cfg, vb.pp("c2"))?;
    let a2 = prelu(None, vb.pp("a2"))?;
    let head = linear(4 * 6 * 6, 2, vb.pp("head"))?;
    // Two classes: a bright left half or a bright right half.
    let mut xs = vec![0f32; 16 * 36];
    let mut ys = vec![0u32; 16];
    for b in 0..16 {
        ys[b] = (b % 2) as u32;
        for i in 0..36 {
            let left = i % 6 < 3;
            xs[b * 36 + i] =
                if left == (b % 2 == 0) { 1.0 } else { -1.0 } * (1.0 + (b as f32) / 16.0);
        }
    }
    let x = Tensor::from_vec(xs, (16, 1, 6, 6), &dev)?;
    let y = Tensor::from_vec(ys, 16, &dev)?;
    let forward = |x: &Tensor| -> Result<Tensor> {
        let h = a1.forward(&c1.forward(x)?)?;
        let h = a2.forward(&c2.forward(&h)?)?;
        head.forward(&h.flatten_from(1)?)
    };
    let mut opt = candle_nn::AdamW::new_lr(map.all_vars(), 0.02)?;
    let loss0 = candle_nn::loss::cross_entropy(&forward(&x)?, &y)?.to_scalar::<f32>()?;
    let w_before = a1.weight().to_vec1::<f32>()?;
    for _ in 0..30 {
        let loss = candle_nn::loss::cross_entropy(&forward(&x)?, &y)?;
        opt.backward_step(&loss)?;
    }
    let loss1 = candle_nn::loss::cross_entropy(&forward(&x)?, &y)?.to_scalar::<f32>()?;
    assert!(loss1 < 0.5 * loss0, "loss {loss0} -> {loss1}");
    assert_ne!(
        a1.weight().to_vec1::<f32>()?,
        w_before,
        "the slopes learned"
    );
    Ok(())
}
