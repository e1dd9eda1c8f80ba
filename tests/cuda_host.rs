//! Runs the CUDA kernel source on the host: `kernels/leaky_relu.cu` is compiled unchanged as C++
//! (`CXX`, default `c++`) with `tests/cuda_host/shim.h` (CUDA's names, conversions that round to
//! nearest even), and `tests/cuda_host/driver.cpp` calls every entry point once per simulated
//! thread over several grids (one thread, grids much smaller than the work so the grid-stride
//! loops wrap, one thread per item). The results must equal the CPU path's bits on every case of
//! `tests/host`, and deliberately wrong copies of the kernel must fail. The driver is built with
//! AddressSanitizer and poisons every byte outside the elements of each view, so a kernel that
//! reads or writes past a view fails too, even where the bits it returns are right; a misaligned
//! vector access (a fault on the GPU) stops it through UBSan's alignment check.
mod common;
mod host;

use common::DTYPES;
use host::{Case, Harness};

const CUDA: Harness = Harness {
    name: "cuda_host",
    kernel: "kernels/leaky_relu.cu",
    copy: "leaky_relu.cu",
    args: &[
        "-fsanitize=address,alignment",
        "-fno-sanitize-recover=alignment",
        "-I",
        "{root}/tests/cuda_host",
        "-x",
        "c++",
        "{dir}/leaky_relu.cu",
        "{root}/tests/cuda_host/driver.cpp",
    ],
    dtypes: &DTYPES,
    launches,
};

/// `CONTIGUOUS GRID BLOCK WIDTH LAYOUTS` per simulated launch: one thread, one small block,
/// grids much smaller than the work (the grid-stride loops wrap), and one thread per work item
/// (16 bytes when contiguous); small cases also a few more odd grids. Strided cases run every
/// grid through the 32-bit and the 64-bit index entry points, and the 64-bit ones again on the
/// same values laid out past 2^32 elements (`host::far_layouts`); contiguous ones (launched
/// through the 32-bit ones by `src/cuda.rs`) also the 64-bit ones on the last grid.
fn launches(_: usize, c: &Case) -> Vec<String> {
    let contiguous = c.contiguous();
    let per = if contiguous {
        16 / c.dtype.size_in_bytes()
    } else {
        1
    };
    let work = c.n().div_ceil(per).max(1);
    let mut g = vec![(1, 1), (3, 64), (work.div_ceil(128), 128)];
    if c.n() <= 4096 {
        g.extend([(1, 32), (2, 96), (5, 256)]);
    }
    let last = g.len() - 1;
    let mut lines: Vec<String> = (g.iter().enumerate())
        .flat_map(|(i, (g, b))| {
            let widths = if contiguous && i < last {
                &[32][..]
            } else {
                &[32, 64]
            };
            (widths.iter()).map(move |w| format!("{} {g} {b} {w} near", contiguous as u8))
        })
        .collect();
    if let Some(far) = host::far_layouts(c).filter(|_| !contiguous) {
        let (g, b) = g[last];
        lines.push(format!("0 {g} {b} 64 {}", host::layouts_word(Some(&far))));
    }
    lines
}

#[test]
fn kernel_source_matches_cpu_path() {
    CUDA.check_unchanged();
}

/// Wrong kernels: (name, exact text in the kernel, replacement).
const MUTANTS: [(&str, &str, &str); 19] = [
    (
        "backward gradient at 0 is dy (>= for >)",
        "E<T>::up(x) > 0 ? dy",
        "E<T>::up(x) >= 0 ? dy",
    ),
    (
        "forward zero passes through (< for <=)",
        "v <= 0 ? scaled",
        "v < 0 ? scaled",
    ),
    (
        "NaN products not canonical",
        "p != p ? E<T>::nan() : E<T>::down(p)",
        "E<T>::down(p)",
    ),
    (
        "alpha rounded to the dtype",
        "p = v * a;",
        "p = v * E<T>::up(E<T>::down(a));",
    ),
    (
        "strides applied innermost-first",
        "for (size_t d = nd; d-- > 0;)",
        "for (size_t d = 0; d < nd; ++d)",
    ),
    (
        "backward dy walked with x's strides",
        "og += r * (I)info[2 * nd + d]",
        "og += r * (I)info[nd + d]",
    ),
    (
        "last vector overruns the output",
        "(n - head - slack) / w",
        "(n - head - slack + w - 1) / w",
    ),
    (
        "misaligned loads pass the view's end",
        "(n - head - slack) / w",
        "(n - head) / w",
    ),
    (
        "misaligned loads start before the view",
        "p0 = slack ? 1 : 0",
        "p0 = 0",
    ),
    (
        "misaligned input read as one vector",
        "if constexpr (!MISALIGNED)",
        "if constexpr (true)",
    ),
    (
        "misaligned x read as aligned",
        "if (M == INPLACE || qx == 0)",
        "if (true)",
    ),
    (
        "misaligned dy read as aligned",
        "if (M == BWD && qg != 0) packs<M, T, false, true>",
        "if (false) packs<M, T, false, true>",
    ),
    (
        "dy shifted as x",
        "load<T, MG>(dy + p * W<T>, hg)",
        "load<T, MG>(dy + p * W<T>, hx)",
    ),
    (
        "shift by two words ignored",
        "u[k] = s.two ? w[k + 2] : w[k];",
        "u[k] = w[k];",
    ),
    (
        "shift by one word ignored",
        "v[k] = s.one ? u[k + 1] : u[k];",
        "v[k] = u[k];",
    ),
    (
        "shift by half a word ignored",
        "(bytes & 3) * 8",
        "(bytes & 3) * 0",
    ),
    (
        "funnel shift from the wrong word",
        "(uint64_t)v[k + 1] << 32",
        "(uint64_t)v[k] << 32",
    ),
    (
        "64-bit entry points walk in 32 bits",
        "SUFFIX##_u64, uint64_t)",
        "SUFFIX##_u64, uint32_t)",
    ),
    (
        "contiguous walk of the _u64 entry points reads dy's first element",
        "I ox = (I)i, og = (I)i;",
        "I ox = (I)i, og = 0;",
    ),
];

#[test]
fn mutated_kernels_fail() {
    CUDA.check_mutants(&MUTANTS);
}
