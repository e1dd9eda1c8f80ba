// Host shim: lets g++ / clang++ compile kernels/leaky_relu.metal unchanged as C++17.
// - Address spaces: `device` is empty, `constant` is `const` (read-only, as in Metal).
// - Attributes: `[[kernel]]`, `[[thread_position_in_grid]]`, `[[host_name(..)]]` become `[[]]`.
// - metal_stdlib names: the scalar typedefs, `as_type` (a bit cast), `clz`, METAL_FUNC.
// - Apple GPUs flush f32 subnormals: the driver sets the CPU's flush modes (FTZ+DAZ) for the
//   arithmetic, and `as_type` flushes a subnormal float it produces or takes, as a value that
//   passes through a float register on the GPU can be flushed.
// - The shader's LEAKY_RELU_EXPORT hook registers each exported kernel under its Metal name, as
//   a launcher that runs one simulated thread (see driver.cpp).
// The shader keeps f16/bf16 as ushort bits and converts by hand, so no `half`/`bfloat` type is
// needed here. Never build this with -ffast-math.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#define METAL_FUNC inline
#define device
#define constant const
#define kernel
#define thread_position_in_grid
#define host_name(name)

// Metal's type names that C++ lacks: any use fails here, as using one as a name fails on Metal.
#define half metal_type_name::half
#define bfloat metal_type_name::bfloat

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned long ulong;
static_assert(sizeof(uint) == 4 && sizeof(ushort) == 2 && sizeof(ulong) == 8, "Metal widths");
static_assert(sizeof(size_t) == 8, "Metal's size_t is 64-bit");

namespace metal {
// A subnormal float as the signed zero it becomes in a GPU float register; other types as is.
template <typename T>
inline T flushed(T t) {
    return t;
}
template <>
inline float flushed(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    if ((b & 0x7F800000u) == 0) b &= 0x80000000u;
    std::memcpy(&f, &b, sizeof f);
    return f;
}
template <typename T, typename U>
inline T as_type(U u) {
    static_assert(sizeof(T) == sizeof(U), "as_type: sizes differ");
    u = flushed(u);
    T t;
    std::memcpy(&t, &u, sizeof t);
    return flushed(t);
}
// Leading zero bits; 32 for 0, as in Metal.
inline uint clz(uint x) {
    return x ? uint(__builtin_clz(x)) : 32u;
}
}  // namespace metal

// Arguments of one launch, in the order Metal binds them; pointers already offset.
struct Launch {
    size_t dim, num_dims;
    const size_t *dims, *x_strides, *dy_strides;
    uint a;  // the slope's f32 bits
    const void *x, *dy;
    void *y;
};
typedef std::function<void(const Launch &, uint tid)> Thread;

inline std::map<std::string, Thread> &kernels() {
    static std::map<std::string, Thread> k;
    return k;
}

// One simulated thread of each kernel signature (forward, backward, in place).
template <typename T>
void call(void (*f)(const size_t &, const size_t &, const size_t *, const size_t *, const uint &,
                    const T *, T *, uint),
          const Launch &l, uint tid) {
    f(l.dim, l.num_dims, l.dims, l.x_strides, l.a, (const T *)l.x, (T *)l.y, tid);
}
template <typename T>
void call(void (*f)(const size_t &, const size_t &, const size_t *, const size_t *, const size_t *,
                    const uint &, const T *, const T *, T *, uint),
          const Launch &l, uint tid) {
    f(l.dim, l.num_dims, l.dims, l.x_strides, l.dy_strides, l.a, (const T *)l.x, (const T *)l.dy,
      (T *)l.y, tid);
}
template <typename T>
void call(void (*f)(const size_t &, const size_t &, const size_t *, const size_t *, const uint &,
                    T *, uint),
          const Launch &l, uint tid) {
    f(l.dim, l.num_dims, l.dims, l.x_strides, l.a, (T *)l.y, tid);
}

template <typename F>
bool export_kernel(const char *name, F *f) {
    kernels()[name] = [f](const Launch &l, uint tid) { call(f, l, tid); };
    return true;
}

#define LR_CAT2(a, b) a##b
#define LR_CAT(a, b) LR_CAT2(a, b)
#define LEAKY_RELU_EXPORT(name, func, ...) \
    static const bool LR_CAT(exported_, __COUNTER__) = export_kernel(name, &func<__VA_ARGS__>);
