// Runs kernels/prelu.metal on the host over simulated Metal grids: `metal_driver < CASES`, the
// case file of case.h with launch lines
//   launch KERNEL ORDER WIDTH GROUPS ND WD NINFO INFO... NPASS (TREE_KERNEL COUNT GROUPS)*
// as src/metal/plan.rs plans them: the kernel, the thread order (up or down), the threadgroup
// width and count, the layout arguments, then for backward the tree passes (kernel, sums per
// channel read, threadgroups). The threads of a threadgroup run as cooperating fibers (fibers.h)
// so that SIMD-group shuffles meet; threadgroups one after another, dispatches in order.
//
// Apple GPUs flush f32 subnormals to zero in arithmetic and comparisons: the driver runs the
// shader with the CPU's flush modes on (x86 MXCSR FTZ+DAZ, aarch64 FPCR.FZ), checks that they are
// in force before every simulated thread, and the shim flushes where bits become a float. Built
// with AddressSanitizer: every byte outside the views, the outputs, the info array and the
// scratch buffers is poisoned. Outputs and scratch buffers start filled with 0xA5 bytes.
#include "case.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

#include "metal_sim.h"
#include "prelu.metal"

// Whether subnormal operands and results flush to zero on this thread now.
static bool flushing() {
    volatile float tiny = 1e-30f, sub = 1e-40f, one = 1.0f;
    return tiny * tiny == 0.0f && sub == 0.0f && !(sub > 0.0f) && sub * one == 0.0f;
}

// Flush subnormal operands and results to zero from here on, on this thread; fails otherwise.
static void flush_subnormals() {
#if defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15), DAZ (bit 6)
#elif defined(__aarch64__)
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (uint64_t(1) << 24)));  // FZ
#else
#error "no known way to flush subnormals on this CPU"
#endif
    if (!flushing()) cases::fail("the CPU does not flush subnormals: the run would not model the GPU");
}

// A copy of `bytes` followed by `len` bytes of 0xA5, at a 256-byte boundary; keep() poisons the rest.
struct Buf {
    std::vector<unsigned char> raw;
    unsigned char *p;
    explicit Buf(const std::vector<unsigned char> &bytes, size_t len = 0)
        : raw(bytes.size() + len + 256, 0xA5), p(raw.data() + (256 - (uintptr_t)raw.data() % 256) % 256) {
        if (!bytes.empty()) memcpy(p, bytes.data(), bytes.size());
    }
    void keep(size_t from, size_t to) {
        ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size());
        ASAN_POISON_MEMORY_REGION(raw.data(), p + from - raw.data());
        ASAN_POISON_MEMORY_REGION(p + to, raw.data() + raw.size() - (p + to));
    }
    ~Buf() { ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size()); }
    Buf(const Buf &) = delete;
    Buf &operator=(const Buf &) = delete;
};

struct View : Buf {
    View(const cases::Operand &o, size_t size) : Buf(o.storage) {
        size_t from, to;
        cases::view_bytes(o, size, from, to);
        keep(from, to);
    }
};

struct Scratch : Buf {
    explicit Scratch(size_t bytes) : Buf({}, bytes) { keep(0, bytes); }
};

// One dispatch of `name`: every threadgroup, its threads as cooperating fibers.
static void dispatch(const std::string &name, size_t groups, size_t width, bool down, const PreluArgs &a) {
    static fibers::Group group;
    auto k = prelu_kernels().find(name);
    if (k == prelu_kernels().end()) cases::fail("the shader exports no kernel " + name);
    if (groups == 0 || width == 0 || groups * width > 0xFFFFFFFFull) cases::fail("bad grid");
    for (size_t q = 0; q < groups; q++) {
        const uint tg = (uint)(down ? groups - 1 - q : q);
        msim::shuffles().reset((unsigned)width);
        group.run(
            (unsigned)width, down, [](unsigned t) { msim::lid() = t; },
            [&](unsigned t) {
                if (!flushing()) cases::fail("flush-to-zero is off in a simulated thread");
                const Ids ids{(uint)(tg * width + t), (uint)(groups * width), t, tg, (uint)width, (uint)groups};
                k->second(a, ids);
            });
    }
}

static std::vector<unsigned char> run(const cases::Case &c, std::istream &in) {
    std::string name, order;
    size_t width, groups, nd, wd, ninfo, npass;
    in >> name >> order >> width >> groups >> nd >> wd >> ninfo;
    std::vector<size_t> info(ninfo);
    for (auto &v : info) in >> v;
    in >> npass;
    struct Pass {
        std::string name;
        size_t count, groups;
    };
    std::vector<Pass> passes(npass);
    for (auto &p : passes) in >> p.name >> p.count >> p.groups;
    if (!in || (order != "up" && order != "down") || ninfo == 0) cases::fail("bad launch line");
    if (c.op == "fwd" && npass != 0) cases::fail("tree passes for a forward");
    const bool down = order == "down";

    View x(c.x, c.size), w(c.w, c.size), dy(c.dy, c.size);
    const size_t out_bytes = c.out_len() * c.size;
    Scratch out(out_bytes), info_buf(ninfo * sizeof(size_t));
    memcpy(info_buf.p, info.data(), ninfo * sizeof(size_t));

    PreluArgs a;
    a.n = c.n;
    a.channels = c.channels;
    a.inner = c.inner;
    a.nd = nd;
    a.wd = wd;
    a.info = (const size_t *)info_buf.p;
    a.x = x.p + c.x.offset * c.size;
    a.w = w.p + c.w.offset * c.size;
    a.dy = dy.p + c.dy.offset * c.size;
    a.out = out.p;
    if (c.op == "fwd") {
        dispatch(name, groups, width, down, a);
    } else {
        Scratch *part = npass ? new Scratch(c.channels * passes[0].count * 4) : nullptr;
        a.direct = npass == 0;
        a.part = part ? part->p : nullptr;
        dispatch(name, groups, width, down, a);
        Scratch *src = part;
        for (const Pass &p : passes) {
            const size_t g = (p.count + 31) / 32;
            Scratch *dst = g > 1 ? new Scratch(c.channels * g * 4) : nullptr;
            PreluArgs t;
            t.channels = c.channels;
            t.count = p.count;
            t.in = src->p;
            t.sums = dst ? dst->p : nullptr;
            t.out = out.p + c.n * c.size;
            dispatch(p.name, p.groups, width, down, t);
            delete src;
            src = dst;
        }
        delete src;
    }
    return std::vector<unsigned char>(out.p, out.p + out_bytes);
}

int main() {
    flush_subnormals();
    return cases::serve([](const cases::Case &c, std::istream &in) { return run(c, in); });
}
