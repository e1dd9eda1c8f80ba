// LeakyReLU for candle-leaky-relu: forward, backward (x, dy -> dx) and in-place forward for
// f32, f64, f16 and bf16, bit for bit as NUMERICS.md says.
//
// - One template body per direction, stamped per dtype by LEAKY_RELU_OPS into extern "C"
//   entry points: leaky_relu_{fwd,bwd,inplace}_{f32,f64,f16,bf16}.
// - Contiguous operands (info == nullptr): 16-byte vector loads and stores when every pointer
//   has the same offset from a 16-byte boundary (scalar head up to it, scalar tail), else
//   scalar loads (a narrowed view's offset can break alignment; never a misaligned vector).
// - Strided operands (info != nullptr): info = dims[nd] ++ x_strides[nd] (++ dy_strides[nd]
//   for backward); the output of fwd/bwd is contiguous, in-place writes through x's strides.
// - All indices are 64-bit (size_t), grid-stride loops, any grid size.
// - f16/bf16 compute in f32 with explicit conversions (round to nearest even); a NaN product
//   becomes the canonical NaN; a NaN input passes through (forward). Build WITHOUT fast math.
//
// The file also compiles unchanged with g++ and tests/cuda_host/shim.h (the host-run tests):
// keep to plain C++ and the few CUDA names the shim defines.
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

enum Mode { FWD, BWD, INPLACE };

// One element: forward (x > 0 or NaN: x unchanged) or backward (x > 0: dy unchanged).
template <Mode M, typename T>
__device__ __forceinline__ T apply(T x, T dy, typename E<T>::C a) {
    if (M == BWD) return E<T>::up(x) > 0 ? dy : scaled<T>(E<T>::up(dy), a);
    const typename E<T>::C v = E<T>::up(x);
    return v <= 0 ? scaled<T>(v, a) : x;
}

// Sixteen bytes of T: loads and stores of it are single vector instructions.
template <typename T> struct alignas(16) Pack { T e[16 / sizeof(T)]; };

// Storage offset of logical (row-major) element i of a view.
__device__ __forceinline__ size_t offset_of(size_t i, size_t nd, const size_t* dims, const size_t* strides) {
    size_t off = 0;
    for (size_t d = nd; d-- > 0;) {
        off += (i % dims[d]) * strides[d];
        i /= dims[d];
    }
    return off;
}

// out = op(x, dy) over n elements; dy is only read in BWD mode, out aliases x in INPLACE mode.
template <Mode M, typename T>
__device__ void map(const size_t n, const size_t nd, const size_t* info, const T* x, const T* dy, T* out,
                    const typename E<T>::C a) {
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t step = (size_t)gridDim.x * blockDim.x;
    if (info != nullptr) {
        const size_t* dims = info;
        for (size_t i = first; i < n; i += step) {
            const size_t ox = offset_of(i, nd, dims, info + nd);
            const T g = M == BWD ? dy[offset_of(i, nd, dims, info + 2 * nd)] : x[ox];
            out[M == INPLACE ? ox : i] = apply<M>(x[ox], g, a);
        }
        return;
    }
    const size_t W = 16 / sizeof(T);
    const size_t mis = (uintptr_t)x % 16;
    const bool same = (uintptr_t)out % 16 == mis && (M != BWD || (uintptr_t)dy % 16 == mis);
    // Elements before the first 16-byte boundary (all of them when the pointers disagree).
    const size_t to_edge = (16 - mis) % 16 / sizeof(T);
    const size_t head = !same ? n : to_edge < n ? to_edge : n;
    const size_t packs = (n - head) / W;
    const Pack<T>* px = (const Pack<T>*)(x + head);
    const Pack<T>* pg = (const Pack<T>*)(dy + head);
    Pack<T>* po = (Pack<T>*)(out + head);
    for (size_t p = first; p < packs; p += step) {
        const Pack<T> vx = px[p];
        const Pack<T> vg = M == BWD ? pg[p] : vx;
        Pack<T> r;
        for (size_t k = 0; k < W; ++k) r.e[k] = apply<M>(vx.e[k], vg.e[k], a);
        po[p] = r;
    }
    for (size_t i = first; i < head; i += step) out[i] = apply<M>(x[i], M == BWD ? dy[i] : x[i], a);
    for (size_t i = head + packs * W + first; i < n; i += step) out[i] = apply<M>(x[i], M == BWD ? dy[i] : x[i], a);
}

}  // namespace leaky_relu

#define LEAKY_RELU_OPS(T, S, SUFFIX)                                                                     \
    extern "C" __global__ void leaky_relu_fwd_##SUFFIX(const size_t n, const size_t nd, const size_t* info, \
                                                       const T* x, T* y, const S a) {                      \
        leaky_relu::map<leaky_relu::FWD, T>(n, nd, info, x, x, y, a);                                    \
    }                                                                                                    \
    extern "C" __global__ void leaky_relu_bwd_##SUFFIX(const size_t n, const size_t nd, const size_t* info, \
                                                       const T* x, const T* dy, T* dx, const S a) {        \
        leaky_relu::map<leaky_relu::BWD, T>(n, nd, info, x, dy, dx, a);                                  \
    }                                                                                                    \
    extern "C" __global__ void leaky_relu_inplace_##SUFFIX(const size_t n, const size_t nd,                \
                                                           const size_t* info, T* x, const S a) {          \
        leaky_relu::map<leaky_relu::INPLACE, T>(n, nd, info, x, x, x, a);                                \
    }

LEAKY_RELU_OPS(float, float, f32)
LEAKY_RELU_OPS(double, double, f64)
LEAKY_RELU_OPS(__half, float, f16)
LEAKY_RELU_OPS(__nv_bfloat16, float, bf16)
