//! The numerics contract's scalar rule (NUMERICS.md, forward and backward tables), one element
//! at a time, per dtype. This is the file to check against the contract: the rest of the CPU
//! backend (SIMD slice kernels, the layout walker, threading) only decides which elements go
//! through these two functions, and the F16C kernel in `simd.rs` is tested against them.
//!
//! It assumes Rust's default floating-point environment (round to nearest, subnormals kept: no
//! FTZ/DAZ), as Rust itself does.

use crate::op::Slope;
use half::{bf16, f16};

/// The canonical positive quiet NaNs of the contract.
pub(crate) const NAN_F16: u16 = 0x7E00;
pub(crate) const NAN_BF16: u16 = 0x7FC0;
pub(crate) const NAN_F32: u32 = 0x7FC0_0000;
pub(crate) const NAN_F64: u64 = 0x7FF8_0000_0000_0000;

/// One element type of the contract and its scalar rule.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// The forward table of the contract for one element.
    fn fwd(self, a: Slope) -> Self;
    /// The backward table of the contract for one element (`self` is `x`).
    fn bwd(self, dy: Self, a: Slope) -> Self;
}

macro_rules! float_elem {
    ($t:ty, $slope:ident, $nan:expr) => {
        impl Elem for $t {
            #[inline(always)]
            fn fwd(self, a: Slope) -> Self {
                let p = self * a.$slope;
                let p = if p.is_nan() { <$t>::from_bits($nan) } else { p };
                // `<=` is false for NaN: a NaN input takes the `else` arm, bits unchanged.
                if self <= 0.0 {
                    p
                } else {
                    self
                }
            }

            #[inline(always)]
            fn bwd(self, dy: Self, a: Slope) -> Self {
                let p = dy * a.$slope;
                let p = if p.is_nan() { <$t>::from_bits($nan) } else { p };
                if self > 0.0 {
                    dy
                } else {
                    p
                }
            }
        }
    };
}

float_elem!(f32, f32, NAN_F32);
float_elem!(f64, f64, NAN_F64);

/// bf16 -> f32 is exact: the bits move up 16 places.
#[inline(always)]
fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// f32 -> bf16, round to nearest, ties to even; NaN becomes the canonical bf16 NaN.
#[inline(always)]
fn f32_to_bf16(p: f32) -> u16 {
    let b = p.to_bits();
    let r = (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16;
    if p.is_nan() {
        NAN_BF16
    } else {
        r
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn fwd(self, a: Slope) -> Self {
        let x = bf16_to_f32(self.to_bits());
        let r = f32_to_bf16(x * a.f32);
        bf16::from_bits(if x <= 0.0 { r } else { self.to_bits() })
    }

    #[inline(always)]
    fn bwd(self, dy: Self, a: Slope) -> Self {
        let r = f32_to_bf16(bf16_to_f32(dy.to_bits()) * a.f32);
        bf16::from_bits(if self.to_f32() > 0.0 { dy.to_bits() } else { r })
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn fwd(self, a: Slope) -> Self {
        let x = self.to_f32();
        let p = x * a.f32;
        let r = if p.is_nan() {
            f16::from_bits(NAN_F16)
        } else {
            f16::from_f32(p)
        };
        if x <= 0.0 {
            r
        } else {
            self
        }
    }

    #[inline(always)]
    fn bwd(self, dy: Self, a: Slope) -> Self {
        let p = dy.to_f32() * a.f32;
        let r = if p.is_nan() {
            f16::from_bits(NAN_F16)
        } else {
            f16::from_f32(p)
        };
        if self.to_f32() > 0.0 {
            dy
        } else {
            r
        }
    }
}
