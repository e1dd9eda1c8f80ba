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
#[allow(dead_code)]
#[path = "../src/index_width.rs"]
mod index_width;
#[path = "../src/metal/plan.rs"]
mod plan;

use candle_core::{DType, Layout};
use host::{Case, Harness, Op};
use index_width::IndexWidth;

const METAL: Harness = Harness {
    name: "metal_host",
    kernel: "kernels/leaky_relu.metal",
    copy: "leaky_relu.metal",
    // The Metal Shading Language is C++14-based: C++17 in the shader fails here too.
    args: &[
        "-std=c++14",
        "-I",
        "{root}/tests/metal_host/include",
        "-I",
        "{dir}",
        "{root}/tests/metal_host/driver.cpp",
    ],
    dtypes: &[DType::F32, DType::F16, DType::BF16],
    launches,
};

/// `KERNEL GROUPS WIDTH ORDER LAYOUTS`: the kernel and grid of `plan`, threads in ascending and
/// in descending order. The threadgroup width varies (a pipeline's max is at most 1024, often
/// less) so that grids are rounded up past the tiles, as candle's linear_split does. Strided
/// cases run the kernel `plan` picks for them (the 32-bit walk: every view here fits), the
/// 64-bit walk on the same views, and the kernel `plan` picks for the same values laid out past
/// 2^32 elements (`host::far_layouts`), which must be the 64-bit walk.
fn launches(i: usize, c: &Case) -> Vec<String> {
    let op = match c.op {
        Op::Fwd => base::Op::Fwd,
        Op::Bwd => base::Op::Bwd,
        Op::Inplace => base::Op::Inplace,
    };
    let pick = |layouts: &[&Layout]| plan::launch_kernel_name(op, c.dtype, layouts, c.n());
    let layouts: Vec<_> = std::iter::once(&c.x)
        .chain(&c.dy)
        .map(|o| &o.layout)
        .collect();
    let mut runs = vec![(pick(&layouts), None)];
    if !c.contiguous() {
        let wide = plan::strided_kernel_name(op, c.dtype, IndexWidth::U64);
        runs.push((wide, None));
        if let Some(far) = host::far_layouts(c) {
            runs.push((pick(&far.iter().collect::<Vec<_>>()), Some(far)));
        }
    }
    let max = [1024, 32, 7, 256][i % 4];
    let (groups, width) = plan::grid(c.n(), c.dtype.size_in_bytes(), max, op).unwrap();
    (runs.iter())
        .flat_map(|(name, far)| {
            let layouts = host::layouts_word(far.as_deref());
            ["up", "down"].map(|o| format!("{name} {groups} {width} {o} {layouts}"))
        })
        .collect()
}

#[test]
fn shader_matches_cpu_bit_for_bit() {
    METAL.check_unchanged();
}

/// Source edits that break the contract, each of which the harness must catch. The first five
/// are right under IEEE arithmetic and wrong only where subnormals are flushed, as on the GPU.
const MUTANTS: [(&str, &str, &str); 23] = [
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
    (
        "backward dy walked with x's strides",
        "og += r * I(dy_strides[d]);",
        "og += r * I(x_strides[d]);",
    ),
    (
        "in place writes the contiguous index",
        "out[M == INPLACE ? o.x : i]",
        "out[i]",
    ),
    (
        "32-bit strided kernels ignore the strides",
        "\"_strided_u32\", leaky_relu_##op, D, true, uint)",
        "\"_strided_u32\", leaky_relu_##op, D, false, uint)",
    ),
    (
        "64-bit strided kernels walk in 32 bits",
        "\"_strided_u64\", leaky_relu_##op, D, true, ulong)",
        "\"_strided_u64\", leaky_relu_##op, D, true, uint)",
    ),
    (
        "64-bit strided kernels ignore the strides",
        "\"_strided_u64\", leaky_relu_##op, D, true, ulong)",
        "\"_strided_u64\", leaky_relu_##op, D, false, ulong)",
    ),
];

#[test]
fn wrong_shaders_fail() {
    METAL.check_mutants(&MUTANTS);
}

/// `plan::grid` at the 32-bit limit of Metal thread ids, with threadgroup widths that are not
/// powers of two (pipelines report such maxima) and some that are: all tiles covered, every
/// thread id below 2^32, the width within the pipeline's max, candle's `linear_split` grid
/// wherever that fits, else the largest power of two within the max; more tiles are refused with
/// an error naming the op, the element count and the limit.
#[test]
fn grid_keeps_thread_ids_below_2_pow_32() {
    let ids = 1u64 << 32;
    for dtype in [DType::F32, DType::F16] {
        let (size, w) = (dtype.size_in_bytes(), 8 / dtype.size_in_bytes());
        for max in [1, 3, 7, 32, 96, 576, 896, 1000, 1023, 1024] {
            let edge = (ids - 1) as usize;
            let at_limit = [
                edge,
                edge - 1,
                edge - max + 1,
                edge - max,
                edge - 2 * max - 5,
            ];
            let sweep = (0..200).map(|k| edge - k * 7919);
            let small = [1, 2, max - 1, max, max + 1, 1 << 31];
            for tiles in at_limit
                .into_iter()
                .chain(sweep)
                .chain(small)
                .filter(|&t| t > 0)
            {
                // n with `tiles` tiles: the last one full or holding one element.
                for n in [tiles * w, tiles * w - (w - 1)] {
                    let (groups, width) = plan::grid(n, size, max, base::Op::Fwd).unwrap();
                    let threads = groups as u64 * width as u64;
                    let at = format!("{dtype:?} max {max} tiles {tiles} n {n}: {groups} x {width}");
                    assert!((1..=max).contains(&width), "{at}");
                    assert!(threads >= tiles as u64 && threads <= ids, "{at}");
                    let split = (tiles.div_ceil(max.min(tiles)), max.min(tiles));
                    if split.0 as u64 * split.1 as u64 <= ids {
                        assert_eq!((groups, width), split, "{at}");
                    } else {
                        assert!(width.is_power_of_two() && width * 2 > max, "{at}");
                    }
                }
            }
        }
    }
    // linear_split would launch 4,294,968 groups of 1000, 2^32 + 671,704 threads.
    let n = (ids as usize - 1) * 2;
    assert_eq!(
        plan::grid(n, 4, 1000, base::Op::Fwd).unwrap(),
        (1 << 23, 512)
    );
    assert_eq!(plan::grid(0, 4, 1000, base::Op::Fwd).unwrap(), (0, 0));
    assert_eq!(plan::grid(5, 4, 0, base::Op::Fwd).unwrap(), (3, 1));
    for (n, size) in [
        (ids as usize * 2 - 1, 4),
        (ids as usize * 4 - 3, 2),
        (usize::MAX, 2),
    ] {
        let e = plan::grid(n, size, 1024, base::Op::Fwd)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("leaky_relu") && e.contains(&n.to_string()) && e.contains("2^32"),
            "{e}"
        );
    }
}
