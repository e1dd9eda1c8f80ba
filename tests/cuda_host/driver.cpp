// Runs the entry points of kernels/leaky_relu.cu (compiled with shim.h) on simulated grids:
// `driver < CASES`, the case file of tests/host/mod.rs (see ../host/case_file.h) with launch
// lines `launch CONTIGUOUS GRID BLOCK` (CONTIGUOUS 1 passes info = nullptr). Operands live in
// 256-byte aligned buffers, like cudaMalloc allocations; the kernel gets them from the offsets on.
// Threads run one after another: the kernels share nothing between threads.
#include "../host/case_file.h"

#include "shim.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define DECLARE(T, S, SUFFIX)                                                                          \
    extern "C" void leaky_relu_fwd_##SUFFIX(size_t, size_t, const size_t*, const T*, T*, S);           \
    extern "C" void leaky_relu_bwd_##SUFFIX(size_t, size_t, const size_t*, const T*, const T*, T*, S); \
    extern "C" void leaky_relu_inplace_##SUFFIX(size_t, size_t, const size_t*, T*, S);
DECLARE(float, float, f32)
DECLARE(double, double, f64)
DECLARE(__half, float, f16)
DECLARE(__nv_bfloat16, float, bf16)

// A copy of `bytes` (or `len` bytes of 0xA5) at a 256-byte boundary.
struct Buf {
    std::vector<unsigned char> raw;
    unsigned char* p;
    Buf(const std::vector<unsigned char>& bytes, size_t len = 0)
        : raw(bytes.size() + len + 256, 0xA5), p(raw.data() + (256 - (uintptr_t)raw.data() % 256) % 256) {
        memcpy(p, bytes.data(), bytes.size());
    }
};

template <typename T, typename S> struct Ops {
    void (*fwd)(size_t, size_t, const size_t*, const T*, T*, S);
    void (*bwd)(size_t, size_t, const size_t*, const T*, const T*, T*, S);
    void (*inplace)(size_t, size_t, const size_t*, T*, S);
};

template <typename T, typename S>
static std::vector<unsigned char> run(const host::Case& c, bool contiguous, unsigned grid, unsigned block,
                                      Ops<T, S> ops) {
    S a;
    const uint32_t a32 = (uint32_t)c.a32;
    memcpy(&a, sizeof a == 4 ? (const void*)&a32 : (const void*)&c.a64, sizeof a);
    std::vector<size_t> info = c.dims;
    const size_t nd = info.size();
    info.insert(info.end(), c.x.strides.begin(), c.x.strides.end());
    info.insert(info.end(), c.dy.strides.begin(), c.dy.strides.end());
    Buf x(c.x.storage), dy(c.dy.storage), out({}, c.n * c.size);
    T* px = (T*)x.p + c.x.offset;
    const T* pdy = (const T*)dy.p + c.dy.offset;
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
    const unsigned char* res = inplace ? x.p : out.p;
    return std::vector<unsigned char>(res, res + (inplace ? c.x.storage.size() : c.n * c.size));
}

#define OPS(SUFFIX) {leaky_relu_fwd_##SUFFIX, leaky_relu_bwd_##SUFFIX, leaky_relu_inplace_##SUFFIX}

int main() {
    return host::serve([](const host::Case& c, std::istream& in) {
        unsigned contiguous, grid, block;
        in >> contiguous >> grid >> block;
        if (c.dtype == "f32") return run<float, float>(c, contiguous, grid, block, OPS(f32));
        if (c.dtype == "f64") return run<double, double>(c, contiguous, grid, block, OPS(f64));
        if (c.dtype == "f16") return run<__half, float>(c, contiguous, grid, block, OPS(f16));
        if (c.dtype != "bf16") host::fail("unknown dtype " + c.dtype);
        return run<__nv_bfloat16, float>(c, contiguous, grid, block, OPS(bf16));
    });
}
