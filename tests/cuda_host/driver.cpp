// Runs the entry points of kernels/leaky_relu.cu (compiled with shim.h) on simulated grids:
// `driver < CASES`, the case file of tests/host/mod.rs (see ../host/case_file.h) with launch
// lines `launch CONTIGUOUS GRID BLOCK WIDTH LAYOUTS` (CONTIGUOUS 1 passes info = nullptr; WIDTH
// 32 or 64 picks the _u32 or _u64 entry points; LAYOUTS `near` or `far ...`, see
// host::read_layouts). Operands live in 256-byte aligned buffers, like cudaMalloc allocations;
// the kernel gets them from the offsets on. Built with AddressSanitizer, everything outside the
// elements a view addresses (and past the n outputs) is poisoned: a load or store that leaves its
// view aborts the driver (far operands, relaid out in reserved address space, are not guarded).
// Threads run one after another: the kernels share nothing between threads.
#include "../host/case_file.h"

#include "shim.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define DECLARE(T, S, SUFFIX)                                                                          \
    extern "C" void leaky_relu_fwd_##SUFFIX(size_t, size_t, const size_t*, const T*, T*, S);           \
    extern "C" void leaky_relu_bwd_##SUFFIX(size_t, size_t, const size_t*, const T*, const T*, T*, S); \
    extern "C" void leaky_relu_inplace_##SUFFIX(size_t, size_t, const size_t*, T*, S);
#define DECLARE_BOTH(T, S, SUFFIX) DECLARE(T, S, SUFFIX##_u32) DECLARE(T, S, SUFFIX##_u64)
DECLARE_BOTH(float, float, f32)
DECLARE_BOTH(double, double, f64)
DECLARE_BOTH(__half, float, f16)
DECLARE_BOTH(__nv_bfloat16, float, bf16)

// A copy of `bytes` (or `len` bytes of 0xA5) at a 256-byte boundary.
struct Buf {
    std::vector<unsigned char> raw;
    unsigned char* p;
    Buf(const std::vector<unsigned char>& bytes, size_t len = 0)
        : raw(bytes.size() + len + 256, 0xA5), p(raw.data() + (256 - (uintptr_t)raw.data() % 256) % 256) {
        memcpy(p, bytes.data(), bytes.size());
    }
    // Poisons all but bytes [from, to) of p.
    void keep(size_t from, size_t to) {
        ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size());
        ASAN_POISON_MEMORY_REGION(raw.data(), p + from - raw.data());
        ASAN_POISON_MEMORY_REGION(p + to, raw.data() + raw.size() - (p + to));
    }
    ~Buf() { ASAN_UNPOISON_MEMORY_REGION(raw.data(), raw.size()); }
};

// Poisons all of b but the elements that view o of c addresses.
static void keep_view(Buf& b, const host::Case& c, const host::Operand& o) {
    size_t last = o.offset;
    for (size_t d = 0; d < c.dims.size(); d++) last += (c.dims[d] - 1) * o.strides[d];
    if (c.n > 0) b.keep(o.offset * c.size, (last + 1) * c.size);
}

template <typename T, typename S> struct Ops {
    void (*fwd)(size_t, size_t, const size_t*, const T*, T*, S);
    void (*bwd)(size_t, size_t, const size_t*, const T*, const T*, T*, S);
    void (*inplace)(size_t, size_t, const size_t*, T*, S);
};

template <typename T, typename S>
static std::vector<unsigned char> run(const host::Case& c, bool contiguous, unsigned grid, unsigned block,
                                      const host::Layouts& far, Ops<T, S> ops) {
    S a;
    const uint32_t a32 = (uint32_t)c.a32;
    memcpy(&a, sizeof a == 4 ? (const void*)&a32 : (const void*)&c.a64, sizeof a);
    std::vector<size_t> info = c.dims;
    const size_t nd = info.size();
    const std::vector<size_t>& sx = far.x ? far.x->strides : c.x.strides;
    const std::vector<size_t>& sdy = far.dy ? far.dy->strides : c.dy.strides;
    info.insert(info.end(), sx.begin(), sx.end());
    info.insert(info.end(), sdy.begin(), sdy.end());
    Buf x(c.x.storage), dy(c.dy.storage), out({}, c.n * c.size);
    keep_view(x, c, c.x);
    if (c.op == "bwd") keep_view(dy, c, c.dy);
    out.keep(0, c.n * c.size);
    T* px = far.x ? (T*)far.x->p : (T*)x.p + c.x.offset;
    const T* pdy = far.dy ? (const T*)far.dy->p : (const T*)dy.p + c.dy.offset;
    const size_t* pinfo = contiguous ? nullptr : info.data();
    gridDim = dim3{grid, 1, 1};
    blockDim = dim3{block, 1, 1};
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = uint3{b, 0, 0};
            threadIdx = uint3{t, 0, 0};
            if (c.op == "fwd") ops.fwd(c.n, nd, pinfo, px, (T*)out.p, a);
            else if (c.op == "bwd") ops.bwd(c.n, nd, pinfo, px, pdy, (T*)out.p, a);
            else ops.inplace(c.n, nd, pinfo, px, a);
        }
    const bool inplace = c.op == "inplace";
    if (inplace && far.x) return far.x->gather(c, c.x);
    const unsigned char* res = inplace ? x.p : out.p;
    x.keep(0, c.x.storage.size());
    return std::vector<unsigned char>(res, res + (inplace ? c.x.storage.size() : c.n * c.size));
}

#define OPS(T, S, SUFFIX)                                                                                  \
    (width == 64 ? Ops<T, S>{leaky_relu_fwd_##SUFFIX##_u64, leaky_relu_bwd_##SUFFIX##_u64,                 \
                             leaky_relu_inplace_##SUFFIX##_u64}                                            \
                 : Ops<T, S>{leaky_relu_fwd_##SUFFIX##_u32, leaky_relu_bwd_##SUFFIX##_u32,                 \
                             leaky_relu_inplace_##SUFFIX##_u32})

int main() {
    return host::serve([](const host::Case& c, std::istream& in) {
        unsigned contiguous, grid, block, width;
        in >> contiguous >> grid >> block >> width;
        if (width != 32 && width != 64) host::fail("index width must be 32 or 64");
        const host::Layouts far = host::read_layouts(in, c);
        if (c.dtype == "f32") return run(c, contiguous, grid, block, far, OPS(float, float, f32));
        if (c.dtype == "f64") return run(c, contiguous, grid, block, far, OPS(double, double, f64));
        if (c.dtype == "f16") return run(c, contiguous, grid, block, far, OPS(__half, float, f16));
        if (c.dtype != "bf16") host::fail("unknown dtype " + c.dtype);
        return run(c, contiguous, grid, block, far, OPS(__nv_bfloat16, float, bf16));
    });
}
