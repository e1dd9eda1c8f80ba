// What kernels/prelu.metal needs of Metal beyond tests/metal_host/shim.h (the LeakyReLU shim,
// reached as <metal_stdlib>): the thread-index attributes of its kernels, SIMD-group shuffles
// between the simulated threads of a threadgroup, which metal_driver.cpp runs as cooperating
// fibers (fibers.h), and the PRELU_EXPORT hook that registers every exported kernel under its
// Metal name.
//
// simd_shuffle_xor(v, mask): SIMD-groups of 32 threads (Apple GPUs), consecutive in the
// threadgroup. Every thread of the caller's SIMD-group must reach the same shuffle (the n-th
// shuffle of each) and the source lane must exist; anything else stops the run (on the GPU a
// thread that does not take part leaves its value undefined). Each thread waits until its whole
// SIMD-group has arrived, then reads its source's value.
#pragma once
#include "fibers.h"

#include <map>
#include <string>

#include <metal_stdlib>  // tests/metal_host/include: the LeakyReLU shim

#define thread_position_in_threadgroup
#define threadgroup_position_in_grid
#define threads_per_threadgroup
#define threadgroups_per_grid
#define threads_per_grid

namespace msim {

constexpr unsigned SIMD = 32;

// The simulated thread's index in its threadgroup (set by the driver when it resumes a thread).
inline unsigned &lid() {
    static unsigned v = 0;
    return v;
}

// Per thread of the running threadgroup: shuffles entered, and the values of the last two.
struct Shuffles {
    std::vector<uint64_t> count;
    std::vector<uint32_t> value[2];
    void reset(unsigned threads) {
        count.assign(threads, 0);
        value[0].assign(threads, 0);
        value[1].assign(threads, 0);
    }
};

inline Shuffles &shuffles() {
    static Shuffles s;
    return s;
}

}  // namespace msim

namespace metal {
template <typename T>
T simd_shuffle_xor(T data, ushort mask) {
    static_assert(sizeof(T) == 4, "32-bit values");
    fibers::Group &g = *fibers::Group::current();
    msim::Shuffles &s = msim::shuffles();
    const unsigned me = msim::lid(), first = me - me % msim::SIMD;
    const unsigned last = first + msim::SIMD < g.size() ? first + msim::SIMD : g.size();
    const unsigned src = first + ((me % msim::SIMD) ^ mask);
    if (mask >= msim::SIMD || src >= last) fibers::fail("simd_shuffle_xor: no such source lane");
    const uint64_t k = ++s.count[me];
    uint32_t bits;
    std::memcpy(&bits, &data, sizeof bits);
    s.value[k % 2][me] = bits;
    g.wait_until([&] {
        for (unsigned t = first; t < last; t++) {
            if (s.count[t] >= k) continue;
            if (g.done(t)) fibers::fail("simd_shuffle_xor: a thread of the SIMD-group finished without reaching it");
            return false;
        }
        return true;
    });
    T r;
    std::memcpy(&r, &s.value[k % 2][src], sizeof r);
    return r;
}
}  // namespace metal

// The arguments of one dispatch, as the host binds them (buffers already at their offsets), and
// the thread's position.
struct PreluArgs {
    size_t n = 0, channels = 0, inner = 0, nd = 0, wd = 0, count = 0;
    const size_t *info = nullptr;
    uint direct = 0;
    const void *x = nullptr, *w = nullptr, *dy = nullptr, *in = nullptr;
    void *out = nullptr, *part = nullptr, *sums = nullptr;
};
struct Ids {
    uint tid, threads, lid, tg, width, groups;
};
typedef std::function<void(const PreluArgs &, const Ids &)> Kernel;

inline std::map<std::string, Kernel> &prelu_kernels() {
    static std::map<std::string, Kernel> k;
    return k;
}

// One simulated thread of each kernel signature (forward, backward, tree pass).
template <typename T>
void prelu_call(void (*f)(const size_t &, const size_t &, const size_t &, const size_t &, const size_t &, const size_t *,
                    const T *, const T *, T *, uint, uint),
          const PreluArgs &a, const Ids &i) {
    f(a.n, a.channels, a.inner, a.nd, a.wd, a.info, (const T *)a.x, (const T *)a.w, (T *)a.out, i.tid, i.threads);
}
template <typename T>
void prelu_call(void (*f)(const size_t &, const size_t &, const size_t &, const size_t &, const size_t &, const size_t *,
                    const uint &, const T *, const T *, const T *, T *, uint *, uint, uint, uint, uint, uint, uint),
          const PreluArgs &a, const Ids &i) {
    f(a.n, a.channels, a.inner, a.nd, a.wd, a.info, a.direct, (const T *)a.x, (const T *)a.w, (const T *)a.dy,
      (T *)a.out, (uint *)a.part, i.tid, i.threads, i.lid, i.tg, i.width, i.groups);
}
template <typename T>
void prelu_call(void (*f)(const size_t &, const size_t &, const uint *, uint *, T *, uint, uint), const PreluArgs &a,
          const Ids &i) {
    f(a.channels, a.count, (const uint *)a.in, (uint *)a.sums, (T *)a.out, i.tid, i.threads);
}

template <typename F>
bool prelu_export(const char *name, F *f) {
    prelu_kernels()[name] = [f](const PreluArgs &a, const Ids &i) { prelu_call(f, a, i); };
    return true;
}

#define PRELU_CAT2(a, b) a##b
#define PRELU_CAT(a, b) PRELU_CAT2(a, b)
#define PRELU_EXPORT(name, func, ...) \
    static const bool PRELU_CAT(exported_, __COUNTER__) = prelu_export(name, &func<__VA_ARGS__>);
