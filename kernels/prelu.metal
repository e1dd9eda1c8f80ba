// PReLU for candle-leaky-relu: forward (x, w -> y) and backward (x, w, dy -> dx ++ dweight) for
// f32, f16 and bf16 (Metal has no f64), bit for bit as NUMERICS.md says (contract "PReLU" and the
// crate's "PReLU weight gradient: summation order"). The same kernels as kernels/prelu.cu.
//
// - Apple GPUs flush f32 subnormals to zero in arithmetic and comparisons whatever the compile
//   options. As in leaky_relu.metal (whose functions below are copied unchanged: positive, is_nan,
//   split, mul_exact, mul, the f16/bf16 conversions, F32/F16/BF16), values travel as bits: x > 0,
//   NaN and zero are decided on the bits, products with a possibly subnormal operand or result are
//   formed with integers, and results are stored from integer registers. Sums too: `add` uses the
//   hardware addition only where no operand and no result can be subnormal, and otherwise adds
//   copies scaled by 2^64 (exact) and scales the sum back by hand.
// - The element at logical (row-major) index i of x has channel c = (i / inner) % channels and
//   slope C(w[c]), w[c] read through the weight's own layout. info holds x's dims and strides (and
//   dy's strides for backward) when nd > 0, then the weight's dims and strides when wd > 0; nd = 0
//   means x (and dy) are contiguous from the bound offset on, wd = 0 the same of the weight (the
//   host binds a one-element info when both are). Index math is 64-bit (`ulong`); grid-stride
//   loops cover any element count with any grid. src/metal/plan.rs plans the arguments and grids.
// - Backward, first kernel (prelu_bwd_*): a channel's n_c terms t = (x > 0) ? +0 : R_C(C(x)*C(dy))
//   are cut into blocks of 256 (padded with -0.0). Each 16 consecutive threads of a threadgroup
//   take one (channel, block) item per round: thread j sums the block's terms j, j+16, .., j+240
//   left to right, writing dx for each element it reads; simd_shuffle_xor over offsets 1, 2, 4, 8
//   is the pairwise tree over the 16 lanes (thread 0 adds each pair lower + upper). The rounds
//   are counted per threadgroup, so every thread of a SIMD-group runs every shuffle (the host
//   makes threadgroups of whole SIMD-groups of 32). The block sum goes to part[c * m + b], or
//   with `direct` (one block per channel) R_T of it to dweight. A weight of x's shape (one term
//   per channel) is elementwise.
// - Backward, tree passes (prelu_bwd_tree_*): each thread reduces an aligned group of 32 block
//   sums of one channel (padded with -0.0) by the pairwise tree, into the next pass's input, or
//   R_T of it into dweight when one group is left. Aligned power-of-two groups are subtrees of
//   the channel's tree and extra -0.0 padding changes no bit, so the passes give the order's sum.
// - No float atomics; the host compiles this library with fast math off.
#include <metal_stdlib>
using namespace metal;

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

// R_T(s) of a sum s (f32 bits), a NaN giving the canonical NaN (a hardware sum's NaN need not be).
template <typename D>
METAL_FUNC typename D::T narrow(uint s) {
    return D::store(is_nan(s) ? 0x7FC00000u : s);
}

// -0.0 (bits), the padding of the summation order (the exact identity of IEEE addition); terms
// per block, lanes per block (threads per item), block sums per tree group.
enum : uint { NEG_ZERO = 0x80000000u, BLOCK = 256, LANES = 16, GROUP = 32 };

// |x| * 2^64 (bits of x, exponent field below 27, so |x| < 2^-100): exact, and a normal number
// for nonzero x. Subnormals are normalised with integers.
METAL_FUNC uint up64(uint x) {
    const uint sign = x & 0x80000000u, ax = x & 0x7FFFFFFFu;
    if (ax >= 0x800000u) {
        return x + (64u << 23);
    }
    if (ax == 0) {
        return x;
    }
    // m * 2^-149 * 2^64 = m * 2^-85: move the leading one of m to bit 23.
    const uint s = clz(ax) - 8;
    return sign | ((65u - s) << 23) | ((ax << s) & 0x7FFFFFu);
}

// The inverse: bits of v * 2^-64 for a v that is zero or at least 2^-85 in magnitude (a sum of
// up64 values). A result below 2^-126 is subnormal and exact: its significand moved down.
METAL_FUNC uint down64(uint v) {
    const uint sign = v & 0x80000000u, e = (v >> 23) & 0xFFu;
    if (e > 64u) {
        return v - (64u << 23);
    }
    if ((v & 0x7FFFFFFFu) == 0) {
        return v;
    }
    // |v| = 1.f * 2^(e - 127), below 2^-62: |v| * 2^-64 / 2^-149 = 1.f * 2^(e - 42), an integer.
    return sign | (((v & 0x7FFFFFu) | 0x800000u) >> (65u - e));
}

// a + b (f32 bits) as IEEE computes it, rounded to nearest even, subnormal operands and results
// included, on hardware that flushes subnormals. If either |operand| is at least 2^-100 (or
// inf/NaN), the hardware addition is exact IEEE: a subnormal operand (flushed to zero there) is
// below half an ulp of the other operand, even across a binade edge, so it cannot change the
// rounded sum; and a result below 2^-126 is impossible (two operands of at least 2^-101 in
// magnitude have a difference of 0 or of at least 2^-124). If both are below 2^-100, the copies
// scaled by 2^64 are normal, their sum is the exact scaled IEEE sum (a sum below 2^-126 after
// scaling back is a multiple of 2^-149 and exact either way), and it is scaled back by hand.
METAL_FUNC uint add(uint a, uint b) {
    const uint ea = (a >> 23) & 0xFFu, eb = (b >> 23) & 0xFFu;
    if (ea >= 27u || eb >= 27u) {
        return as_type<uint>(as_type<float>(a) + as_type<float>(b));
    }
    return down64(as_type<uint>(as_type<float>(up64(a)) + as_type<float>(up64(b))));
}

// Storage offset of logical element i of a view with nd dims (nd = 0: contiguous, i itself).
METAL_FUNC ulong offset(ulong i, ulong nd, constant size_t *dims, constant size_t *strides) {
    if (nd == 0) {
        return i;
    }
    ulong o = 0;
    for (ulong d = nd; d-- > 0;) {
        o += (i % dims[d]) * strides[d];
        i /= dims[d];
    }
    return o;
}

// The slope of channel c (f32 bits): the weight's c-th element in logical order, widened.
template <typename D>
METAL_FUNC uint slope(ulong c, ulong wd, constant size_t *winfo, device const typename D::T *w) {
    return D::load(w[offset(c, wd, winfo, winfo + wd)]);
}

// The weight-gradient term (f32 bits): +0 where x > 0, else R_C(x * dy).
METAL_FUNC uint term(uint xc, uint gc) {
    return positive(xc) ? 0u : mul(xc, gc);
}

// dx: dy (bits unchanged) where x > 0, else R_T(dy * s).
template <typename D>
METAL_FUNC typename D::T dx_one(uint xc, typename D::T dy, uint s) {
    return positive(xc) ? dy : D::store(mul(D::load(dy), s));
}

// y[i] = prelu(x[i]) over the n elements of x.
template <typename D>
[[kernel]] void prelu_fwd(
    constant size_t &n,
    constant size_t &channels,
    constant size_t &inner,
    constant size_t &nd,
    constant size_t &wd,
    constant size_t *info,
    device const typename D::T *x,
    device const typename D::T *w,
    device typename D::T *y,
    uint tid [[thread_position_in_grid]],
    uint threads [[threads_per_grid]]
) {
    constant size_t *winfo = info + 2 * nd;
    for (ulong i = tid; i < n; i += threads) {
        const ulong c = i / inner % channels;
        const typename D::T xv = x[offset(i, nd, info, info + nd)];
        const uint xc = D::load(xv);
        y[i] = (positive(xc) || is_nan(xc)) ? xv : D::store(mul(xc, slope<D>(c, wd, winfo, w)));
    }
}

// out[0, n) = dx; the block sums of every channel into part[c * m + b] (f32 bits), or with
// `direct` (one block per channel) dweight = R_T(S) into out[n + c]. Threadgroups of a multiple
// of 32 threads.
template <typename D>
[[kernel]] void prelu_bwd(
    constant size_t &n,
    constant size_t &channels,
    constant size_t &inner,
    constant size_t &nd,
    constant size_t &wd,
    constant size_t *info,
    constant uint &direct,
    device const typename D::T *x,
    device const typename D::T *w,
    device const typename D::T *dy,
    device typename D::T *out,
    device uint *part,
    uint tid [[thread_position_in_grid]],
    uint threads [[threads_per_grid]],
    uint lid [[thread_position_in_threadgroup]],
    uint tg [[threadgroup_position_in_grid]],
    uint width [[threads_per_threadgroup]],
    uint groups [[threadgroups_per_grid]]
) {
    constant size_t *winfo = info + 3 * nd;
    const ulong nc = n / channels;  // terms per channel
    if (nc == 1) {
        // A weight of x's shape: channel i is element i alone, S = its term.
        for (ulong i = tid; i < n; i += threads) {
            const typename D::T g = dy[offset(i, nd, info, info + 2 * nd)];
            const uint xc = D::load(x[offset(i, nd, info, info + nd)]);
            out[i] = dx_one<D>(xc, g, slope<D>(i, wd, winfo, w));
            out[n + i] = narrow<D>(term(xc, D::load(g)));
        }
        return;
    }
    const ulong m = (nc + BLOCK - 1) / BLOCK, items = channels * m;
    const ulong per = width / LANES;  // items per threadgroup and round
    const uint j = lid % LANES;
    const ulong ci = channels * inner;
    // The same number of rounds for every thread of the threadgroup: all reach every shuffle.
    for (ulong first = ulong(tg) * per; first < items; first += ulong(groups) * per) {
        const ulong item = first + lid / LANES;
        const bool live = item < items;
        // Channel-minor items: neighbouring lane groups read neighbouring channels.
        const ulong c = live ? item % channels : 0, b = live ? item / channels : 0;
        const uint s = live ? slope<D>(c, wd, winfo, w) : 0u;
        uint lane = NEG_ZERO;
        for (uint k = 0; k < BLOCK / LANES; ++k) {
            const ulong t = b * BLOCK + k * LANES + j;
            uint v = NEG_ZERO;
            if (live && t < nc) {
                // Term t of channel c is x's logical element (t / inner, c, t % inner).
                const ulong i = t / inner * ci + c * inner + t % inner;
                const typename D::T g = dy[offset(i, nd, info, info + 2 * nd)];
                const uint xc = D::load(x[offset(i, nd, info, info + nd)]);
                out[i] = dx_one<D>(xc, g, s);
                v = term(xc, D::load(g));
            }
            lane = k == 0 ? v : add(lane, v);
        }
        for (ushort o = 1; o < LANES; o *= 2) {
            lane = add(lane, simd_shuffle_xor(lane, o));
        }
        if (live && j == 0) {
            if (direct != 0) {
                out[n + c] = narrow<D>(lane);
            } else {
                part[c * m + b] = lane;
            }
        }
    }
}

// One tree pass over `count` sums per channel (in[c * count + q], f32 bits): groups of GROUP
// reduce to sums[c * groups + g], or, when one group is left, R_T(S) into dw[c].
template <typename D>
[[kernel]] void prelu_bwd_tree(
    constant size_t &channels,
    constant size_t &count,
    device const uint *in,
    device uint *sums,
    device typename D::T *dw,
    uint tid [[thread_position_in_grid]],
    uint threads [[threads_per_grid]]
) {
    const ulong groups = (count + GROUP - 1) / GROUP;
    for (ulong g = tid; g < channels * groups; g += threads) {
        const ulong c = g / groups, q = g % groups;
        const ulong rest = count - q * GROUP, avail = rest < ulong(GROUP) ? rest : ulong(GROUP);
        device const uint *p = in + c * count + q * GROUP;
        uint v[GROUP];
        for (uint k = 0; k < GROUP; ++k) {
            v[k] = k < avail ? p[k] : NEG_ZERO;
        }
        // The pairwise tree, level by level: element 2k plus element 2k + 1.
        for (uint pairs = GROUP / 2; pairs > 0; pairs /= 2) {
            for (uint k = 0; k < pairs; ++k) {
                v[k] = add(v[2 * k], v[2 * k + 1]);
            }
        }
        if (groups == 1) {
            dw[c] = narrow<D>(v[0]);
        } else {
            sums[c * groups + q] = v[0];
        }
    }
}

// Exported names: prelu_fwd_{f32,f16,bf16}, prelu_bwd_{..}, prelu_bwd_tree_{..}. A host harness
// may define PRELU_EXPORT itself to collect the instantiations.
#ifndef PRELU_EXPORT
#define PRELU_EXPORT(name, func, ...) \
    template [[host_name(name)]] [[kernel]] decltype(func<__VA_ARGS__>) func<__VA_ARGS__>;
#endif

#define PRELU_DTYPE(tname, D)                                  \
    PRELU_EXPORT("prelu_fwd_" #tname, prelu_fwd, D)            \
    PRELU_EXPORT("prelu_bwd_" #tname, prelu_bwd, D)            \
    PRELU_EXPORT("prelu_bwd_tree_" #tname, prelu_bwd_tree, D)

PRELU_DTYPE(f32, F32)
PRELU_DTYPE(f16, F16)
PRELU_DTYPE(bf16, BF16)
