//! Host-run kernel tests, shared by the GPU backends: cases built from real candle views on the
//! CPU, a text case file that a native driver runs the GPU kernel source on (compiled for the host
//! with a shim), and the expected bits from the crate's CPU path.
//!
//! Case file (one case per `case` line, whitespace-separated; bit patterns in hex):
//! `case ID OP DTYPE ALPHA_BITS CONTIGUOUS RANK dims x_strides [dy_strides] X_OFFSET DY_OFFSET
//!  NX x_bits NDY dy_bits NGRIDS (grid block)...` with OP `fwd|bwd|inplace`, DTYPE
//! `f16|bf16|f32|f64`, ALPHA_BITS the slope argument (f64 bits for f64, else `alpha as f32`),
//! dy strides only for `bwd`. The driver answers `out ID GRID BLOCK N bits...` per case and grid:
//! the `n` outputs (fwd, bwd) or the whole x storage after the run (inplace).
#![allow(dead_code)]

use crate::common::{from_bits, to_bits};
use candle_core::{DType, Device, Result, Tensor};
use candle_leaky_relu::{LeakyRelu, LeakyReluBackward};
use std::collections::HashMap;
use std::fmt::Write;

/// The entry point a case drives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Fwd,
    Bwd,
    Inplace,
}

/// One operand as the kernel sees it: the whole storage and the view's strides and offset.
#[derive(Clone, Debug)]
pub struct Operand {
    pub storage: Vec<u64>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

/// One kernel run and its expected output.
#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub op: Op,
    pub dtype: DType,
    pub alpha: f64,
    pub dims: Vec<usize>,
    pub x: Operand,
    pub dy: Option<Operand>,
    /// fwd/bwd: the `n` outputs in logical order; inplace: the whole x storage afterwards.
    pub want: Vec<u64>,
    /// The same run through the op on a GPU device (see [`standard_cases`]); `None` on the CPU.
    pub device_got: Option<Vec<u64>>,
}

/// A view of a storage tensor (narrow, transpose, broadcast, ...); must not copy.
pub type View<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;

/// The whole storage, contiguous.
pub fn flat(t: &Tensor) -> Result<Tensor> {
    Ok(t.clone())
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F32 => "f32",
        DType::F64 => "f64",
        d => panic!("not a contract dtype: {d:?}"),
    }
}

/// A storage tensor on `dev` holding `bits` and the view `view` of it, checked to share the
/// storage.
fn operand(
    dtype: DType,
    bits: &[u64],
    view: View<'_>,
    dev: &Device,
) -> Result<(Tensor, Tensor, Operand)> {
    let base = from_bits(dtype, bits, &[bits.len()], dev)?;
    let v = view(&base)?;
    let l = v.layout();
    let op = Operand {
        storage: bits.to_vec(),
        strides: l.stride().to_vec(),
        offset: l.start_offset(),
    };
    // The view must read the storage through these strides (a copying op would not).
    let got = to_bits(&v)?;
    let walk: Vec<u64> = (0..got.len())
        .map(|i| bits[storage_index(i, l.dims(), &op.strides, op.offset)])
        .collect();
    assert_eq!(got, walk, "the view of a case copied its storage");
    Ok((base, v, op))
}

/// The storage index of logical element `i` of a view.
pub fn storage_index(mut i: usize, dims: &[usize], strides: &[usize], offset: usize) -> usize {
    let mut off = offset;
    for (&d, &s) in dims.iter().zip(strides).rev() {
        off += (i % d) * s;
        i /= d;
    }
    off
}

impl Case {
    /// A forward or in-place case on `view(x)`; the expected bits come from the CPU path, and
    /// when `dev` is a GPU the op runs there too (`device_got`).
    pub fn unary(
        id: &str,
        op: Op,
        dtype: DType,
        alpha: f64,
        x: &[u64],
        view: View<'_>,
        dev: &Device,
    ) -> Result<Self> {
        let run = |dev: &Device| -> Result<(Vec<u64>, Operand, Vec<usize>)> {
            let (base, v, xo) = operand(dtype, x, view, dev)?;
            if op == Op::Fwd {
                return Ok((
                    to_bits(&v.apply_op1(LeakyRelu(alpha))?)?,
                    xo,
                    v.dims().to_vec(),
                ));
            }
            v.inplace_op1(&LeakyRelu(alpha))?;
            // The backend receives broadcast dims collapsed to one element (op::inplace_layout).
            let dims = (v.dims().iter().zip(&xo.strides))
                .map(|(&d, &s)| if s == 0 { d.min(1) } else { d })
                .collect();
            Ok((to_bits(&base)?, xo, dims))
        };
        let (want, xo, dims) = run(&Device::Cpu)?;
        Ok(Self {
            id: id.to_string(),
            op,
            dtype,
            alpha,
            dims,
            x: xo,
            dy: None,
            want,
            device_got: if dev.is_cpu() {
                None
            } else {
                Some(run(dev)?.0)
            },
        })
    }

    /// A backward case on `(xview(x), dyview(dy))`, on the CPU and on `dev` as for [`Case::unary`].
    pub fn binary(
        id: &str,
        dtype: DType,
        alpha: f64,
        x: (&[u64], View<'_>),
        dy: (&[u64], View<'_>),
        dev: &Device,
    ) -> Result<Self> {
        let run = |dev: &Device| -> Result<(Vec<u64>, Operand, Operand, Vec<usize>)> {
            let (_, xv, xo) = operand(dtype, x.0, x.1, dev)?;
            let (_, dv, dyo) = operand(dtype, dy.0, dy.1, dev)?;
            let got = to_bits(&xv.apply_op2_no_bwd(&dv, &LeakyReluBackward(alpha))?)?;
            Ok((got, xo, dyo, xv.dims().to_vec()))
        };
        let (want, xo, dyo, dims) = run(&Device::Cpu)?;
        Ok(Self {
            id: id.to_string(),
            op: Op::Bwd,
            dtype,
            alpha,
            dims,
            x: xo,
            dy: Some(dyo),
            want,
            device_got: if dev.is_cpu() {
                None
            } else {
                Some(run(dev)?.0)
            },
        })
    }

    /// Elements of the output.
    pub fn n(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether every operand is contiguous (the kernel then gets no dims/strides buffer).
    pub fn contiguous(&self) -> bool {
        let c = |s: &[usize]| {
            let l = candle_core::Layout::new(self.dims.clone().into(), s.to_vec(), 0);
            l.is_contiguous()
        };
        c(&self.x.strides) && self.dy.as_ref().is_none_or(|d| c(&d.strides))
    }

    /// The slope argument's bits: f64 for f64 tensors, `alpha as f32` otherwise.
    pub fn alpha_bits(&self) -> u64 {
        if self.dtype == DType::F64 {
            self.alpha.to_bits()
        } else {
            (self.alpha as f32).to_bits() as u64
        }
    }

    /// Simulated launches for this case: one thread, one small block, grids much smaller than
    /// the work (the grid-stride loops wrap), and one thread per work item.
    pub fn grids(&self) -> Vec<(u32, u32)> {
        let per = if self.contiguous() {
            16 / self.dtype.size_in_bytes()
        } else {
            1
        };
        let work = self.n().div_ceil(per).max(1);
        let mut g = vec![(1, 1), (3, 64), (work.div_ceil(128) as u32, 128)];
        if self.n() <= 4096 {
            g.extend([(1, 32), (2, 96), (5, 256)]);
        }
        g
    }
}

/// Writes the case file for `cases`.
pub fn case_file(cases: &[Case]) -> String {
    let mut s = String::new();
    let list = |s: &mut String, v: &[usize]| v.iter().for_each(|x| write!(s, " {x}").unwrap());
    let bits = |s: &mut String, v: &[u64]| {
        write!(s, " {}", v.len()).unwrap();
        v.iter().for_each(|x| write!(s, " {x:x}").unwrap());
    };
    for c in cases {
        let op = match c.op {
            Op::Fwd => "fwd",
            Op::Bwd => "bwd",
            Op::Inplace => "inplace",
        };
        let (name, contiguous) = (dtype_name(c.dtype), c.contiguous() as u8);
        write!(
            s,
            "case {} {op} {name} {:x} {contiguous} {}",
            c.id,
            c.alpha_bits(),
            c.dims.len()
        )
        .unwrap();
        list(&mut s, &c.dims);
        list(&mut s, &c.x.strides);
        let dy = c.dy.clone().unwrap_or(Operand {
            storage: vec![],
            strides: vec![],
            offset: 0,
        });
        list(&mut s, &dy.strides);
        write!(s, " {} {}", c.x.offset, dy.offset).unwrap();
        bits(&mut s, &c.x.storage);
        bits(&mut s, &dy.storage);
        let grids = c.grids();
        write!(s, " {}", grids.len()).unwrap();
        grids
            .iter()
            .for_each(|(g, b)| write!(s, " {g} {b}").unwrap());
        s.push('\n');
    }
    s
}

/// Compares the driver's output with every case's expected bits; returns one line per wrong
/// or missing result (empty: all equal).
pub fn mismatches(cases: &[Case], driver_output: &str) -> Vec<String> {
    let mut got: HashMap<(&str, u32, u32), Vec<u64>> = HashMap::new();
    for line in driver_output.lines() {
        let mut w = line.split_whitespace();
        let (Some("out"), Some(id), Some(g), Some(b), Some(_)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let bits = w
            .map(|x| u64::from_str_radix(x, 16).unwrap_or(u64::MAX))
            .collect();
        got.insert((id, g.parse().unwrap_or(0), b.parse().unwrap_or(0)), bits);
    }
    let mut bad = Vec::new();
    for c in cases {
        for (g, b) in c.grids() {
            let what = format!(
                "{} ({:?} {:?} alpha {} grid {g}x{b})",
                c.id, c.op, c.dtype, c.alpha
            );
            match got.get(&(c.id.as_str(), g, b)) {
                None => bad.push(format!("{what}: no output")),
                Some(v) if v.len() != c.want.len() => bad.push(format!(
                    "{what}: {} outputs, want {}",
                    v.len(),
                    c.want.len()
                )),
                Some(v) => {
                    if let Some(i) = (0..v.len()).find(|&i| v[i] != c.want[i]) {
                        let x = c.x.storage.get(i).copied().unwrap_or(0);
                        bad.push(format!(
                            "{what}: element {i}: got {:#x}, want {:#x} (x storage[{i}] = {x:#x})",
                            v[i], c.want[i]
                        ));
                    }
                }
            }
        }
    }
    bad
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The slopes every dtype is checked with: the default, ReLU, negative, above one, and one so
/// small that `alpha as f32` is subnormal.
pub const ALPHAS: [f64; 5] = [0.01, 0.0, -0.5, 1.5, 1e-40];

/// Test values of `dtype`: every pattern for f16/bf16; specials (zeros, infinities, NaNs with
/// payloads and signs, subnormals, extremes) and random patterns for f32/f64.
pub fn values(dtype: DType, rng: &mut Rng) -> Vec<u64> {
    match dtype {
        DType::F16 | DType::BF16 => (0..1 << 16).collect(),
        DType::F32 => {
            let mut v: Vec<u64> = [
                0u32,
                0x8000_0000,
                0x7f80_0000,
                0xff80_0000,
                0x7fc0_0000,
                0xffc0_0000,
                0x7f80_0001,
                0xffa0_0001,
                0x7fbf_ffff,
                1,
                0x8000_0001,
                0x007f_ffff,
                0x807f_ffff,
                0x0080_0000,
                0x8080_0000,
                0x7f7f_ffff,
                0xff7f_ffff,
                0x3f80_0000,
                0xbf80_0000,
                0xbf80_0001,
                0xc2c8_0000,
                0x8040_0000,
                0xa000_0000,
            ]
            .map(u64::from)
            .to_vec();
            v.extend((0..4000).map(|_| rng.next() >> 32));
            v
        }
        DType::F64 => {
            let mut v: Vec<u64> = vec![
                0,
                1 << 63,
                0x7ff0_0000_0000_0000,
                0xfff0_0000_0000_0000,
                0x7ff8_0000_0000_0000,
                0xfff8_0000_0000_0000,
                0x7ff0_0000_0000_0001,
                0xfff4_0000_0000_0001,
                1,
                0x8000_0000_0000_0001,
                0x000f_ffff_ffff_ffff,
                0x800f_ffff_ffff_ffff,
                0x0010_0000_0000_0000,
                0x8010_0000_0000_0000,
                0x7fef_ffff_ffff_ffff,
                0xffef_ffff_ffff_ffff,
                0x3ff0_0000_0000_0000,
                0xbff0_0000_0000_0000,
                0x8000_0000_0000_1000,
            ];
            v.extend((0..4000).map(|_| rng.next()));
            v
        }
        d => panic!("not a contract dtype: {d:?}"),
    }
}

fn t2d(t: &Tensor, r: usize) -> Result<Tensor> {
    t.narrow(0, 0, t.dim(0)? / r * r)?.reshape((r, ()))
}

/// A view as a plain function.
pub type ViewFn = fn(&Tensor) -> Result<Tensor>;

/// Strided and broadcast views over a storage of 64 elements.
pub const VIEWS: [(&str, ViewFn); 6] = [
    ("transpose", |t| t2d(t, 8)?.t()),
    ("narrow", |t| t2d(t, 8)?.narrow(1, 1, 5)),
    ("offset_narrow", |t| {
        t.narrow(0, 3, 40)?.reshape((5, 8))?.narrow(1, 2, 6)
    }),
    ("permute3", |t| {
        t.narrow(0, 0, 60)?.reshape((3, 4, 5))?.permute((2, 0, 1))
    }),
    ("broadcast", |t| {
        t.narrow(0, 5, 7)?.reshape((1, 7))?.broadcast_as((6, 7))
    }),
    ("unit_dims", |t| {
        t.narrow(0, 1, 60)?.reshape((1, 6, 1, 10))?.narrow(3, 0, 9)
    }),
];

/// The standard case list for one dtype: every value and slope through each entry point
/// (contiguous: vector path), every dy through both backward branches, sizes 1–33 at aligned and
/// misaligned offsets, strided and broadcast views, and large inputs at aligned and misaligned
/// offsets. With a GPU `dev`, every case also runs through the op there (`device_got`).
pub fn standard_cases(dtype: DType, dev: &Device) -> Result<Vec<Case>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ dtype.size_in_bytes() as u64);
    let vals = values(dtype, &mut rng);
    let (name, len) = (dtype_name(dtype), vals.len());
    // dy: the values reordered (an odd multiplier permutes 2^16 patterns).
    let dy: Vec<u64> = (0..len).map(|i| vals[(i * 40503 + 7) % len]).collect();
    let mut out = Vec::new();
    for (ai, &a) in ALPHAS.iter().enumerate() {
        let id = format!("{name}_a{ai}");
        out.push(Case::unary(
            &format!("{id}_fwd_all"),
            Op::Fwd,
            dtype,
            a,
            &vals,
            &flat,
            dev,
        )?);
        out.push(Case::unary(
            &format!("{id}_inplace_all"),
            Op::Inplace,
            dtype,
            a,
            &vals,
            &flat,
            dev,
        )?);
        out.push(Case::binary(
            &format!("{id}_bwd_all"),
            dtype,
            a,
            (&vals, &flat),
            (&dy, &flat),
            dev,
        )?);
        // Every dy through the scaled branch (x = -0.0) and the pass-through one (x = 1), with
        // x a broadcast scalar (stride 0, offset 1).
        for (xi, x) in [(0, -0.0f64), (1, 1.0)] {
            let x = to_bits(&Tensor::new(&[x, x], &Device::Cpu)?.to_dtype(dtype)?)?;
            let bcast = |t: &Tensor| t.narrow(0, 1, 1)?.broadcast_as(len);
            out.push(Case::binary(
                &format!("{id}_bwd_bx{xi}"),
                dtype,
                a,
                (&x, &bcast),
                (&vals, &flat),
                dev,
            )?);
        }
    }
    // Sizes 1..=33 at offsets 0, 1, 3, 5 (misaligned for every dtype); dy at another offset.
    let a = 0.01;
    for n in 1..=33usize {
        for off in [0usize, 1, 3, 5] {
            let x: Vec<u64> = (0..n + 8).map(|i| vals[(i * 7 + n) % len]).collect();
            let g: Vec<u64> = (0..n + 8).map(|i| dy[(i * 5 + n) % len]).collect();
            let (xv, goff) = (|t: &Tensor| t.narrow(0, off, n), (n + off) % 4);
            let gv = |t: &Tensor| t.narrow(0, goff, n);
            let id = format!("{name}_n{n}_o{off}");
            out.push(Case::unary(
                &format!("{id}_fwd"),
                Op::Fwd,
                dtype,
                a,
                &x,
                &xv,
                dev,
            )?);
            out.push(Case::unary(
                &format!("{id}_inplace"),
                Op::Inplace,
                dtype,
                a,
                &x,
                &xv,
                dev,
            )?);
            out.push(Case::binary(
                &format!("{id}_bwd"),
                dtype,
                a,
                (&x, &xv),
                (&g, &gv),
                dev,
            )?);
            out.push(Case::binary(
                &format!("{id}_bwd_same"),
                dtype,
                a,
                (&x, &xv),
                (&g, &xv),
                dev,
            )?);
        }
    }
    // Strided and broadcast views, each entry point, two slopes; backward with x strided and dy
    // contiguous and the reverse.
    let base: Vec<u64> = (0..64).map(|i| vals[(i * 13 + 1) % len]).collect();
    let dbase: Vec<u64> = (0..64).map(|i| dy[(i * 11 + 3) % len]).collect();
    for (vn, v) in VIEWS {
        for (ai, a) in [(0, 0.01), (2, -0.5)] {
            let id = format!("{name}_{vn}_a{ai}");
            out.push(Case::unary(
                &format!("{id}_fwd"),
                Op::Fwd,
                dtype,
                a,
                &base,
                &v,
                dev,
            )?);
            // candle refuses in-place writes through broadcast views before any backend runs.
            if vn != "broadcast" {
                let c = Case::unary(
                    &format!("{id}_inplace"),
                    Op::Inplace,
                    dtype,
                    a,
                    &base,
                    &v,
                    dev,
                );
                out.push(c?);
            }
            out.push(Case::binary(
                &format!("{id}_bwd"),
                dtype,
                a,
                (&base, &v),
                (&dbase, &v),
                dev,
            )?);
        }
    }
    let (tr, sq) = (VIEWS[0].1, |t: &Tensor| t.reshape((8, 8)));
    out.push(Case::binary(
        &format!("{name}_bwd_xT"),
        dtype,
        a,
        (&base, &tr),
        (&dbase, &sq),
        dev,
    )?);
    out.push(Case::binary(
        &format!("{name}_bwd_dyT"),
        dtype,
        a,
        (&base, &sq),
        (&dbase, &tr),
        dev,
    )?);
    // Large, at an aligned and a misaligned offset.
    let big: Vec<u64> = (0..100_003).map(|i| vals[(i * 31 + 5) % len]).collect();
    for off in [0, 1] {
        let v = |t: &Tensor| t.narrow(0, off, 100_000);
        let dv = |t: &Tensor| t.narrow(0, 2, 100_000);
        out.push(Case::unary(
            &format!("{name}_big_o{off}_fwd"),
            Op::Fwd,
            dtype,
            -0.5,
            &big,
            &v,
            dev,
        )?);
        out.push(Case::unary(
            &format!("{name}_big_o{off}_inplace"),
            Op::Inplace,
            dtype,
            -0.5,
            &big,
            &v,
            dev,
        )?);
        out.push(Case::binary(
            &format!("{name}_big_o{off}_bwd"),
            dtype,
            -0.5,
            (&big, &v),
            (&big, &dv),
            dev,
        )?);
    }
    Ok(out)
}
