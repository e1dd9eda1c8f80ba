//! The numerics contract's scalar rule (NUMERICS.md, forward and backward tables), one element
//! at a time. This is the file to check against the contract: the rest of the CPU backend (SIMD
//! slice kernels, the layout walker, threading) only decides which elements go through
//! [`Rule::fwd`] and [`Rule::bwd`], and every vector kernel is tested against them.
//!
//! It assumes Rust's default floating-point environment (round to nearest, subnormals kept: no
//! FTZ/DAZ), as Rust itself does.

use super::tree::Acc;
use crate::base::Slope;
use half::{bf16, f16};
use std::ops::Mul;

/// The canonical positive quiet NaNs of the contract.
pub(crate) const NAN_F16: u16 = 0x7E00;
pub(crate) const NAN_BF16: u16 = 0x7FC0;
pub(crate) const NAN_F32: u32 = 0x7FC0_0000;
pub(crate) const NAN_F64: u64 = 0x7FF8_0000_0000_0000;

/// A compute type C of the contract: f32 or f64 (also the accumulation type of PReLU's weight
/// gradient).
pub(crate) trait Compute:
    Acc + PartialOrd + Mul<Output = Self> + Send + Sync + 'static
{
    const ZERO: Self;
    /// The canonical NaN of the compute type.
    const CANONICAL_NAN: Self;
    fn is_nan(self) -> bool;
    /// The slope of the contract's Types table in this compute type: `alpha` for f64,
    /// `alpha as f32` for f32.
    fn slope(s: Slope) -> Self;
}

impl Compute for f32 {
    const ZERO: Self = 0.0;
    const CANONICAL_NAN: Self = f32::from_bits(NAN_F32);
    #[inline(always)]
    fn slope(s: Slope) -> Self {
        s.f32
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Compute for f64 {
    const ZERO: Self = 0.0;
    const CANONICAL_NAN: Self = f64::from_bits(NAN_F64);
    #[inline(always)]
    fn slope(s: Slope) -> Self {
        s.f64
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// A dtype of the contract and its scalar rule. An implementation gives only the dtype's
/// conversions; the rule itself is written once, in the provided methods.
pub(crate) trait Rule: Copy + Send + Sync + 'static {
    /// The compute type C: f32 for f16, bf16 and f32; f64 for f64. The slope is a C.
    type C: Compute;
    /// The canonical NaN of the dtype.
    const NAN: Self;
    /// `C(x)`: exact.
    fn up(self) -> Self::C;
    /// `R_T(c)`: round to nearest, ties to even, for a `c` that is not NaN.
    fn round(c: Self::C) -> Self;

    /// `R_T(c)`, a NaN giving the canonical NaN.
    #[inline(always)]
    fn narrow(c: Self::C) -> Self {
        if c.is_nan() {
            Self::NAN
        } else {
            Self::round(c)
        }
    }

    /// `R_T(v * a)`, a NaN product giving the canonical NaN.
    #[inline(always)]
    fn scaled(v: Self::C, a: Self::C) -> Self {
        Self::narrow(v * a)
    }

    /// The forward table for one element: `x` (bits unchanged) where `x > 0` or `x` is NaN,
    /// else `R_T(x * a)`.
    #[inline(always)]
    fn fwd(self, a: Self::C) -> Self {
        let x = self.up();
        // `<=` is false for NaN: a NaN input takes the `else` arm, bits unchanged.
        if x <= Self::C::ZERO {
            Self::scaled(x, a)
        } else {
            self
        }
    }

    /// The backward table for one element (`self` is `x`): `dy` (bits unchanged) where `x > 0`,
    /// else `R_T(dy * a)`.
    #[inline(always)]
    fn bwd(self, dy: Self, a: Self::C) -> Self {
        if self.up() > Self::C::ZERO {
            dy
        } else {
            Self::scaled(dy.up(), a)
        }
    }

    /// PReLU's weight-gradient term for one element (`self` is `x`): `+0.0` where `x > 0`, else
    /// `R_C(C(x) * C(dy))` (one rounding, never fused with an addition; a NaN `x` gives its
    /// product). A NaN product is C's canonical NaN, so that every SIMD tier gives the same
    /// bits (the contract needs only a NaN: a NaN sum becomes T's canonical NaN). The terms are
    /// summed in the order of `tree.rs`.
    #[inline(always)]
    fn term(self, dy: Self) -> Self::C {
        let x = self.up();
        if x > Self::C::ZERO {
            Self::C::ZERO
        } else {
            let p = x * dy.up();
            if p.is_nan() {
                Self::C::CANONICAL_NAN
            } else {
                p
            }
        }
    }
}

impl Rule for f32 {
    type C = f32;
    const NAN: Self = f32::from_bits(NAN_F32);
    #[inline(always)]
    fn up(self) -> f32 {
        self
    }
    #[inline(always)]
    fn round(c: f32) -> Self {
        c
    }
}

impl Rule for f64 {
    type C = f64;
    const NAN: Self = f64::from_bits(NAN_F64);
    #[inline(always)]
    fn up(self) -> f64 {
        self
    }
    #[inline(always)]
    fn round(c: f64) -> Self {
        c
    }
}

impl Rule for f16 {
    type C = f32;
    const NAN: Self = f16::from_bits(NAN_F16);
    #[inline(always)]
    fn up(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn round(c: f32) -> Self {
        f16::from_f32(c)
    }
}

impl Rule for bf16 {
    type C = f32;
    const NAN: Self = bf16::from_bits(NAN_BF16);
    /// Exact: the bits move up 16 places.
    #[inline(always)]
    fn up(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    /// Round to nearest, ties to even, in integer arithmetic (vectorises, unlike `half`'s).
    #[inline(always)]
    fn round(c: f32) -> Self {
        let b = c.to_bits();
        bf16::from_bits((b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::Rule;
    use half::{bf16, f16};

    #[test]
    fn narrow_rounds_once_and_canonicalises_nan_and_terms() {
        let nan = f32::INFINITY + f32::NEG_INFINITY;
        assert_eq!(<f16 as Rule>::narrow(nan).to_bits(), 0x7E00);
        assert_eq!(<bf16 as Rule>::narrow(-nan).to_bits(), 0x7FC0);
        assert_eq!(<f32 as Rule>::narrow(-nan).to_bits(), 0x7FC0_0000);
        assert_eq!(
            <f64 as Rule>::narrow(-f64::NAN).to_bits(),
            0x7FF8_0000_0000_0000
        );
        // 1 + 2^-11 is a tie in f16: to even, 1.0. 70000 is beyond f16: +inf.
        assert_eq!(
            <f16 as Rule>::narrow(1.0 + 2f32.powi(-11)).to_bits(),
            0x3C00
        );
        assert_eq!(<f16 as Rule>::narrow(70000.0).to_bits(), 0x7C00);
        // Terms: x > 0 gives +0.0; otherwise the rounded product, NaN x included.
        let h = |v: f32| f16::from_f32(v);
        assert_eq!(Rule::term(h(2.0), h(-3.0)).to_bits(), 0);
        assert_eq!(Rule::term(h(-0.0), h(3.0)).to_bits(), 0x8000_0000);
        assert!(Rule::term(f16::NAN, h(1.0)).is_nan());
        // f16 max * f16 max overflows f16 but not f32: the term is the f32 product.
        assert_eq!(Rule::term(h(-65504.0), h(-65504.0)), 65504.0f32 * 65504.0);
        assert_eq!(Rule::term(-3.0f32, 0.5), -1.5);
        assert_eq!(Rule::term(f64::MIN_POSITIVE, 1.0f64).to_bits(), 0);
    }
}
