// Runs the entry points of kernels/leaky_relu.cu (compiled with shim.h) on simulated grids.
//
// Input (argv[1]), whitespace-separated tokens, numbers in decimal except bit patterns (hex):
//   case ID OP DTYPE ALPHA_BITS CONTIGUOUS RANK  dims[RANK]  x_strides[RANK]  [dy_strides[RANK]]
//        X_OFFSET DY_OFFSET  NX x_bits[NX]  NDY dy_bits[NDY]  NGRIDS (grid block)[NGRIDS]
// OP is fwd|bwd|inplace, DTYPE f16|bf16|f32|f64, ALPHA_BITS the slope argument's bits (f64 for
// f64, else f32); dy_strides only for bwd; CONTIGUOUS 1 passes info = nullptr. x and dy are
// whole storages; the kernel gets them from the offsets on.
// Output (stdout), per case and grid: `out ID GRID BLOCK N bits[N]` with the n outputs (fwd,
// bwd; unwritten elements keep the 0xA5 fill) or the whole x storage after the run (inplace).
// Threads run one after another: the kernels share nothing between threads.
#include "shim.h"
#include <stdio.h>
#include <stdlib.h>
#include <string>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define DECLARE(T, S, SUFFIX)                                                                            \
    extern "C" void leaky_relu_fwd_##SUFFIX(size_t, size_t, const size_t*, const T*, T*, S);             \
    extern "C" void leaky_relu_bwd_##SUFFIX(size_t, size_t, const size_t*, const T*, const T*, T*, S);   \
    extern "C" void leaky_relu_inplace_##SUFFIX(size_t, size_t, const size_t*, T*, S);
DECLARE(float, float, f32)
DECLARE(double, double, f64)
DECLARE(__half, float, f16)
DECLARE(__nv_bfloat16, float, bf16)

static unsigned long long next(FILE* f, bool hex = false) {
    unsigned long long v;
    if (fscanf(f, hex ? "%llx" : "%llu", &v) != 1) {
        fprintf(stderr, "driver: malformed case file\n");
        exit(2);
    }
    return v;
}

// A 256-byte aligned buffer, like a cudaMalloc allocation.
struct Buf {
    std::vector<unsigned char> raw;
    unsigned char* p;
    explicit Buf(size_t bytes) : raw(bytes + 256, 0xA5), p(raw.data() + (256 - (uintptr_t)raw.data() % 256) % 256) {}
};

template <typename T, typename S> struct Ops {
    void (*fwd)(size_t, size_t, const size_t*, const T*, T*, S);
    void (*bwd)(size_t, size_t, const size_t*, const T*, const T*, T*, S);
    void (*inplace)(size_t, size_t, const size_t*, T*, S);
};

template <typename T, typename S, typename U>
static void run(FILE* f, const std::string& id, const std::string& op, Ops<T, S> ops) {
    const unsigned long long abits = next(f, true);
    const uint32_t abits32 = (uint32_t)abits;
    S a;
    memcpy(&a, sizeof a == 4 ? (const void*)&abits32 : (const void*)&abits, sizeof a);
    const bool contiguous = next(f) != 0;
    const size_t nd = next(f);
    std::vector<size_t> info;
    for (size_t i = 0; i < nd * (op == "bwd" ? 3 : 2); ++i) info.push_back(next(f));
    size_t n = 1;
    for (size_t i = 0; i < nd; ++i) n *= info[i];
    const size_t xoff = next(f), dyoff = next(f);
    std::vector<U> storage[2];
    for (auto& s : storage) {
        s.resize(next(f));
        for (auto& v : s) v = (U)next(f, true);
    }
    const size_t ngrids = next(f);
    for (size_t g = 0; g < ngrids; ++g) {
        const unsigned grid = (unsigned)next(f), block = (unsigned)next(f);
        Buf x(storage[0].size() * sizeof(U)), dy(storage[1].size() * sizeof(U)), out(n * sizeof(U));
        memcpy(x.p, storage[0].data(), storage[0].size() * sizeof(U));
        memcpy(dy.p, storage[1].data(), storage[1].size() * sizeof(U));
        const T* px = (const T*)x.p + xoff;
        const T* pdy = (const T*)dy.p + dyoff;
        const size_t* pinfo = contiguous ? nullptr : info.data();
        gridDim = dim3{grid, 1, 1};
        blockDim = dim3{block, 1, 1};
        for (unsigned b = 0; b < grid; ++b)
            for (unsigned t = 0; t < block; ++t) {
                blockIdx = uint3{b, 0, 0};
                threadIdx = uint3{t, 0, 0};
                if (op == "fwd") ops.fwd(n, nd, pinfo, px, (T*)out.p, a);
                else if (op == "bwd") ops.bwd(n, nd, pinfo, px, pdy, (T*)out.p, a);
                else ops.inplace(n, nd, pinfo, (T*)x.p + xoff, a);
            }
        const U* res = op == "inplace" ? (const U*)x.p : (const U*)out.p;
        const size_t len = op == "inplace" ? storage[0].size() : n;
        printf("out %s %u %u %zu", id.c_str(), grid, block, len);
        for (size_t i = 0; i < len; ++i) printf(" %llx", (unsigned long long)res[i]);
        printf("\n");
    }
}

#define OPS(SUFFIX) leaky_relu_fwd_##SUFFIX, leaky_relu_bwd_##SUFFIX, leaky_relu_inplace_##SUFFIX

int main(int argc, char** argv) {
    FILE* f = argc > 1 ? fopen(argv[1], "r") : nullptr;
    if (!f) {
        fprintf(stderr, "usage: driver CASE_FILE\n");
        return 2;
    }
    char word[16], id[64], op[16], dtype[16];
    while (fscanf(f, "%15s", word) == 1) {
        if (std::string(word) != "case" || fscanf(f, "%63s %15s %15s", id, op, dtype) != 3) {
            fprintf(stderr, "driver: malformed case file\n");
            return 2;
        }
        const std::string d = dtype;
        if (d == "f32") run<float, float, uint32_t>(f, id, op, Ops<float, float>{OPS(f32)});
        else if (d == "f64") run<double, double, uint64_t>(f, id, op, Ops<double, double>{OPS(f64)});
        else if (d == "f16") run<__half, float, uint16_t>(f, id, op, Ops<__half, float>{OPS(f16)});
        else if (d == "bf16") run<__nv_bfloat16, float, uint16_t>(f, id, op, Ops<__nv_bfloat16, float>{OPS(bf16)});
        else {
            fprintf(stderr, "driver: unknown dtype %s\n", dtype);
            return 2;
        }
    }
    return 0;
}
