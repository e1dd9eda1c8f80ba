// Runs the entry points of kernels/prelu.cu (compiled with cuda/*.h: tests/cuda_host/shim.h and
// cuda_sim.h) on simulated grids: `cuda_driver < CASES`, the case file of case.h with launch lines
//   launch WIDTH ORDER ND WD NINFO INFO... THREADS GRID NPASS (COUNT GRID)*
// as src/cuda/prelu/plan.rs plans them: the index width (32 or 64), the thread order (up or down),
// the layout arguments, the first kernel's block size and grid, then for backward the tree passes
// (sums per channel read, grid). The threads of a block run as cooperating fibers (fibers.h), so
// warp shuffles meet; blocks run one after another (the kernels share nothing between blocks
// within a launch), launches in order, as on one stream.
//
// Built with AddressSanitizer: operands live in 256-byte aligned buffers (like cudaMalloc) and
// every byte outside the elements a view addresses, past the outputs, past the info array and
// past each scratch buffer of block sums is poisoned, so an access that leaves them stops the run.
// Outputs and scratch buffers start filled with 0xA5 bytes: an element never written shows.
#include "case.h"

#include <cuda_fp16.h>  // cuda/: the shim

#include <functional>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define DECLARE(T, C, SUFFIX)                                                                              \
    extern "C" void prelu_fwd_##SUFFIX(size_t, size_t, size_t, size_t, size_t, const size_t*, const T*,   \
                                       const T*, T*);                                                    \
    extern "C" void prelu_bwd_##SUFFIX(size_t, size_t, size_t, size_t, size_t, const size_t*, const T*,   \
                                       const T*, const T*, T*, C*);
#define DECLARE_DTYPE(T, C, SUFFIX)                                                                        \
    DECLARE(T, C, SUFFIX##_u32)                                                                            \
    DECLARE(T, C, SUFFIX##_u64)                                                                            \
    extern "C" void prelu_bwd_tree_##SUFFIX(size_t, size_t, const C*, C*, T*);
DECLARE_DTYPE(float, float, f32)
DECLARE_DTYPE(double, double, f64)
DECLARE_DTYPE(__half, float, f16)
DECLARE_DTYPE(__nv_bfloat16, float, bf16)

// A copy of `bytes` followed by `len` bytes of 0xA5, at a 256-byte boundary.
struct Buf {
    std::vector<unsigned char> raw;
    unsigned char* p;
    explicit Buf(const std::vector<unsigned char>& bytes, size_t len = 0)
        : raw(bytes.size() + len + 256, 0xA5), p(raw.data() + (256 - (uintptr_t)raw.data() % 256) % 256) {
        if (!bytes.empty()) memcpy(p, bytes.data(), bytes.size());
    }
    // Poisons all but bytes [from, to) of p.
    void keep(size_t from, size_t to) {
        ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size());
        ASAN_POISON_MEMORY_REGION(raw.data(), p + from - raw.data());
        ASAN_POISON_MEMORY_REGION(p + to, raw.data() + raw.size() - (p + to));
    }
    ~Buf() { ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size()); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
};

// An operand's storage, all but its view's elements poisoned.
struct View : Buf {
    View(const cases::Operand& o, size_t size) : Buf(o.storage) {
        size_t from, to;
        cases::view_bytes(o, size, from, to);
        keep(from, to);
    }
};

// A fresh buffer of `bytes` bytes of 0xA5, nothing past it addressable.
struct Scratch : Buf {
    explicit Scratch(size_t bytes) : Buf({}, bytes) { keep(0, bytes); }
};

// One simulated launch: every block, its threads as cooperating fibers.
static void launch(unsigned grid, unsigned block, bool down, const std::function<void()>& kernel) {
    static fibers::Group group;
    if (grid == 0 || block == 0) cases::fail("empty grid");
    gridDim = dim3{grid, 1, 1};
    blockDim = dim3{block, 1, 1};
    for (unsigned k = 0; k < grid; k++) {
        blockIdx = uint3{down ? grid - 1 - k : k, 0, 0};
        sim::shuffles().reset(block);
        group.run(
            block, down, [](unsigned t) { threadIdx = uint3{t, 0, 0}; }, [&](unsigned) { kernel(); });
    }
}

template <typename T, typename C> struct Kernels {
    void (*fwd)(size_t, size_t, size_t, size_t, size_t, const size_t*, const T*, const T*, T*);
    void (*bwd)(size_t, size_t, size_t, size_t, size_t, const size_t*, const T*, const T*, const T*, T*, C*);
    void (*tree)(size_t, size_t, const C*, C*, T*);
};

template <typename T, typename C>
static std::vector<unsigned char> run(const cases::Case& c, std::istream& in, unsigned width, Kernels<T, C> k) {
    std::string order;
    size_t nd, wd, ninfo;
    in >> order >> nd >> wd >> ninfo;
    std::vector<size_t> info(ninfo);
    for (auto& v : info) in >> v;
    unsigned threads, grid, npass;
    in >> threads >> grid >> npass;
    std::vector<std::pair<size_t, unsigned>> passes(npass);
    for (auto& p : passes) in >> p.first >> p.second;
    if (!in || (order != "up" && order != "down")) cases::fail("bad launch line");
    if (c.op == "fwd" && npass != 0) cases::fail("tree passes for a forward");
    (void)width;
    const bool down = order == "down";

    View x(c.x, c.size), w(c.w, c.size), dy(c.dy, c.size);
    const size_t out_bytes = c.out_len() * c.size;
    Scratch out(out_bytes), info_buf(ninfo * sizeof(size_t));
    if (ninfo) memcpy(info_buf.p, info.data(), ninfo * sizeof(size_t));
    const size_t* pinfo = ninfo ? (const size_t*)info_buf.p : nullptr;
    const T* px = (const T*)x.p + c.x.offset;
    const T* pw = (const T*)w.p + c.w.offset;
    const T* pdy = (const T*)dy.p + c.dy.offset;
    T* pout = (T*)out.p;

    if (c.op == "fwd") {
        launch(grid, threads, down, [&] { k.fwd(c.n, c.channels, c.inner, nd, wd, pinfo, px, pw, pout); });
    } else {
        Scratch* part = npass ? new Scratch(c.channels * passes[0].first * sizeof(C)) : nullptr;
        launch(grid, threads, down, [&] {
            k.bwd(c.n, c.channels, c.inner, nd, wd, pinfo, px, pw, pdy, pout, part ? (C*)part->p : nullptr);
        });
        Scratch* src = part;
        for (size_t q = 0; q < npass; q++) {
            const size_t count = passes[q].first, groups = (count + 31) / 32;
            Scratch* dst = groups > 1 ? new Scratch(c.channels * groups * sizeof(C)) : nullptr;
            launch(passes[q].second, threads, down, [&] {
                k.tree(c.channels, count, (const C*)src->p, dst ? (C*)dst->p : nullptr, pout + c.n);
            });
            delete src;
            src = dst;
        }
        delete src;
    }
    return std::vector<unsigned char>(out.p, out.p + out_bytes);
}

#define KERNELS(T, C, SUFFIX)                                                                      \
    (width == 64 ? Kernels<T, C>{prelu_fwd_##SUFFIX##_u64, prelu_bwd_##SUFFIX##_u64, prelu_bwd_tree_##SUFFIX} \
                 : Kernels<T, C>{prelu_fwd_##SUFFIX##_u32, prelu_bwd_##SUFFIX##_u32, prelu_bwd_tree_##SUFFIX})

int main() {
    return cases::serve([](const cases::Case& c, std::istream& in) {
        unsigned width;
        in >> width;
        if (width != 32 && width != 64) cases::fail("index width must be 32 or 64");
        if (c.dtype == "f32") return run(c, in, width, KERNELS(float, float, f32));
        if (c.dtype == "f64") return run(c, in, width, KERNELS(double, double, f64));
        if (c.dtype == "f16") return run(c, in, width, KERNELS(__half, float, f16));
        if (c.dtype != "bf16") cases::fail("unknown dtype " + c.dtype);
        return run(c, in, width, KERNELS(__nv_bfloat16, float, bf16));
    });
}
