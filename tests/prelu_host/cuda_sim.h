// What kernels/prelu.cu needs of CUDA beyond tests/cuda_host/shim.h: warp shuffles between the
// simulated threads of a block, which cuda_driver.cpp runs as cooperating fibers (fibers.h), and
// <math.h> (fma, for the deliberately wrong kernels of the harness).
//
// __shfl_xor_sync(mask, v, lane_mask, width) follows the CUDA documentation, and everything it
// leaves undefined stops the run: the caller must be named in `mask`, every thread `mask` names
// must exist and reach the same shuffle (the n-th shuffle of each, with the same mask), and the
// source lane must be in `mask` and in the caller's segment of `width` lanes. Each thread waits
// until every thread of its mask has arrived, then reads its source's value.
#pragma once
#include <math.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "fibers.h"

namespace sim {

// The shuffle state of the block being run: per thread, how many shuffles it has entered, and
// the value and mask of its last two (a thread can be at most one shuffle ahead of a partner
// that has not read yet).
struct Shuffles {
    std::vector<uint64_t> count;
    std::vector<uint64_t> value[2];
    std::vector<unsigned> mask[2];
    void reset(unsigned threads) {
        count.assign(threads, 0);
        for (int k = 0; k < 2; k++) {
            value[k].assign(threads, 0);
            mask[k].assign(threads, 0);
        }
    }
};

inline Shuffles &shuffles() {
    static Shuffles s;
    return s;
}

}  // namespace sim

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "a register value");
    fibers::Group &g = *fibers::Group::current();
    sim::Shuffles &s = sim::shuffles();
    const unsigned tid = threadIdx.x, lane = tid % 32, warp0 = tid - lane;
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) fibers::fail("shuffle width not a power of two <= 32");
    if (!(mask >> lane & 1)) fibers::fail("shuffle: the calling thread is not in its mask");
    const unsigned src = lane ^ (unsigned)lane_mask;
    if (src >= 32 || src / width != lane / width) fibers::fail("shuffle: source lane outside the caller's segment");
    if (!(mask >> src & 1)) fibers::fail("shuffle: source lane not in the mask");
    for (unsigned l = 0; l < 32; l++) {
        if ((mask >> l & 1) && warp0 + l >= g.size()) fibers::fail("shuffle: the mask names a thread the block lacks");
    }
    const uint64_t k = ++s.count[tid];
    uint64_t bits = 0;
    std::memcpy(&bits, &var, sizeof var);
    s.value[k % 2][tid] = bits;
    s.mask[k % 2][tid] = mask;
    g.wait_until([&] {
        for (unsigned l = 0; l < 32; l++) {
            if (!(mask >> l & 1)) continue;
            const unsigned t = warp0 + l;
            if (s.count[t] >= k) continue;
            if (g.done(t)) fibers::fail("shuffle: a thread of the mask finished without reaching it");
            return false;
        }
        return true;
    });
    for (unsigned l = 0; l < 32; l++) {
        if ((mask >> l & 1) && s.mask[k % 2][warp0 + l] != mask) fibers::fail("shuffle: threads disagree on the mask");
    }
    T r;
    std::memcpy(&r, &s.value[k % 2][warp0 + src], sizeof r);
    return r;
}
