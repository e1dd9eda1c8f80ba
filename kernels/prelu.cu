// PReLU for candle-leaky-relu: forward (x, w -> y) and backward (x, w, dy -> dx ++ dweight) for
// f32, f64, f16 and bf16, bit for bit as NUMERICS.md says (contract "PReLU" and the crate's
// "PReLU weight gradient: summation order").
//
// - The element at logical (row-major) index i of x has channel c = (i / inner) % channels and
//   slope s = C(w[c]), w[c] read through the weight's own layout (its c-th element in logical
//   order). src/cuda/prelu/plan.rs computes channels and inner (base::check_prelu) and the
//   arguments below.
// - info: x's dims and strides (++ dy's strides for backward) when nd > 0, then the weight's dims
//   and strides when wd > 0; nd = 0 means x (and dy) are contiguous from the pointer on, wd = 0
//   the same of the weight. The _u32 entry points do the index arithmetic in 32 bits (the host
//   picks them when every index and offset fits), the _u64 ones in 64 bits. Grid-stride loops
//   with 64-bit counters: any grid, any element count.
// - Backward, first kernel (prelu_bwd_*): a channel's n_c terms t = (x > 0) ? +0 : R_C(C(x)*C(dy))
//   are cut into blocks of 256 (padded with -0.0). One half-warp (16 threads) takes one (channel,
//   block) item at a time: thread j sums the block's terms j, j+16, .., j+240 left to right, in
//   registers, writing dx for each element it reads; an xor-shuffle over offsets 1, 2, 4, 8 is
//   the pairwise tree over the 16 lanes (thread 0 adds each pair lower + upper). The block sum
//   goes to part[c * m + b], or, with one block per channel (part == nullptr), R_T of it straight
//   to dweight. A weight of x's shape (one term per channel) is elementwise.
// - Backward, tree passes (prelu_bwd_tree_*): each thread reduces an aligned group of 32 block
//   sums of one channel (padded with -0.0) by the pairwise tree, into the next pass's input, or
//   R_T of it into dweight when one group is left. Aligned power-of-two groups are subtrees of
//   the channel's tree, and extra -0.0 padding changes no bit, so the passes give the order's sum.
// - No float atomics, no fused multiply-add (build.rs passes -fmad=false); f16/bf16 compute in
//   f32 with explicit conversions (round to nearest even); a NaN result becomes the canonical NaN.
//
// The file also compiles unchanged with g++ and the host shim (tests/prelu_host.rs, which runs
// the half-warps as cooperating threads): keep to plain C++17 and the CUDA names the shim defines.
#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace prelu {

// Per dtype: the compute type C (also the type of slopes and sums), exact widening, rounding
// narrowing and the canonical NaN of the contract.
template <typename T> struct E;
template <> struct E<float> {
    typedef float C;
    static __device__ __forceinline__ C up(float x) { return x; }
    static __device__ __forceinline__ float down(C p) { return p; }
    static __device__ __forceinline__ float nan() { return __int_as_float(0x7fc00000); }
};
template <> struct E<double> {
    typedef double C;
    static __device__ __forceinline__ C up(double x) { return x; }
    static __device__ __forceinline__ double down(C p) { return p; }
    static __device__ __forceinline__ double nan() { return __longlong_as_double(0x7ff8000000000000LL); }
};
template <> struct E<__half> {
    typedef float C;
    static __device__ __forceinline__ C up(__half x) { return __half2float(x); }
    static __device__ __forceinline__ __half down(C p) { return __float2half_rn(p); }
    static __device__ __forceinline__ __half nan() { return __ushort_as_half(0x7e00); }
};
template <> struct E<__nv_bfloat16> {
    typedef float C;
    static __device__ __forceinline__ C up(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ __nv_bfloat16 down(C p) { return __float2bfloat16_rn(p); }
    static __device__ __forceinline__ __nv_bfloat16 nan() { return __ushort_as_bfloat16(0x7fc0); }
};

// Terms per block, lanes per block (threads per item), block sums per tree group.
constexpr unsigned BLOCK = 256, LANES = 16, GROUP = 32;

// R_T(v), a NaN giving the canonical NaN.
template <typename T>
__device__ __forceinline__ T narrow(const typename E<T>::C v) {
    return v != v ? E<T>::nan() : E<T>::down(v);
}

// Forward: x (bits unchanged) where x > 0 or NaN, else R_T(x * s).
template <typename T>
__device__ __forceinline__ T fwd_one(const T x, const typename E<T>::C s) {
    const typename E<T>::C v = E<T>::up(x);
    return v <= 0 ? narrow<T>(v * s) : x;
}

// dx: dy (bits unchanged) where x > 0, else R_T(dy * s).
template <typename T>
__device__ __forceinline__ T dx_one(const typename E<T>::C xv, const T dy, const typename E<T>::C s) {
    return xv > 0 ? dy : narrow<T>(E<T>::up(dy) * s);
}

// The weight-gradient term: +0 where x > 0, else R_C(x * dy) (one rounding, never fused).
template <typename C>
__device__ __forceinline__ C term(const C xv, const C gv) {
    return xv > 0 ? (C)0 : xv * gv;
}

// Storage offset of logical element i of a view with nd dims (nd = 0: contiguous, i itself).
template <typename I>
__device__ __forceinline__ I offset(I i, const size_t nd, const size_t* dims, const size_t* strides) {
    if (nd == 0) return i;
    I o = 0;
    for (size_t d = nd; d-- > 0;) {
        const I dim = (I)dims[d];
        o += i % dim * (I)strides[d];
        i /= dim;
    }
    return o;
}

// Offsets of logical element i in x and dy (strides info + nd and info + 2 * nd), one division
// per dim for both.
template <typename I>
__device__ __forceinline__ void offsets2(I i, const size_t nd, const size_t* info, I& ox, I& og) {
    if (nd == 0) {
        ox = og = i;
        return;
    }
    ox = og = 0;
    for (size_t d = nd; d-- > 0;) {
        const I dim = (I)info[d], r = i % dim;
        i /= dim;
        ox += r * (I)info[nd + d];
        og += r * (I)info[2 * nd + d];
    }
}

// The slope of channel c: the weight's c-th element in logical order, widened.
template <typename I, typename T>
__device__ __forceinline__ typename E<T>::C slope(const size_t c, const size_t wd, const size_t* winfo, const T* w) {
    return E<T>::up(w[offset<I>((I)c, wd, winfo, winfo + wd)]);
}

// y[i] = prelu(x[i]) over the n elements of x.
template <typename I, typename T>
__device__ void fwd(const size_t n, const size_t channels, const size_t inner, const size_t nd, const size_t wd,
                    const size_t* info, const T* x, const T* w, T* y) {
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    const size_t* winfo = info + 2 * nd;
    for (size_t i = first; i < n; i += step) {
        const size_t c = (size_t)((I)i / (I)inner % (I)channels);
        y[i] = fwd_one(x[offset<I>((I)i, nd, info, info + nd)], slope<I>(c, wd, winfo, w));
    }
}

// The pairwise tree over the N values p[A], .., p[A + N - 1] (N a power of two), those at or past
// `avail` being -0.0 (never read): level by level, element 2i plus element 2i + 1.
template <unsigned N, unsigned A, typename C>
__device__ __forceinline__ C pairs(const C* p, const size_t avail) {
    if constexpr (N == 1) {
        return A < avail ? p[A] : (C)-0.0;
    } else {
        return pairs<N / 2, A>(p, avail) + pairs<N / 2, A + N / 2>(p, avail);
    }
}

// out[0, n) = dx; the block sums of every channel into part[c * m + b], or, with part == nullptr
// (one block per channel), dweight = R_T(S) into out[n + c]. blockDim is a multiple of 16.
template <typename I, typename T>
__device__ void bwd(const size_t n, const size_t channels, const size_t inner, const size_t nd, const size_t wd,
                    const size_t* info, const T* x, const T* w, const T* dy, T* out,
                    typename E<T>::C* part) {
    typedef typename E<T>::C C;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    const size_t* winfo = info + 3 * nd;
    const size_t nc = n / channels;  // terms per channel
    if (nc == 1) {
        // A weight of x's shape: channel i is element i alone, S = its term.
        for (size_t i = first; i < n; i += step) {
            I ox, og;
            offsets2<I>((I)i, nd, info, ox, og);
            const C xv = E<T>::up(x[ox]);
            out[i] = dx_one(xv, dy[og], slope<I>(i, wd, winfo, w));
            out[n + i] = narrow<T>(term(xv, E<T>::up(dy[og])));
        }
        return;
    }
    const size_t m = (nc + BLOCK - 1) / BLOCK, items = channels * m;
    const unsigned j = threadIdx.x % LANES;
    const unsigned half = 0xFFFFu << (threadIdx.x & 16);  // the 16 threads of this half-warp
    const I ci = (I)channels * (I)inner;
    for (size_t item = first / LANES; item < items; item += step / LANES) {
        // Channel-minor items: neighbouring half-warps read neighbouring channels.
        const size_t c = item % channels, b = item / channels;
        const C s = slope<I>(c, wd, winfo, w);
        C lane = 0;
        for (unsigned k = 0; k < BLOCK / LANES; ++k) {
            const size_t t = b * BLOCK + k * LANES + j;
            C v = (C)-0.0;
            if (t < nc) {
                // Term t of channel c is x's logical element (t / inner, c, t % inner).
                const I i = (I)t / (I)inner * ci + (I)c * (I)inner + (I)t % (I)inner;
                I ox, og;
                offsets2<I>(i, nd, info, ox, og);
                const C xv = E<T>::up(x[ox]);
                const T g = dy[og];
                out[i] = dx_one(xv, g, s);
                v = term(xv, E<T>::up(g));
            }
            lane = k == 0 ? v : lane + v;
        }
        for (unsigned o = 1; o < LANES; o *= 2) lane = lane + __shfl_xor_sync(half, lane, o, LANES);
        if (j == 0) {
            if (part != nullptr) {
                part[c * m + b] = lane;
            } else {
                out[n + c] = narrow<T>(lane);
            }
        }
    }
}

// One tree pass over `count` sums per channel (in[c * count + q]): groups of GROUP reduce to
// sums[c * groups + g], or, when one group is left, R_T(S) into dw[c].
template <typename T>
__device__ void tree(const size_t channels, const size_t count, const typename E<T>::C* in,
                     typename E<T>::C* sums, T* dw) {
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    const size_t groups = (count + GROUP - 1) / GROUP;
    for (size_t g = first; g < channels * groups; g += step) {
        const size_t c = g / groups, q = g % groups;
        const size_t avail = count - q * GROUP < GROUP ? count - q * GROUP : GROUP;
        const typename E<T>::C s = pairs<GROUP, 0>(in + c * count + q * GROUP, avail);
        if (groups == 1) {
            dw[c] = narrow<T>(s);
        } else {
            sums[c * groups + q] = s;
        }
    }
}

}  // namespace prelu

#define PRELU_OPS(T, SUFFIX, I)                                                                                 \
    extern "C" __global__ void prelu_fwd_##SUFFIX(const size_t n, const size_t channels, const size_t inner,    \
                                                  const size_t nd, const size_t wd, const size_t* info,         \
                                                  const T* x, const T* w, T* y) {                               \
        prelu::fwd<I, T>(n, channels, inner, nd, wd, info, x, w, y);                                            \
    }                                                                                                           \
    extern "C" __global__ void prelu_bwd_##SUFFIX(const size_t n, const size_t channels, const size_t inner,    \
                                                  const size_t nd, const size_t wd, const size_t* info,         \
                                                  const T* x, const T* w, const T* dy, T* out,                  \
                                                  prelu::E<T>::C* part) {                                       \
        prelu::bwd<I, T>(n, channels, inner, nd, wd, info, x, w, dy, out, part);                                \
    }

// Per dtype: 32-bit and 64-bit index variants, and the tree pass.
#define PRELU_DTYPE(T, SUFFIX)                                                                                  \
    PRELU_OPS(T, SUFFIX##_u32, uint32_t)                                                                        \
    PRELU_OPS(T, SUFFIX##_u64, uint64_t)                                                                        \
    extern "C" __global__ void prelu_bwd_tree_##SUFFIX(const size_t channels, const size_t count,               \
                                                       const prelu::E<T>::C* in, prelu::E<T>::C* sums, T* dw) { \
        prelu::tree<T>(channels, count, in, sums, dw);                                                          \
    }

PRELU_DTYPE(float, f32)
PRELU_DTYPE(double, f64)
PRELU_DTYPE(__half, f16)
PRELU_DTYPE(__nv_bfloat16, bf16)
