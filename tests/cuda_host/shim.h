// Host shim: just enough CUDA for g++ to compile kernels/leaky_relu.cu unchanged, so the
// host-run tests (tests/cuda_host.rs) can execute the kernel logic on a simulated grid.
// Conversions follow the CUDA documentation (round to nearest even; a NaN converts to 0x7FFF),
// written here independently of the crate's CPU path that the results are compared with.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __forceinline__ inline

struct uint3 { unsigned int x, y, z; };
typedef uint3 dim3;
// The simulated launch: the driver sets these before it calls an entry point once per thread.
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

struct __half { uint16_t bits; };
struct __nv_bfloat16 { uint16_t bits; };

template <typename To, typename From> inline To shim_bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "same size");
    To r;
    memcpy(&r, &v, sizeof r);
    return r;
}

inline float __int_as_float(int v) { return shim_bit_cast<float>(v); }
inline double __longlong_as_double(long long v) { return shim_bit_cast<double>(v); }
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { return __nv_bfloat16{v}; }

inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits & 0x8000) << 16, e = (h.bits >> 10) & 0x1f, m = h.bits & 0x3ff;
    if (e == 0x1f) return shim_bit_cast<float>(sign | 0x7f800000 | m << 13);
    if (e != 0) return shim_bit_cast<float>(sign | (e + 112) << 23 | m << 13);
    const float v = (float)m * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return shim_bit_cast<float>(sign | shim_bit_cast<uint32_t>(v));
}

// Shifts a 24-bit significand right, rounding to nearest even.
inline uint32_t shim_shift_rne(uint32_t m, uint32_t shift) {
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

inline __half __float2half_rn(float f) {
    const uint32_t x = shim_bit_cast<uint32_t>(f), sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return __half{0x7fff};
    if (ax >= 0x477ff000) return __half{(uint16_t)(sign | 0x7c00)};  // >= 65520: rounds to inf
    if (ax >= 0x38800000) return __half{(uint16_t)(sign | (ax + 0xfff + ((ax >> 13) & 1) - 0x38000000) >> 13)};
    if (ax < 0x33000000) return __half{(uint16_t)sign};  // <= 2^-25: rounds to zero
    const uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
    return __half{(uint16_t)(sign | shim_shift_rne(m, 126 - e))};
}

inline float __bfloat162float(__nv_bfloat16 b) { return shim_bit_cast<float>((uint32_t)b.bits << 16); }

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    const uint32_t x = shim_bit_cast<uint32_t>(f);
    if ((x & 0x7fffffff) > 0x7f800000) return __nv_bfloat16{0x7fff};
    return __nv_bfloat16{(uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16)};
}
