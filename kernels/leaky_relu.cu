// LeakyReLU for candle-leaky-relu: forward, backward (x, dy -> dx) and in-place forward for
// f32, f64, f16 and bf16, bit for bit as NUMERICS.md says.
//
// - One template body per direction, stamped per dtype and index width by LEAKY_RELU_OPS into
//   extern "C" entry points: leaky_relu_{fwd,bwd,inplace}_{f32,f64,f16,bf16}_{u32,u64}.
// - Contiguous operands (info == nullptr, _u32 entry points): the output is written in 16-byte
//   vector stores (after a scalar head up to its first 16-byte boundary, only in place: a fresh
//   output is aligned). An input at a 16-byte boundary there is read in 16-byte vectors; one that
//   is not (a narrowed view) is read as the two aligned vectors around each pack of elements,
//   shifted down to the pack's elements by words and bits that each thread works out once,
//   before the loop (selects and funnel shifts in the loop: no branch, no run-time register
//   index). Never a misaligned vector, never an element outside the view (the first pack and the
//   last few elements of such a view go through the scalar loops). The _u64 entry points, which
//   the host launches for strided views only, walk a contiguous view one element per step.
// - Strided operands (info != nullptr): info = dims[nd] ++ x_strides[nd] (++ dy_strides[nd]
//   for backward), as size_t; the output of fwd/bwd is contiguous, in-place writes through x's
//   strides. The _u32 entry points walk them with 32-bit arithmetic (the host picks them when
//   the element count and every offset of the walk fit in 32 bits), the _u64 ones with 64-bit;
//   backward derives both offsets from one division per dimension.
// - Grid-stride loops with 64-bit counters: any grid size, any element count.
// - f16/bf16 compute in f32 with explicit conversions (round to nearest even); a NaN product
//   becomes the canonical NaN; a NaN input passes through (forward). Build WITHOUT fast math.
//
// The file also compiles unchanged with g++ and tests/cuda_host/shim.h (the host-run tests):
// keep to plain C++17 and the few CUDA names the shim defines.
#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace leaky_relu {

// Per dtype: the compute type C (also the slope's type), exact widening, rounding narrowing
// and the canonical NaN of the contract.
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

// R_T(v * a), a NaN product giving the canonical NaN.
template <typename T>
__device__ __forceinline__ T scaled(typename E<T>::C v, typename E<T>::C a) {
    const typename E<T>::C p = v * a;
    return p != p ? E<T>::nan() : E<T>::down(p);
}

// The three operations, mirroring the Rust enum `crate::base::Op` (one enum here too; the entry
// points that LEAKY_RELU_OPS stamps are named after its values: fwd, bwd, inplace).
enum Mode { FWD, BWD, INPLACE };

// One element: forward (x > 0 or NaN: x unchanged) or backward (x > 0: dy unchanged).
template <Mode M, typename T>
__device__ __forceinline__ T apply(T x, T dy, typename E<T>::C a) {
    if (M == BWD) return E<T>::up(x) > 0 ? dy : scaled<T>(E<T>::up(dy), a);
    const typename E<T>::C v = E<T>::up(x);
    return v <= 0 ? scaled<T>(v, a) : x;
}

// Elements of T in sixteen bytes.
template <typename T> constexpr unsigned W = 16 / sizeof(T);

// Sixteen bytes of T: loads and stores of it are single vector instructions.
template <typename T> struct alignas(16) Pack { T e[W<T>]; };

// Where an input's packs lie from 16-byte boundaries: q elements past one (q < W, the same for
// every pack and every thread), as the 32-bit words and bits that two aligned vectors are shifted
// down by to give a pack. Worked out once per thread, before the loop.
struct Shift {
    unsigned q;     // elements
    bool two, one;  // words: 2 * two + one
    unsigned bits;  // 0, or 16 for 16-bit elements at an odd position
};
template <typename T>
__device__ __forceinline__ Shift shift_of(const unsigned q) {
    const unsigned bytes = q * sizeof(T);
    return Shift{q, (bytes & 8) != 0, (bytes & 4) != 0, (bytes & 3) * 8};
}

// The W elements from p on: one vector load if p is at a 16-byte boundary (MISALIGNED false),
// else the two aligned vectors around them (from p - s.q on) as eight words, shifted down by s
// with selects and funnel shifts: no branch, nothing indexed at run time.
template <typename T, bool MISALIGNED>
__device__ __forceinline__ Pack<T> load(const T* p, const Shift s) {
    if constexpr (!MISALIGNED) {
        return *(const Pack<T>*)p;
    } else {
        const Pack<T>* a = (const Pack<T>*)(p - s.q);
        const Pack<T> lo = a[0], hi = a[1];
        uint32_t w[8], u[6], v[5], r[4];
        memcpy(w, &lo, 16);
        memcpy(w + 4, &hi, 16);
        for (unsigned k = 0; k < 6; ++k) u[k] = s.two ? w[k + 2] : w[k];
        for (unsigned k = 0; k < 5; ++k) v[k] = s.one ? u[k + 1] : u[k];
        for (unsigned k = 0; k < 4; ++k) r[k] = (uint32_t)((((uint64_t)v[k + 1] << 32) | v[k]) >> s.bits);
        Pack<T> e;
        memcpy(&e, r, 16);
        return e;
    }
}

// out's packs p in [p0, p1) from `first` on, `step` apart (po: out's first pack); x's and dy's
// elements of pack p lie as hx and hg say, misaligned or not as MX and MG say.
template <Mode M, typename T, bool MX, bool MG>
__device__ void packs(const size_t first, const size_t step, const size_t p0, const size_t p1, const T* x,
                      const T* dy, Pack<T>* po, const typename E<T>::C a, const Shift hx, const Shift hg) {
    for (size_t p = p0 + first; p < p1; p += step) {
        const Pack<T> vx = load<T, MX>(x + p * W<T>, hx);
        const Pack<T> vg = M == BWD ? load<T, MG>(dy + p * W<T>, hg) : vx;
        Pack<T> r;
        for (unsigned k = 0; k < W<T>; ++k) r.e[k] = apply<M>(vx.e[k], vg.e[k], a);
        po[p] = r;
    }
}

// out = op(x, dy) over n elements; dy is only read in BWD mode, out aliases x in INPLACE mode.
// I is the index type of the strided walk.
template <Mode M, typename I, typename T>
__device__ void map(const size_t n, const size_t nd, const size_t* info, const T* x, const T* dy, T* out,
                    const typename E<T>::C a) {
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    // Strided views, one element per step; also contiguous ones given to the _u64 entry points
    // (the host launches those through the _u32 ones), so that the vector path below is compiled
    // once per operation and dtype.
    if (sizeof(I) > 4 || info != nullptr) {
        for (size_t i = first; i < n; i += step) {
            // Storage offsets of logical (row-major) element i in x and dy.
            I ox = (I)i, og = (I)i;
            if (info != nullptr) {
                I rest = (I)i;
                ox = og = 0;
                for (size_t d = nd; d-- > 0;) {
                    const I dim = (I)info[d], r = rest % dim;
                    rest /= dim;
                    ox += r * (I)info[nd + d];
                    if (M == BWD) og += r * (I)info[2 * nd + d];
                }
            }
            const T g = M == BWD ? dy[og] : x[ox];
            out[M == INPLACE ? ox : i] = apply<M>(x[ox], g, a);
        }
        return;
    }
    constexpr unsigned w = W<T>;
    // Elements of out before its first 16-byte boundary: none for a fresh output.
    const size_t edge = (16 - (uintptr_t)out % 16) % 16 / sizeof(T);
    const size_t head = edge < n ? edge : n;
    // Where the inputs of the first pack lie from a 16-byte boundary, in elements (0 in place).
    const unsigned qx = (uintptr_t)(x + head) % 16 / sizeof(T);
    const unsigned qg = M == BWD ? (uintptr_t)(dy + head) % 16 / sizeof(T) : 0;
    // Packs [p0, p1) from head on are stored whole. A misaligned input's loads reach q elements
    // before a pack and w - q after it: its first pack and those too near the end are left to
    // the scalar loops, so no load leaves the view.
    const unsigned sx = qx ? w - qx : 0, sg = qg ? w - qg : 0, slack = sx > sg ? sx : sg;
    size_t p1 = n - head >= slack ? (n - head - slack) / w : 0, p0 = slack ? 1 : 0;
    if (p1 <= p0) p0 = p1 = 0;
    const Shift hx = shift_of<T>(qx), hg = shift_of<T>(qg);
    Pack<T>* po = (Pack<T>*)(out + head);
    // In place, x is out, whose packs are aligned; only backward reads dy.
    if (M == INPLACE || qx == 0) {
        if (M == BWD && qg != 0) packs<M, T, false, true>(first, step, p0, p1, x + head, dy + head, po, a, hx, hg);
        else packs<M, T, false, false>(first, step, p0, p1, x + head, dy + head, po, a, hx, hg);
    } else {
        if (M == BWD && qg != 0) packs<M, T, true, true>(first, step, p0, p1, x + head, dy + head, po, a, hx, hg);
        else packs<M, T, true, false>(first, step, p0, p1, x + head, dy + head, po, a, hx, hg);
    }
    const size_t v0 = head + p0 * w, v1 = head + p1 * w;
    for (size_t i = first; i < v0; i += step) out[i] = apply<M>(x[i], M == BWD ? dy[i] : x[i], a);
    for (size_t i = v1 + first; i < n; i += step) out[i] = apply<M>(x[i], M == BWD ? dy[i] : x[i], a);
}

}  // namespace leaky_relu

#define LEAKY_RELU_OPS(T, S, SUFFIX, I)                                                                 \
    extern "C" __global__ void leaky_relu_fwd_##SUFFIX(const size_t n, const size_t nd, const size_t* info, \
                                                       const T* x, T* y, const S a) {                      \
        leaky_relu::map<leaky_relu::FWD, I, T>(n, nd, info, x, x, y, a);                                 \
    }                                                                                                    \
    extern "C" __global__ void leaky_relu_bwd_##SUFFIX(const size_t n, const size_t nd, const size_t* info, \
                                                       const T* x, const T* dy, T* dx, const S a) {        \
        leaky_relu::map<leaky_relu::BWD, I, T>(n, nd, info, x, dy, dx, a);                               \
    }                                                                                                    \
    extern "C" __global__ void leaky_relu_inplace_##SUFFIX(const size_t n, const size_t nd,                \
                                                           const size_t* info, T* x, const S a) {          \
        leaky_relu::map<leaky_relu::INPLACE, I, T>(n, nd, info, x, x, x, a);                             \
    }

// Per dtype: 32-bit and 64-bit index variants.
#define LEAKY_RELU_DTYPE(T, S, SUFFIX)             \
    LEAKY_RELU_OPS(T, S, SUFFIX##_u32, uint32_t) \
    LEAKY_RELU_OPS(T, S, SUFFIX##_u64, uint64_t)

LEAKY_RELU_DTYPE(float, float, f32)
LEAKY_RELU_DTYPE(double, double, f64)
LEAKY_RELU_DTYPE(__half, float, f16)
LEAKY_RELU_DTYPE(__nv_bfloat16, float, bf16)
