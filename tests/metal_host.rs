//! Host run of the Metal shader: `kernels/leaky_relu.metal`, unchanged, compiled as C++ with the
//! shim in `tests/metal_host/` (`CXX`, default `c++`), run over the grid `src/metal/plan.rs`
//! computes, in two thread orders, and compared bit for bit with the crate's CPU path on the
//! standard cases of `tests/host`. Deliberately wrong shaders must fail it.
mod common;
mod host;
// The crate's ground floor and the Metal plan that uses it, compiled as they are.
#[allow(dead_code)]
#[path = "../src/base.rs"]
mod base;
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
    let op = match c.op {
        Op::Fwd => base::Op::Fwd,
        Op::Bwd => base::Op::Bwd,
        Op::Inplace => base::Op::Inplace,
    };
    let name = plan::kernel_name(op, c.dtype, !c.contiguous());
    let max = [1024, 32, 7, 256][i % 4];
    let (groups, width) = plan::grid(c.n(), c.dtype.size_in_bytes(), max, op).unwrap();
    ["up", "down"]
        .map(|o| format!("{name} {groups} {width} {o}"))
        .to_vec()
}

#[test]
fn shader_matches_cpu_bit_for_bit() {
    METAL.check_unchanged();
}

/// Source edits that break the contract, each of which the harness must catch. The first five
/// are right under IEEE arithmetic and wrong only where subnormals are flushed, as on the GPU.
const MUTANTS: [(&str, &str, &str); 18] = [
    (
        "x > 0 by a float compare",
        "return c - 1u < 0x7F800000u;",
        "return as_type<float>(c) > 0.0f;",
    ),
    (
        "hardware multiply for every finite product",
        "if (ex - 1u < 254u && ey - 1u < 254u && ex + ey >= 128u) {",
        "if (ex < 255u && ey < 255u) {",
    ),
    (
        "hardware multiply for subnormal operands",
        "ex - 1u < 254u && ey - 1u < 254u && ex",
        "ex < 255u && ey < 255u && ex",
    ),
    (
        "hardware multiply for products that may be subnormal",
        "ex + ey >= 128u",
        "ex + ey >= 1u",
    ),
    (
        "f32 result through a float register",
        "store(uint c) { return c; }",
        "store(uint c) { return as_type<uint>(as_type<float>(c)); }",
    ),
    (
        "exact product truncates",
        "q + (rem > tie ||",
        "q + (false &&",
    ),
    (
        "exact product flushes",
        "return sign | (r < 0x7F800000u",
        "return sign | (r < 0x800000u ? 0 : r < 0x7F800000u",
    ),
    (
        "inf * 0 not NaN in the exact product",
        "return ax == 0 || ay == 0 ? 0x7FC00000u : sign | 0x7F800000u;",
        "return sign | 0x7F800000u;",
    ),
    (
        "alpha rounded to the dtype (forward)",
        "D::store(mul(c, a))",
        "D::store(mul(c, D::load(D::store(a))))",
    ),
    (
        "alpha rounded to the dtype (backward)",
        "mul(D::load(dy), a)",
        "mul(D::load(dy), D::load(D::store(a)))",
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
        "NaN product keeps the operand's payload",
        "        return 0x7FC00000u;\n    }\n    if (ax == 0x7F800000u",
        "        return ax > 0x7F800000u ? x : y;\n    }\n    if (ax == 0x7F800000u",
    ),
    (
        "forward passes x = +0 through (>= 0)",
        "(positive(c) || is_nan(c))",
        "(positive(c) || c == 0 || is_nan(c))",
    ),
    (
        "backward passes dy for x = +0 (>= 0)",
        "positive(D::load(x)) ? dy",
        "(positive(D::load(x)) || D::load(x) == 0) ? dy",
    ),
];

#[test]
fn wrong_shaders_fail() {
    METAL.check_mutants(&MUTANTS);
}
