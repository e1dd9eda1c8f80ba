//! The layout walker: a strided view folded to the fewest dims and cut into runs along its
//! innermost dim, so that unit-stride runs go through the contiguous slice kernels.

use candle_core::Layout;

/// A view folded to the fewest dims for `K` operands of one shape: dims of size 1 dropped,
/// neighbours merged where every operand's strides allow; the innermost dim is split off as the
/// run length. All indices are `usize` (64-bit); the layouts must have passed
/// `base::check_operand`, which bounds the element count and every offset computed here by the
/// storage length.
pub(super) struct Walk<const K: usize> {
    outer: Vec<usize>,
    strides: [Vec<usize>; K],
    starts: [usize; K],
    pub(super) len: usize,
    pub(super) inner: [usize; K],
}

impl<const K: usize> Walk<K> {
    pub(super) fn new(layouts: [&Layout; K]) -> Self {
        let dims = layouts[0].dims();
        let mut outer: Vec<usize> = Vec::with_capacity(dims.len());
        let mut strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::new());
        for (i, &d) in dims.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let merge = !outer.is_empty()
                && (0..K).all(|k| {
                    let outer = layouts[k].stride()[i].checked_mul(d);
                    outer.is_some() && strides[k].last() == outer.as_ref()
                });
            if merge {
                *outer.last_mut().expect("non-empty") *= d;
            } else {
                outer.push(d);
            }
            for k in 0..K {
                let s = layouts[k].stride()[i];
                match strides[k].last_mut() {
                    Some(last) if merge => *last = s,
                    _ => strides[k].push(s),
                }
            }
        }
        let len = outer.pop().unwrap_or(1);
        let inner = std::array::from_fn(|k| strides[k].pop().unwrap_or(0));
        let starts = std::array::from_fn(|k| layouts[k].start_offset());
        Self {
            outer,
            strides,
            starts,
            len,
            inner,
        }
    }

    /// The number of runs: the element count divided by the run length.
    pub(super) fn count(&self) -> usize {
        self.outer.iter().product()
    }

    /// The storage offsets of each run, from run number `first` to the last.
    pub(super) fn runs(&self, first: usize) -> Runs<'_, K> {
        let mut idx = vec![0; self.outer.len()];
        let mut offs = self.starts;
        let mut r = first;
        for j in (0..self.outer.len()).rev() {
            idx[j] = r % self.outer[j];
            r /= self.outer[j];
            for (off, strides) in offs.iter_mut().zip(&self.strides) {
                *off += idx[j] * strides[j];
            }
        }
        Runs {
            walk: self,
            idx,
            offs,
            left: self.count().saturating_sub(first),
        }
    }
}

pub(super) struct Runs<'a, const K: usize> {
    walk: &'a Walk<K>,
    idx: Vec<usize>,
    offs: [usize; K],
    left: usize,
}

impl<const K: usize> Iterator for Runs<'_, K> {
    type Item = [usize; K];

    fn next(&mut self) -> Option<[usize; K]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let here = self.offs;
        let w = self.walk;
        // After the last run there is nothing to advance to.
        let dims = if self.left == 0 { 0 } else { w.outer.len() };
        for j in (0..dims).rev() {
            self.idx[j] += 1;
            for k in 0..K {
                self.offs[k] += w.strides[k][j];
            }
            if self.idx[j] < w.outer[j] {
                break;
            }
            self.idx[j] = 0;
            for k in 0..K {
                self.offs[k] -= w.strides[k][j] * w.outer[j];
            }
        }
        Some(here)
    }
}
