//! The index arithmetic of the GPU kernels' strided walks, one rule for the CUDA and the Metal
//! backends: a walk runs with 32-bit division and offsets (the `_u32` kernels) when everything it
//! computes fits, else with 64-bit (the `_u64` kernels). It imports nothing from this crate, so
//! that the host harness of the Metal shader (`tests/metal_host.rs`) compiles it as it is.

use candle_core::Layout;

/// Whether a strided walk over `layouts` (the operands' layouts, one shape of `n > 0` elements)
/// fits 32-bit index arithmetic: `n` and every offset it computes, up to
/// `sum((dim - 1) * stride)` per layout, at most `u32::MAX` (then so is every dim, and every
/// stride of a dim above 1; the stride of a dim of 1 is multiplied by zero only).
pub fn fits_u32(n: usize, layouts: &[&Layout]) -> bool {
    let max = u32::MAX as usize;
    n <= max
        && layouts.iter().all(|l| {
            (l.dims().iter().zip(l.stride()))
                .try_fold(0usize, |m, (&d, &s)| {
                    m.checked_add(d.saturating_sub(1).checked_mul(s)?)
                })
                .is_some_and(|m| m <= max)
        })
}

/// Which strided kernel walks a view: 32-bit or 64-bit index arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexWidth {
    /// The `_u32` kernels.
    U32,
    /// The `_u64` kernels.
    U64,
}

impl IndexWidth {
    /// The width a walk over `layouts` (one shape of `n` elements) needs: [`IndexWidth::U32`]
    /// where [`fits_u32`] holds, else [`IndexWidth::U64`].
    pub fn of(n: usize, layouts: &[&Layout]) -> Self {
        if fits_u32(n, layouts) {
            Self::U32
        } else {
            Self::U64
        }
    }

    /// The suffix of the kernels' names: `_u32` or `_u64`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::U32 => "_u32",
            Self::U64 => "_u64",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fits_u32, IndexWidth};
    use candle_core::{Layout, Shape};

    fn layout(dims: &[usize], stride: &[usize]) -> Layout {
        Layout::new(Shape::from(dims), stride.to_vec(), 0)
    }

    #[test]
    fn fits_u32_at_the_boundaries() {
        let max = u32::MAX as usize;
        // (dims, strides, fits): the largest offset is sum((dim - 1) * stride), the count the
        // product of the dims; each pair sits on one side of a boundary.
        let cases: [(&[usize], &[usize], bool); 14] = [
            (&[2, 3], &[1, 2], true),
            (&[2, 3], &[max - 2, 1], true),
            (&[2, 3], &[max - 1, 1], false),
            (&[2], &[max], true),
            (&[3], &[max / 2 + 1], false),
            (&[1, 7], &[usize::MAX, 1], true),
            (&[3, 1 << 30], &[0, 1], true),
            (&[5, 1 << 30], &[0, 1], false),
            (&[max], &[1], true),
            (&[max], &[0], true),
            (&[max + 1], &[0], false),
            (&[2, 2], &[1 << 40, 1], false),
            (&[2, 2], &[usize::MAX, 1], false),
            (&[3, 3], &[usize::MAX / 2 + 1, 1], false),
        ];
        for (dims, stride, want) in cases {
            let n = dims.iter().product();
            assert_eq!(
                fits_u32(n, &[&layout(dims, stride)]),
                want,
                "{dims:?} {stride:?}"
            );
            let width = IndexWidth::of(n, &[&layout(dims, stride)]);
            assert_eq!(width == IndexWidth::U32, want, "{dims:?} {stride:?}");
        }
        // Rank 0: one element at offset 0.
        assert!(fits_u32(1, &[&layout(&[], &[])]));
    }

    #[test]
    fn every_operand_must_fit() {
        let (a, b) = (layout(&[4, 4], &[4, 1]), layout(&[4, 4], &[1 << 31, 1]));
        assert!(fits_u32(16, &[&a, &a]));
        assert!(!fits_u32(16, &[&a, &b]) && !fits_u32(16, &[&b, &a]));
        assert_eq!(IndexWidth::of(16, &[&a, &b]), IndexWidth::U64);
    }
}
