//! Host run of the Metal shader: `kernels/leaky_relu.metal`, unchanged, compiled as C++ with the
//! shim in `tests/metal_host/` (`CXX`, default `c++`), run over the grid `src/metal/plan.rs`
//! computes, in two thread orders, and compared bit for bit with the crate's CPU path on the
//! standard cases of `tests/host`. Deliberately wrong shaders must fail it.
mod common;
mod host;
#[path = "../src/metal/plan.rs"]
mod plan;

use candle_core::DType;
use host::{Case, Harness, Op};

const METAL: Harness = Harness {
    name: "metal_host",
    kernel: "kernels/leaky_relu.metal",
    copy: "leaky_relu.metal",
    args: &[
        "-I",
        "{root}/tests/metal_host/include",
        "-I",
        "{dir}",
        "{root}/tests/metal_host/driver.cpp",
    ],
    dtypes: &[DType::F32, DType::F16, DType::BF16],
    launches,
};

/// `KERNEL GROUPS WIDTH ORDER`: the kernel and grid of `plan`, threads in ascending and in
/// descending order. The threadgroup width varies (a pipeline's max is at most 1024, often
/// less) so that grids are rounded up past the tiles, as candle's linear_split does.
fn launches(i: usize, c: &Case) -> Vec<String> {
    let kind = match c.op {
        Op::Fwd => plan::Kind::Fwd,
        Op::Bwd => plan::Kind::Bwd,
        Op::Inplace => plan::Kind::Inplace,
    };
    let name = plan::kernel_name(kind, c.dtype, !c.contiguous(), "test").unwrap();
    let max = [1024, 32, 7, 256][i % 4];
    let (groups, width) = plan::grid(c.n(), c.dtype.size_in_bytes(), max, "test").unwrap();
    ["up", "down"]
        .map(|o| format!("{name} {groups} {width} {o}"))
        .to_vec()
}

#[test]
fn shader_matches_cpu_bit_for_bit() {
    METAL.check_unchanged();
}

/// Source edits that break the contract, each of which the harness must catch.
const MUTANTS: [(&str, &str, &str); 10] = [
    (">= in forward", "(c > 0.0f ||", "(c >= 0.0f ||"),
    (
        ">= in backward",
        "D::load(x) > 0.0f ?",
        "D::load(x) >= 0.0f ?",
    ),
    (
        "alpha rounded to the dtype (forward)",
        "D::store(c * a)",
        "D::store(c * D::load(D::store(a)))",
    ),
    (
        "alpha rounded to the dtype (backward)",
        "D::load(dy) * a)",
        "D::load(dy) * D::load(D::store(a)))",
    ),
    (
        "reversed stride order",
        "for (ulong d = num_dims; d-- > 0;)",
        "for (ulong d = 0; d < num_dims; d++)",
    ),
    (
        "dim / W instead of div_ceil",
        "div_ceil(dim, W)",
        "(dim / W)",
    ),
    (
        "no guard for threads past the tiles",
        "k < W && tid < step",
        "k < W",
    ),
    (
        "f16 rounding truncates",
        "(ax + 0xFFFu + ((ax >> 13) & 1) - ",
        "(ax - ",
    ),
    (
        "bf16 ties away from zero",
        "(x + 0x7FFFu + ((x >> 16) & 1))",
        "(x + 0x8000u)",
    ),
    (
        "f32 NaN product not canonical",
        "? 0x7FC00000u : u",
        "? u : u",
    ),
];

#[test]
fn wrong_shaders_fail() {
    METAL.check_mutants(&MUTANTS);
}
