//! Runs the CUDA kernel source on the host: `kernels/leaky_relu.cu` is compiled unchanged as C++
//! (`CXX`, default `c++`) with `tests/cuda_host/shim.h` (CUDA's names, conversions that round to
//! nearest even), and `tests/cuda_host/driver.cpp` calls every entry point once per simulated
//! thread over several grids (one thread, grids much smaller than the work so the grid-stride
//! loops wrap, one thread per item). The results must equal the CPU path's bits on every case of
//! `tests/host`, and deliberately wrong copies of the kernel must fail.
mod common;
mod host;

use common::DTYPES;
use host::{Case, Harness};

const CUDA: Harness = Harness {
    name: "cuda_host",
    kernel: "kernels/leaky_relu.cu",
    copy: "leaky_relu.cu",
    args: &[
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

/// `CONTIGUOUS GRID BLOCK` per simulated launch: one thread, one small block, grids much
/// smaller than the work (the grid-stride loops wrap), and one thread per work item (16 bytes
/// when contiguous); small cases also a few more odd grids.
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
    g.iter()
        .map(|(g, b)| format!("{} {g} {b}", contiguous as u8))
        .collect()
}

#[test]
fn kernel_source_matches_cpu_path() {
    CUDA.check_unchanged();
}

/// Wrong kernels: (name, exact text in the kernel, replacement).
const MUTANTS: [(&str, &str, &str); 6] = [
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
        "last vector overruns the view",
        "(n - head) / W",
        "(n - head + W - 1) / W",
    ),
];

#[test]
fn mutated_kernels_fail() {
    CUDA.check_mutants(&MUTANTS);
}
