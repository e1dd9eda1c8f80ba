// LeakyReLU for candle-leaky-relu: forward, backward (x, dy -> dx) and in-place forward for f32,
// f16 and bf16, contiguous and strided, bit for bit as NUMERICS.md says.
//
// - Apple GPUs flush f32 subnormals to zero in arithmetic and comparisons whatever the compile
//   options, and a subnormal held in a float register can come back as a zero. So values travel
//   as bits (uint / ushort) from load to store: elements are stored and passed through raw
//   (x > 0 in forward and backward, NaN in forward), x > 0, NaN and zero are decided on the bits,
//   and a product whose operands or result may be subnormal is formed with integers (`mul`).
//   The slope arrives as its f32 bits (`constant uint &a`).
// - f16 and bf16 are widened to f32 and narrowed back by hand with round-to-nearest-even, so the
//   result does not depend on the GPU's (undocumented) conversion rounding or `bfloat` support.
// - A NaN product becomes the dtype's canonical NaN.
// - Strided kernels walk the layout with 32-bit index arithmetic (`_strided_u32`) where the host
//   found that it fits, else 64-bit (`_strided_u64`); the host compiles this library with fast
//   math off.
// - Tiling as in candle's unary.metal: thread `tid` handles the W elements tid + k * step,
//   step = div_ceil(dim, W); threads past `step` (the grid is rounded up to whole threadgroups)
//   return, so every element is written exactly once (needed in place).
// - The layout's start offset is applied when the buffer is bound (a byte offset).
#include <metal_stdlib>
using namespace metal;

// x > 0 from the f32 bits: +inf and positive subnormals included, NaN excluded.
METAL_FUNC bool positive(uint c) {
    return c - 1u < 0x7F800000u;
}

METAL_FUNC bool is_nan(uint c) {
    return (c & 0x7FFFFFFFu) > 0x7F800000u;
}

// A finite nonzero |x| (bits ax) as m * 2^(e - 150), m in [2^23, 2^24): subnormals normalised.
struct Split {
    uint m;
    int e;
};
METAL_FUNC Split split(uint ax) {
    if (ax >= 0x800000u) {
        return Split{(ax & 0x7FFFFFu) | 0x800000u, int(ax >> 23)};
    }
    const uint s = clz(ax) - 8;  // move the leading one of a subnormal to bit 23
    return Split{ax << s, 1 - int(s)};
}

// The IEEE f32 product x * y (bits), rounded to nearest even, subnormal results included, the
// canonical NaN for NaN operands and inf * 0, without any subnormal float arithmetic.
METAL_FUNC uint mul_exact(uint x, uint y) {
    const uint sign = (x ^ y) & 0x80000000u, ax = x & 0x7FFFFFFFu, ay = y & 0x7FFFFFFFu;
    if (ax > 0x7F800000u || ay > 0x7F800000u) {
        return 0x7FC00000u;
    }
    if (ax == 0x7F800000u || ay == 0x7F800000u) {
        return ax == 0 || ay == 0 ? 0x7FC00000u : sign | 0x7F800000u;
    }
    if (ax == 0 || ay == 0) {
        return sign;
    }
    const Split a = split(ax), b = split(ay);
    const ulong p = ulong(a.m) * ulong(b.m);  // in [2^46, 2^48): |x * y| = p * 2^e
    const int e = a.e + b.e - 300;
    // Biased exponent minus one of the result, 0 if subnormal; then the bits of p dropped to
    // reach 24 significant bits (normal) or the quantum 2^-149 (subnormal): at least 23.
    const int top = e + 46 + int(p >> 47) + 126;
    const int base = top > 0 ? top : 0;
    const int shift = base - e - 149;
    if (shift > 48) {  // below half of 2^-149
        return sign;
    }
    const ulong q = p >> shift, rem = p & ((1ul << shift) - 1), tie = 1ul << (shift - 1);
    // A normal q has its leading one at bit 23, which adds one to `base`; a rounding carry goes
    // on into the exponent field, up to inf. A subnormal q (base 0) is the result's bits.
    const uint r = (uint(base) << 23) + uint(q + (rem > tie || (rem == tie && (q & 1))));
    return sign | (r < 0x7F800000u ? r : 0x7F800000u);
}

// x * y (f32 bits) as IEEE computes it, NaN canonical. The hardware multiply only when both
// operands are normal and their exponent fields sum to 128 or more: the exact product is then at
// least 2^-126, so no flush applies however the hardware detects tininess, and the result
// (overflow to inf included) is IEEE's. Fields summing to 127 give exact products in
// [2^-127, 2^-125), some below 2^-126 that round up to it: those take the integer path too.
METAL_FUNC uint mul(uint x, uint y) {
    const uint ex = (x >> 23) & 0xFF, ey = (y >> 23) & 0xFF;
    if (ex - 1u < 254u && ey - 1u < 254u && ex + ey >= 128u) {
        return as_type<uint>(as_type<float>(x) * as_type<float>(y));
    }
    return mul_exact(x, y);
}

METAL_FUNC uint f16_to_f32(ushort h) {
    const uint sign = uint(h & 0x8000) << 16;
    const uint em = h & 0x7FFF;
    if (em >= 0x7C00) {  // inf, NaN
        return sign | 0x7F800000u | ((em & 0x3FF) << 13);
    }
    if (em >= 0x0400) {  // normal: rebias the exponent from 15 to 127
        return sign | ((em + 0x1C000u) << 13);
    }
    if (em == 0) {
        return sign;
    }
    // subnormal em * 2^-24: a normal f32, the leading one moved to bit 10 and dropped
    const uint s = clz(em) - 21;
    return sign | ((113 - s) << 23) | (((em << s) & 0x3FF) << 13);
}

METAL_FUNC ushort f32_to_f16(uint x) {
    const uint sign = (x >> 16) & 0x8000;
    const uint ax = x & 0x7FFFFFFF;
    if (ax > 0x7F800000u) {  // NaN: canonical
        return 0x7E00;
    }
    if (ax >= 0x477FF000u) {  // |f| >= 65520 (max f16 + half an ulp) rounds to inf
        return ushort(sign | 0x7C00);
    }
    if (ax >= 0x38800000u) {  // normal f16: round the 13 dropped bits to nearest even, rebias
        return ushort(sign | ((ax + 0xFFFu + ((ax >> 13) & 1) - 0x38000000u) >> 13));
    }
    if (ax < 0x33000000u) {  // |f| < 2^-25 rounds to zero (2^-25 itself ties to even zero)
        return ushort(sign);
    }
    // subnormal f16: round |f| / 2^-24 = m >> shift to nearest even
    const uint m = (ax & 0x7FFFFF) | 0x800000;
    const uint shift = 126 - (ax >> 23);
    const uint rem = m & ((1u << shift) - 1);
    const uint tie = 1u << (shift - 1);
    const uint q = m >> shift;
    return ushort(sign | (q + ((rem > tie || (rem == tie && (q & 1))) ? 1 : 0)));
}

METAL_FUNC uint bf16_to_f32(ushort h) {
    return uint(h) << 16;
}

METAL_FUNC ushort f32_to_bf16(uint x) {
    if ((x & 0x7FFFFFFF) > 0x7F800000u) {  // NaN: canonical
        return 0x7FC0;
    }
    return ushort((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

// Storage type T (raw bits), widening to the f32 compute type's bits and RNE narrowing with a
// canonical NaN.
struct F32 {
    typedef uint T;
    static METAL_FUNC uint load(uint x) { return x; }
    static METAL_FUNC uint store(uint c) { return c; }  // a NaN from `mul` is canonical
};
struct F16 {
    typedef ushort T;
    static METAL_FUNC uint load(ushort x) { return f16_to_f32(x); }
    static METAL_FUNC ushort store(uint c) { return f32_to_f16(c); }
};
struct BF16 {
    typedef ushort T;
    static METAL_FUNC uint load(ushort x) { return bf16_to_f32(x); }
    static METAL_FUNC ushort store(uint c) { return f32_to_bf16(c); }
};

// `a`: the slope's f32 bits.
template <typename D>
METAL_FUNC typename D::T leaky_relu(typename D::T x, uint a) {
    const uint c = D::load(x);
    return (positive(c) || is_nan(c)) ? x : D::store(mul(c, a));
}

template <typename D>
METAL_FUNC typename D::T leaky_relu_grad(typename D::T x, typename D::T dy, uint a) {
    return positive(D::load(x)) ? dy : D::store(mul(D::load(dy), a));
}

// The three operations, mirroring the Rust enum `crate::base::Op` (one enum here too; the kernel
// families that LEAKY_RELU_DTYPE exports are named after its values: fwd, bwd, inplace).
enum Mode { FWD, BWD, INPLACE };

// Storage offsets of one element in x and (backward) dy.
struct Offsets {
    ulong x, dy;
};

// The offsets of logical (row-major) element i of `dims` through x's and (backward) dy's strides,
// from one division per dimension in I: uint where the host found that the element count and
// every offset of the walk fit in 32 bits (64-bit division is emulated on Apple GPUs), else ulong.
template <Mode M, typename I>
METAL_FUNC Offsets strided_offsets(
    ulong i,
    constant size_t &num_dims,
    constant size_t *dims,
    constant size_t *x_strides,
    constant size_t *dy_strides
) {
    I rest = I(i), ox = 0, og = 0;
    for (ulong d = num_dims; d-- > 0;) {
        const I dim = I(dims[d]), r = rest % dim;
        rest /= dim;
        ox += r * I(x_strides[d]);
        if (M == BWD) {
            og += r * I(dy_strides[d]);
        }
    }
    return Offsets{ox, og};
}

METAL_FUNC ulong div_ceil(ulong x, ulong y) {
    return x / y + (x % y > 0);
}

template <typename T>
constexpr uint work_per_thread() {
    return 8 / sizeof(T) > 0 ? 8 / sizeof(T) : 1;
}

// out[j] = op(x[ox], dy[og]) for the W elements i of thread tid: j = i (fwd, bwd: out is
// contiguous) or ox (in place: out is x, and the op refuses views whose elements overlap, so each
// element is written once); S: strided (offsets from the walk above) or contiguous (offsets = i;
// dims and strides unused). dy is read in backward only.
template <Mode M, typename D, typename I, bool S, uint W = work_per_thread<typename D::T>()>
METAL_FUNC void map(
    constant size_t &dim,
    constant size_t &num_dims,
    constant size_t *dims,
    constant size_t *x_strides,
    constant size_t *dy_strides,
    uint a,
    device const typename D::T *x,
    device const typename D::T *dy,
    device typename D::T *out,
    uint tid
) {
    const ulong step = div_ceil(dim, W);
    for (uint k = 0; k < W && tid < step; k++) {
        const ulong i = tid + k * step;
        if (i >= dim) return;
        const Offsets o = S ? strided_offsets<M, I>(i, num_dims, dims, x_strides, dy_strides) : Offsets{i, i};
        out[M == INPLACE ? o.x : i] = M == BWD ? leaky_relu_grad<D>(x[o.x], dy[o.dy], a) : leaky_relu<D>(x[o.x], a);
    }
}

// y = leaky_relu(x), y contiguous.
template <typename D, bool S, typename I>
[[kernel]] void leaky_relu_fwd(
    constant size_t &dim,
    constant size_t &num_dims,
    constant size_t *dims,
    constant size_t *strides,
    constant uint &a,
    device const typename D::T *x,
    device typename D::T *y,
    uint tid [[thread_position_in_grid]]
) {
    map<FWD, D, I, S>(dim, num_dims, dims, strides, strides, a, x, x, y, tid);
}

// dx = leaky_relu_grad(x, dy), dx contiguous.
template <typename D, bool S, typename I>
[[kernel]] void leaky_relu_bwd(
    constant size_t &dim,
    constant size_t &num_dims,
    constant size_t *dims,
    constant size_t *x_strides,
    constant size_t *dy_strides,
    constant uint &a,
    device const typename D::T *x,
    device const typename D::T *dy,
    device typename D::T *dx,
    uint tid [[thread_position_in_grid]]
) {
    map<BWD, D, I, S>(dim, num_dims, dims, x_strides, dy_strides, a, x, dy, dx, tid);
}

// x = leaky_relu(x) through x's layout.
template <typename D, bool S, typename I>
[[kernel]] void leaky_relu_inplace(
    constant size_t &dim,
    constant size_t &num_dims,
    constant size_t *dims,
    constant size_t *strides,
    constant uint &a,
    device typename D::T *x,
    uint tid [[thread_position_in_grid]]
) {
    map<INPLACE, D, I, S>(dim, num_dims, dims, strides, strides, a, x, x, x, tid);
}

// Exported names, per operation and dtype: leaky_relu_{fwd,bwd,inplace}_{f32,f16,bf16} for
// contiguous operands, and ..._strided_u32 / ..._strided_u64 for strided ones, walked with 32-bit
// or 64-bit index arithmetic (src/metal/plan.rs picks one). A host harness may define
// LEAKY_RELU_EXPORT itself to collect the instantiations.
#ifndef LEAKY_RELU_EXPORT
#define LEAKY_RELU_EXPORT(name, func, ...) \
    template [[host_name(name)]] [[kernel]] decltype(func<__VA_ARGS__>) func<__VA_ARGS__>;
#endif

#define LEAKY_RELU_KERNELS(op, tname, D)                                                                  \
    LEAKY_RELU_EXPORT("leaky_relu_" #op "_" #tname, leaky_relu_##op, D, false, ulong)                  \
    LEAKY_RELU_EXPORT("leaky_relu_" #op "_" #tname "_strided_u32", leaky_relu_##op, D, true, uint)     \
    LEAKY_RELU_EXPORT("leaky_relu_" #op "_" #tname "_strided_u64", leaky_relu_##op, D, true, ulong)

#define LEAKY_RELU_DTYPE(tname, D)       \
    LEAKY_RELU_KERNELS(fwd, tname, D)    \
    LEAKY_RELU_KERNELS(bwd, tname, D)    \
    LEAKY_RELU_KERNELS(inplace, tname, D)

LEAKY_RELU_DTYPE(f32, F32)
LEAKY_RELU_DTYPE(f16, F16)
LEAKY_RELU_DTYPE(bf16, BF16)
