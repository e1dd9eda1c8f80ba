//! The summation order of PReLU's weight gradient (NUMERICS.md, section "PReLU weight gradient:
//! summation order"), as the CPU runs it. Pure arithmetic: no tensors, no layouts, no threads.
//!
//! The order, once: a channel's terms `t_0 .. t_{n-1}` (logical row-major order) are cut into
//! blocks of [`BLOCK`] = 256, the last one padded with `-0.0`. Within a block, lane `j` of
//! [`LANES`] = 16 is the left-to-right sum of terms `j, j + 16, .., j + 240`, starting from its
//! first term; the block sum is the pairwise tree over the 16 lanes (adjacent pairs, level by
//! level). The channel sum is the same tree over the block sums padded with `-0.0` to a power of
//! two; an empty channel sums to `+0.0`. The sum is rounded once to the weight's dtype, a NaN sum
//! giving the canonical NaN (`Rule::narrow` in `rule.rs`, which also forms the terms:
//! `Rule::term`).
//!
//! Every addition is a plain IEEE addition in the accumulation type: Rust never contracts `a * b +
//! c` into a fused multiply-add, and this crate builds without fast-math flags.

/// Terms per block.
pub(crate) const BLOCK: usize = 256;
/// Lanes per block: each sums every 16th term of the block.
pub(crate) const LANES: usize = 16;

/// The accumulation type of the sums: the contract's compute type C (f32 for f16, bf16 and f32
/// weights; f64 for f64).
pub(crate) trait Acc: Copy {
    /// `-0.0`, the padding: the exact identity of IEEE addition.
    const NEG_ZERO: Self;
    /// `+0.0`: the term of an element with `x > 0`, and the sum of an empty channel.
    const POS_ZERO: Self;
    /// One IEEE addition, rounded to nearest even.
    fn add(self, other: Self) -> Self;
}

impl Acc for f32 {
    const NEG_ZERO: Self = -0.0;
    const POS_ZERO: Self = 0.0;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
}

impl Acc for f64 {
    const NEG_ZERO: Self = -0.0;
    const POS_ZERO: Self = 0.0;
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// The sum of one full block of 256 terms: 16 lanes accumulated vertically (lane `j` starts with
/// `t[j]`, then adds `t[16k + j]` for `k = 1 .. 15` in order), then the 4-level pairwise tree over
/// the lanes. The row loop is 16 independent additions, which the compiler vectorises.
#[inline]
pub(crate) fn block_sum<A: Acc>(t: &[A; BLOCK]) -> A {
    let mut acc: [A; LANES] = std::array::from_fn(|j| t[j]);
    for row in t.chunks_exact(LANES).skip(1) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = a.add(v);
        }
    }
    lanes_tree(acc)
}

/// The 4-level pairwise tree over a block's 16 lane sums: level by level, lane `i` of the next
/// level is lane `2i` plus lane `2i + 1`.
#[inline]
pub(crate) fn lanes_tree<A: Acc>(mut acc: [A; LANES]) -> A {
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] = acc[2 * i].add(acc[2 * i + 1]);
        }
    }
    acc[0]
}

/// The pairwise tree over `sums` (used as scratch: overwritten): conceptually padded with `-0.0`
/// to the least power of two `M >= sums.len()`, then level by level element `2i` plus element
/// `2i + 1`. An odd last element at some level is added to a `-0.0` pad, exactly as the padded
/// array would do. One element is returned as it is; an empty slice sums to `+0.0`.
pub(crate) fn tree<A: Acc>(sums: &mut [A]) -> A {
    let mut len = sums.len();
    if len == 0 {
        return A::POS_ZERO;
    }
    while len > 1 {
        let half = len.div_ceil(2);
        for i in 0..half {
            let right = if 2 * i + 1 < len {
                sums[2 * i + 1]
            } else {
                A::NEG_ZERO
            };
            sums[i] = sums[2 * i].add(right);
        }
        len = half;
    }
    sums[0]
}

/// The sum of one channel's terms given as one slice, in the order above.
#[cfg(test)]
pub(crate) fn channel_sum<A: Acc>(terms: &[A]) -> A {
    let mut b = Blocks::new();
    b.push(terms);
    b.finish()
}

/// A channel's running sum, fed terms in runs of any length (for example one strided run of the
/// input at a time), in the channel's logical order. Full blocks are summed as soon as they are
/// complete; [`Blocks::finish`] pads the last block and reduces the block sums with [`tree`].
pub(crate) struct Blocks<A: Acc> {
    /// The current, partial block: its first `fill` entries are terms.
    buf: [A; BLOCK],
    fill: usize,
    /// The sums of the complete blocks so far, in order.
    sums: Vec<A>,
}

impl<A: Acc> Default for Blocks<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Acc> Blocks<A> {
    /// An empty channel.
    pub(crate) fn new() -> Self {
        Blocks {
            buf: [A::NEG_ZERO; BLOCK],
            fill: 0,
            sums: Vec::new(),
        }
    }

    /// Appends the next terms of the channel. Whole blocks that start at a block boundary are
    /// summed straight from `terms`, without a copy.
    pub(crate) fn push(&mut self, mut terms: &[A]) {
        if self.fill > 0 {
            let k = terms.len().min(BLOCK - self.fill);
            self.buf[self.fill..self.fill + k].copy_from_slice(&terms[..k]);
            self.fill += k;
            terms = &terms[k..];
            if self.fill < BLOCK {
                return;
            }
            self.sums.push(block_sum(&self.buf));
            self.fill = 0;
        }
        let mut blocks = terms.chunks_exact(BLOCK);
        for b in &mut blocks {
            // `chunks_exact` yields slices of exactly BLOCK elements.
            let b: &[A; BLOCK] = b.try_into().expect("a chunk of BLOCK terms");
            self.sums.push(block_sum(b));
        }
        let rest = blocks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// Whether the next term starts a block: then whole blocks may be summed elsewhere (by
    /// the same order) and appended with [`Blocks::push_sums`].
    #[inline]
    pub(crate) fn at_block_start(&self) -> bool {
        self.fill == 0
    }

    /// Appends the sums of whole blocks of the channel's next terms, each summed in this
    /// module's order ([`block_sum`]); the channel must be at a block start.
    pub(crate) fn push_sums(&mut self, sums: &[A]) {
        assert!(self.at_block_start(), "block sums appended inside a block");
        self.sums.extend_from_slice(sums);
    }

    /// Appends one term.
    #[inline]
    pub(crate) fn push_one(&mut self, t: A) {
        self.buf[self.fill] = t;
        self.fill += 1;
        if self.fill == BLOCK {
            self.sums.push(block_sum(&self.buf));
            self.fill = 0;
        }
    }

    /// The block sums `S_0 .. S_{m-1}`, the last (partial) block padded with `-0.0`: for a caller
    /// that combines aligned power-of-two groups of them itself.
    pub(crate) fn into_sums(mut self) -> Vec<A> {
        if self.fill > 0 {
            self.buf[self.fill..].fill(A::NEG_ZERO);
            self.sums.push(block_sum(&self.buf));
        }
        self.sums
    }

    /// The channel sum `S`: `+0.0` for no terms.
    #[cfg(test)]
    pub(crate) fn finish(self) -> A {
        tree(&mut self.into_sums())
    }
}

/// The running sums of `C` channels fed one row at a time: row `r` holds term `r` of every
/// channel (a `(rows, C)` matrix of terms, as PReLU's terms are for a `(N, C)` input, or for the
/// positions of a channel-last view). The same order as [`Blocks`] per channel, computed for all
/// channels at once: row `r` of a block goes to lane `r % 16`, which is a plain vector add across
/// the row (one IEEE addition per term, in the lane's order); a finished block reduces its 16
/// lanes with the same adjacent-pairs tree, channel by channel.
pub(crate) struct Columns<A: Acc> {
    /// Lane `j` of every channel: `lanes[j * c + ch]`.
    lanes: Vec<A>,
    c: usize,
    /// Rows of the current block so far.
    fill: usize,
    /// Per channel, the sums of its complete blocks so far, in order.
    sums: Vec<Vec<A>>,
}

impl<A: Acc> Columns<A> {
    /// `c` empty channels.
    pub(crate) fn new(c: usize) -> Self {
        Columns {
            lanes: vec![A::NEG_ZERO; LANES * c],
            c,
            fill: 0,
            sums: (0..c).map(|_| Vec::new()).collect(),
        }
    }

    /// Appends the next term of every channel (`row.len()` is the channel count).
    #[inline]
    pub(crate) fn push_row(&mut self, row: &[A]) {
        let c = self.c;
        let lane = &mut self.lanes[(self.fill % LANES) * c..][..c];
        if self.fill < LANES {
            // A lane starts from its first term.
            lane.copy_from_slice(&row[..c]);
        } else {
            for (a, &t) in lane.iter_mut().zip(row) {
                *a = a.add(t);
            }
        }
        self.fill += 1;
        if self.fill == BLOCK {
            self.close_block();
        }
    }

    /// The tree over the 16 lanes of every channel; a lane that never started is a `-0.0` pad
    /// (and so is every term missing from a lane that did: adding `-0.0` changes nothing).
    fn close_block(&mut self) {
        let c = self.c;
        for j in self.fill.min(LANES)..LANES {
            self.lanes[j * c..][..c].fill(A::NEG_ZERO);
        }
        let mut w = LANES;
        while w > 1 {
            w /= 2;
            // Lane i of the next level from lanes 2i and 2i + 1: it never overwrites a lane that
            // a later i still reads (2i' >= 2i + 2 > i).
            for i in 0..w {
                for ch in 0..c {
                    let (l, r) = (self.lanes[2 * i * c + ch], self.lanes[(2 * i + 1) * c + ch]);
                    self.lanes[i * c + ch] = l.add(r);
                }
            }
        }
        for (sums, &s) in self.sums.iter_mut().zip(&self.lanes[..c]) {
            sums.push(s);
        }
        self.fill = 0;
    }

    /// Per channel, the block sums `S_0 .. S_{m-1}` (the last block padded with `-0.0`), as
    /// [`Blocks::into_sums`] gives them.
    pub(crate) fn into_sums(mut self) -> Vec<Vec<A>> {
        if self.fill > 0 {
            self.close_block();
        }
        self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Terms per lane.
    const ROWS: usize = BLOCK / LANES;

    /// The order written as plainly as possible: pad to whole blocks, lanes as left folds over a
    /// stride of 16, then a recursive halving tree (equal to adjacent pairs level by level for a
    /// power-of-two length) over the lanes and over the padded block sums.
    fn naive<A: Acc>(t: &[A]) -> A {
        if t.is_empty() {
            return A::POS_ZERO;
        }
        fn halves<A: Acc>(v: &[A]) -> A {
            if v.len() == 1 {
                v[0]
            } else {
                let (l, r) = v.split_at(v.len() / 2);
                halves(l).add(halves(r))
            }
        }
        let m = t.len().div_ceil(BLOCK);
        let padded: Vec<A> = (0..m * BLOCK)
            .map(|i| t.get(i).copied().unwrap_or(A::NEG_ZERO))
            .collect();
        let mut sums: Vec<A> = padded
            .chunks(BLOCK)
            .map(|blk| {
                let lanes: Vec<A> = (0..LANES)
                    .map(|j| (1..ROWS).fold(blk[j], |s, k| s.add(blk[k * LANES + j])))
                    .collect();
                halves(&lanes)
            })
            .collect();
        sums.resize(m.next_power_of_two(), A::NEG_ZERO);
        halves(&sums)
    }

    /// Bits, with every NaN as one value: Rust leaves the payload and sign of a NaN result
    /// unspecified (LLVM may swap the operands of an addition), which is why the sum's NaN is
    /// canonicalised when it is rounded to the weight's dtype.
    fn key32(v: f32) -> u32 {
        if v.is_nan() {
            0x7FC0_0000
        } else {
            v.to_bits()
        }
    }

    fn key64(v: f64) -> u64 {
        if v.is_nan() {
            0x7FF8_0000_0000_0000
        } else {
            v.to_bits()
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

    const F32_SPECIALS: [u32; 12] = [
        0x0000_0000, // +0
        0x8000_0000, // -0
        0x7F80_0000, // +inf
        0xFF80_0000, // -inf
        0x7FC0_0001, // NaN
        0x0000_0001, // min subnormal
        0x8000_0001,
        0x007F_FFFF, // max subnormal
        0x7F7F_FFFF, // max finite
        0xFF7F_FFFF,
        0x3F80_0000, // 1
        0x4B80_0000, // 2^24
    ];

    /// Mostly random finite f32 values of mixed magnitude, with specials at `special_rate`.
    fn f32_terms(n: usize, seed: u64, special_rate: u64) -> Vec<f32> {
        let mut w = words(seed | 1);
        (0..n)
            .map(|_| {
                let r = w();
                if special_rate > 0 && r.is_multiple_of(special_rate) {
                    f32::from_bits(F32_SPECIALS[(r >> 8) as usize % F32_SPECIALS.len()])
                } else {
                    // Sign, a mantissa and an exponent within 2^-40 .. 2^40.
                    let e = 87 + (r >> 32) % 80;
                    f32::from_bits(((r as u32) & 0x807F_FFFF) | ((e as u32) << 23))
                }
            })
            .collect()
    }

    fn f64_terms(n: usize, seed: u64) -> Vec<f64> {
        let mut w = words(seed | 1);
        (0..n)
            .map(|_| {
                let r = w();
                let e = 1023 - 60 + (w() % 120);
                f64::from_bits((r & 0x800F_FFFF_FFFF_FFFF) | (e << 52))
            })
            .collect()
    }

    const SIZES: [usize; 14] = [
        0, 1, 2, 15, 16, 17, 255, 256, 257, 511, 1024, 1280, 4097, 9000,
    ];

    #[test]
    fn f32_bits_equal_naive() {
        for (s, &n) in SIZES.iter().enumerate() {
            for rate in [0, 3, 50] {
                let t = f32_terms(n, 11 + s as u64, rate);
                let (got, want) = (channel_sum(&t), naive(&t));
                assert_eq!(key32(got), key32(want), "n {n}, specials 1/{rate}");
            }
        }
    }

    #[test]
    fn f64_bits_equal_naive() {
        for (s, &n) in SIZES.iter().enumerate() {
            let t = f64_terms(n, 7 + s as u64);
            assert_eq!(key64(channel_sum(&t)), key64(naive(&t)), "n {n}");
        }
    }

    /// Pushing the same terms in arbitrary runs (one at a time, short, long, block-straddling)
    /// gives the same bits as one slice.
    #[test]
    fn runs_of_any_length() {
        let mut w = words(99);
        for &n in &SIZES {
            let t = f32_terms(n, n as u64 + 3, 20);
            let want = key32(naive(&t));
            for cut in [1usize, 3, 16, 255, 256, 257, 700] {
                let mut b = Blocks::new();
                let mut rest = &t[..];
                while !rest.is_empty() {
                    let k = (1 + (w() as usize) % cut).min(rest.len());
                    if k == 1 && w().is_multiple_of(2) {
                        b.push_one(rest[0]);
                    } else {
                        b.push(&rest[..k]);
                    }
                    rest = &rest[k..];
                }
                assert_eq!(key32(b.finish()), want, "n {n}, runs up to {cut}");
            }
        }
    }

    /// Rows of terms through `Columns` give every channel the bits of `Blocks` fed the same
    /// channel's terms, for row counts around the block and lane sizes and any channel count.
    #[test]
    fn columns_equal_blocks_per_channel() {
        for (s, &rows) in SIZES.iter().enumerate() {
            for c in [1usize, 3, 16, 17, 64] {
                let t = f32_terms(rows * c, 5 + s as u64 + c as u64, 7);
                let mut cols = Columns::new(c);
                t.chunks_exact(c).for_each(|row| cols.push_row(row));
                let sums = cols.into_sums();
                assert_eq!(sums.len(), c);
                for (ch, got) in sums.iter().enumerate() {
                    let mut b = Blocks::new();
                    t.iter().skip(ch).step_by(c).for_each(|&v| b.push_one(v));
                    let want = b.into_sums();
                    assert_eq!(got.len(), want.len(), "rows {rows}, c {c}, channel {ch}");
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(key32(*g), key32(*w), "rows {rows}, c {c}, channel {ch}");
                    }
                }
            }
        }
        let t = f64_terms(700 * 5, 3);
        let mut cols = Columns::new(5);
        t.chunks_exact(5).for_each(|row| cols.push_row(row));
        let sums = cols.into_sums();
        assert_eq!(sums.len(), 5);
        for (ch, got) in sums.iter().enumerate() {
            let mut b = Blocks::new();
            t.iter().skip(ch).step_by(5).for_each(|&v| b.push_one(v));
            let want: Vec<u64> = b.into_sums().into_iter().map(key64).collect();
            assert_eq!(got.iter().map(|&v| key64(v)).collect::<Vec<_>>(), want);
        }
    }

    /// Hand-worked: the lanes stride by 16 (t_0, t_32, t_48 share lane 0: 2^24 + 1 + 1 stays
    /// 2^24, where lanes of 16 consecutive terms would add 1 + 1 first: 2^24 + 2), the lane tree pairs adjacent lanes
    /// ((1 + 2^24) + (1 + 1) = 2^24 + 2, where a left-to-right sum gives 2^24), and zeros keep
    /// their sign (all -0.0 -> -0.0, one +0.0 -> +0.0, nothing -> +0.0).
    #[test]
    fn hand_worked() {
        let p24 = 16_777_216.0f32;
        let mut t = vec![-0.0f32; 256];
        (t[0], t[32], t[48]) = (p24, 1.0, 1.0);
        assert_eq!(channel_sum(&t), p24);
        assert_eq!(channel_sum(&[1.0, p24, 1.0, 1.0]), p24 + 2.0);
        let mut t = vec![-0.0f32; 1025];
        (t[0], t[256], t[512], t[768], t[1024]) = (1.0, p24, 1.0, 1.0, 2.0);
        // Block sums 1, 2^24, 1, 1, 2 padded to 8: ((1 + 2^24) + (1 + 1)) + (2 + ..) = 2^24 + 4.
        assert_eq!(channel_sum(&t), p24 + 4.0);
        assert_eq!(channel_sum(&[-0.0f32; 300]).to_bits(), 0x8000_0000);
        // Three block sums, all -0.0, padded with a fourth -0.0: still -0.0.
        assert_eq!(channel_sum(&[-0.0f32; 513]).to_bits(), 0x8000_0000);
        assert_eq!(
            channel_sum(&[-0.0f64; 300]).to_bits(),
            0x8000_0000_0000_0000
        );
        let mut z = [-0.0f64; 300];
        z[299] = 0.0;
        assert_eq!(channel_sum(&z).to_bits(), 0);
        assert_eq!(channel_sum::<f32>(&[]).to_bits(), 0);
        assert_eq!(tree::<f64>(&mut []).to_bits(), 0);
        assert_eq!(tree(&mut [-0.0f32]).to_bits(), 0x8000_0000);
    }
}
