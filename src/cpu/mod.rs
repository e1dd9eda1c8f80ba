//! CPU backend: the machinery every op shares (threading, output allocation, the storage's
//! length), and one module per op that dispatches over the dtypes.
//!
//! - `rule.rs` is the contract's scalar rule alone; `simd.rs` the slice kernels over it, each op
//!   written once and run in one of three tiers picked at run time: `scalar` (the rule,
//!   baseline target), `avx2` (AVX2 + F16C) and `avx512` (AVX-512 F/BW/VL); the environment
//!   variable `CANDLE_LEAKY_RELU_CPU_TIER=scalar|avx2|avx512`, read once per process, caps the
//!   tier (a tier the CPU lacks is never run); `walk.rs` the strided-layout walker.
//! - Strided inputs (offsets, transposes, narrows, broadcasts) are walked in place, never copied
//!   to a contiguous buffer first: the view is folded to its fewest dims and each innermost run is
//!   handed to the same slice kernels when it is unit-stride.
//! - Work is split across rayon only from [`PAR_MIN`] elements on.
//! - Large outputs are advised into transparent huge pages before they are first written, which
//!   removes most of the page-fault cost of a fresh buffer.

pub(crate) mod leaky_relu;
pub(crate) mod prelu;
mod rule;
mod simd;
mod tree;
mod walk;

use crate::base::{Backend, Op};
use candle_core::{CpuStorage, DType, Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The CPU kernels' instruction-set tier for this process: `"scalar"`, `"avx2"` or `"avx512"`
/// (the best the CPU has, capped by `CANDLE_LEAKY_RELU_CPU_TIER`). For tests and diagnostics.
pub fn cpu_tier() -> &'static str {
    simd::tier().name()
}

/// Below this many elements everything runs on the calling thread: waking rayon's workers costs
/// more than the whole op (measured: BENCHMARKS.md).
const PAR_MIN: usize = 1 << 18;
/// Elements per rayon task.
const TASK: usize = 1 << 16;
/// Outputs of at least this many bytes are advised into transparent huge pages.
#[cfg(target_os = "linux")]
const HUGE_MIN_BYTES: usize = 32 << 20;

/// Calls `body(first_run, chunk)` over `dst` cut into whole runs of `len`, on rayon tasks when
/// the output is large; returns the sum of what the bodies return (the elements they wrote).
fn split_runs<T: Send>(
    dst: &mut [T],
    len: usize,
    body: impl Fn(usize, &mut [T]) -> usize + Sync,
) -> usize {
    let per_task = (TASK / len).max(1);
    if dst.len() >= PAR_MIN && dst.len() > len {
        dst.par_chunks_mut(per_task * len)
            .enumerate()
            .map(|(t, chunk)| body(t * per_task, chunk))
            .sum()
    } else {
        body(0, dst)
    }
}

/// A fresh `Vec` of `n` elements written by `fill`, which returns how many it wrote from the
/// start. The count is checked before the length is set: a fill that fell short (a layout whose
/// runs do not cover `n`) is an error, never uninitialised memory. An allocation that fails is an
/// error too, not an abort. For `n = 0`, `fill` is not called: an empty view may start past the
/// end of its storage, and nothing of it is touched.
fn alloc_with<T>(
    n: usize,
    op: Op,
    fill: impl FnOnce(&mut [MaybeUninit<T>]) -> usize,
) -> Result<Vec<T>> {
    let op = op.name();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|e| {
        Error::msg(format!(
            "{op}: cannot allocate an output of {n} elements: {e}"
        ))
    })?;
    let spare = &mut v.spare_capacity_mut()[..n];
    advise_huge(spare);
    let written = fill(spare);
    if written != n {
        return Err(Error::msg(format!(
            "{op}: the kernel wrote {written} of {n} output elements; nothing is returned"
        ))
        .bt());
    }
    // SAFETY: `fill` wrote the first `written` elements (each kernel reports what it wrote) and
    // `written == n` was checked just above, whatever the layout.
    unsafe { v.set_len(n) };
    Ok(v)
}

/// Asks the kernel to back a large, not yet touched buffer with transparent huge pages, so that
/// writing it costs one fault per 2 MiB instead of one per 4 KiB.
fn advise_huge<T>(buf: &mut [MaybeUninit<T>]) {
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(buf);
        if bytes < HUGE_MIN_BYTES {
            return;
        }
        let lo = buf.as_mut_ptr() as usize;
        let (start, end) = (lo.next_multiple_of(HUGE), (lo + bytes) / HUGE * HUGE);
        if end > start {
            // SAFETY: [start, end) lies inside `buf`, memory this process owns. MADV_HUGEPAGE is
            // advice only: it never changes the contents or validity of the mapping, and a
            // failure (e.g. THP disabled) leaves ordinary pages, so the result is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
}

impl Backend for CpuStorage {
    const DTYPES: &'static [DType] = &[DType::F16, DType::BF16, DType::F32, DType::F64];

    fn elem_len(&self) -> usize {
        match self {
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            // Other dtypes are refused (DTYPES) before any layout is checked.
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alloc_with;
    use crate::base::Op;

    /// A fill that reports fewer elements than asked for is an error, never a short-written Vec.
    #[test]
    fn alloc_with_refuses_a_short_fill() {
        let short = alloc_with::<f32>(4, Op::Fwd, |d| {
            d[0].write(1.0);
            1
        });
        assert!(short.unwrap_err().to_string().contains("wrote 1 of 4"));
        let full = alloc_with::<f32>(3, Op::Fwd, |d| {
            d.iter_mut().for_each(|x| _ = x.write(2.0));
            d.len()
        });
        assert_eq!(full.unwrap(), [2.0; 3]);
    }
}
