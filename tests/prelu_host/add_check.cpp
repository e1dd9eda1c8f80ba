// Checks the shader's `add` (kernels/prelu.metal, compiled with the Metal shim) against IEEE f32
// addition: `add_check` prints `ok COUNT` or the first pair that differs, and fails.
//
// The reference is the CPU's own addition with subnormals kept (MXCSR as the process starts); the
// shader's `add` runs with FTZ+DAZ on, as Apple GPUs flush f32 subnormals. NaN results count as
// equal when both are NaN (the sum's NaN is made canonical when stored). Pairs:
//   1. all pairs of edge values: exponent fields 0-3, 23-30 (the 2^-100 switch), 60-66, 100, 126,
//      127, 200, 253-255, with edge and random significands, both signs;
//   2. every subnormal and zero a (both signs) against b in a set of edges;
//   3. random pairs whose exponent fields lie below 40 (both paths, subnormal results), and random
//      pairs of any bits.
#include <cstdint>
#include <cstdio>
#include <vector>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "metal_sim.h"
#include "prelu.metal"

static void set_flush(bool on) {
#if defined(__x86_64__)
    const unsigned base = _mm_getcsr() & ~0x8040u;
    _mm_setcsr(on ? base | 0x8040u : base);
#else
#error "the add check sets x86 MXCSR"
#endif
}

static bool flushing() {
    volatile float sub = 1e-40f, one = 1.0f;
    return sub * one == 0.0f;
}

static uint32_t bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

static float value(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

static bool is_nan_bits(uint32_t b) { return (b & 0x7FFFFFFFu) > 0x7F800000u; }

static uint64_t checked = 0;

// Checks a batch: IEEE sums without flushing, then the shader's `add` with flushing.
static void check(const std::vector<uint32_t> &a, const std::vector<uint32_t> &b) {
    std::vector<uint32_t> want(a.size()), got(a.size());
    set_flush(false);
    if (flushing()) fibers::fail("the reference would flush");
    for (size_t i = 0; i < a.size(); i++) {
        volatile float x = value(a[i]), y = value(b[i]);
        want[i] = bits(x + y);
    }
    set_flush(true);
    if (!flushing()) fibers::fail("the CPU does not flush subnormals: the check would not model the GPU");
    for (size_t i = 0; i < a.size(); i++) got[i] = add(a[i], b[i]);
    set_flush(false);
    for (size_t i = 0; i < a.size(); i++) {
        const bool same = got[i] == want[i] || (is_nan_bits(got[i]) && is_nan_bits(want[i]));
        if (!same) {
            std::printf("add(%08x, %08x) = %08x, IEEE %08x\n", a[i], b[i], got[i], want[i]);
            std::exit(1);
        }
    }
    checked += a.size();
}

int main() {
    // 1. Edge values.
    std::vector<uint32_t> edges;
    const uint32_t exps[] = {0, 1, 2, 3, 23, 24, 25, 26, 27, 28, 29, 30, 60, 61, 62, 63, 64, 65, 66, 100, 126, 127, 200, 253, 254, 255};
    const uint32_t mants[] = {0, 1, 2, 3, 0x400000, 0x400001, 0x7FFFFE, 0x7FFFFF, 0x2AAAAA, 0x555555, 0x123457, 0x6DB6DB};
    for (uint32_t e : exps)
        for (uint32_t m : mants)
            for (uint32_t s : {0u, 0x80000000u}) edges.push_back(s | e << 23 | m);
    {
        std::vector<uint32_t> a, b;
        for (uint32_t x : edges)
            for (uint32_t y : edges) a.push_back(x), b.push_back(y);
        check(a, b);
    }
    // 2. Every subnormal and zero against edges of both paths.
    const uint32_t others[] = {0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000, 0x80800000, 0x00800001,
                               0x0D7FFFFF, 0x8D7FFFFF, 0x0D800000, 0x8D800000, 0x3F800000, 0x00000000, 0x80000000};
    for (uint32_t y : others) {
        std::vector<uint32_t> a, b;
        a.reserve(1u << 24);
        b.reserve(1u << 24);
        for (uint32_t m = 0; m < 0x800000u; m++) {
            a.push_back(m), b.push_back(y);
            a.push_back(0x80000000u | m), b.push_back(y);
        }
        check(a, b);
    }
    // 3. Random pairs (xorshift).
    uint64_t r = 0x9E3779B97F4A7C15ull;
    auto next = [&] {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        return r;
    };
    for (int round = 0; round < 16; round++) {
        std::vector<uint32_t> a, b;
        for (int i = 0; i < (1 << 20); i++) {
            const uint64_t u = next(), v = next();
            if (round % 4 == 3) {
                a.push_back((uint32_t)u), b.push_back((uint32_t)v);
                continue;
            }
            // Exponent fields below 40, the second often near the first (cancellation).
            const uint32_t ea = (uint32_t)(u >> 40) % 40, eb = (v & 1) ? ea + (uint32_t)(v >> 60) % 3 : (uint32_t)(v >> 40) % 40;
            a.push_back((uint32_t)(u & 0x807FFFFFu) | ea << 23);
            b.push_back((uint32_t)((v >> 8) & 0x807FFFFFu) | (eb % 40) << 23);
        }
        check(a, b);
    }
    std::printf("ok %llu\n", (unsigned long long)checked);
    return 0;
}
