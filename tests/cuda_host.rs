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

/// `CONTIGUOUS GRID BLOCK WIDTH` per simulated launch: one thread, one small block, grids much
/// smaller than the work (the grid-stride loops wrap), and one thread per work item (16 bytes
/// when contiguous); small cases also a few more odd grids. Strided cases run every grid through
/// the 32-bit and the 64-bit index entry points; contiguous ones (launched through the 32-bit
/// ones by `src/cuda.rs`) also the 64-bit ones on the last grid.
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
    (g.iter().enumerate())
        .flat_map(|(i, (g, b))| {
            let widths = if contiguous && i < last {
                &[32][..]
            } else {
                &[32, 64]
            };
            (widths.iter()).map(move |w| format!("{} {g} {b} {w}", contiguous as u8))
        })
        .collect()
}

#[test]
fn kernel_source_matches_cpu_path() {
    CUDA.check_unchanged();
}

/// Wrong kernels: (name, exact text in the kernel, replacement).
const MUTANTS: [(&str, &str, &str); 15] = [
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
        "if constexpr (Q == 0)",
        "if constexpr (Q < W<T>)",
    ),
    (
        "element picked one off at the pack seam",
        "k + Q < W<T> ?",
        "k + Q <= W<T> ?",
    ),
    (
        "x's last element offset runs its neighbour's pack loop",
        "M != INPLACE && QX + 1 < W<T>",
        "M != INPLACE && QX + 2 < W<T>",
    ),
    (
        "dy's last element offset runs its neighbour's pack loop",
        "M == BWD && QG + 1 < W<T>",
        "M == BWD && QG + 2 < W<T>",
    ),
    (
        "dy read at x's element offset",
        "load<T, QG>(dy",
        "load<T, QX>(dy",
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
