// Runs kernels/leaky_relu.metal on the host over a simulated Metal grid: `driver < CASES`, the
// case file of tests/host/mod.rs (see ../host/case_file.h) with launch lines
// `launch KERNEL GROUPS WIDTH ORDER LAYOUTS`, ORDER `up` or `down`: the threads in ascending or
// descending order (a race shows up as a difference); LAYOUTS `near` or `far ...` (see
// host::read_layouts). Apple GPUs flush f32 subnormals to zero in
// arithmetic and comparisons: the driver runs the shader with the CPU's flush modes on (x86 MXCSR
// FTZ+DAZ, aarch64 FPCR.FZ) on its one thread, and checks that they are in force.
#include "../host/case_file.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <metal_stdlib>  // tests/metal_host/include: the shim
#include "leaky_relu.metal"

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
    volatile float tiny = 1e-30f, sub = 1e-40f, one = 1.0f;
    if (!(tiny * tiny == 0.0f && sub == 0.0f && !(sub > 0.0f) && sub * one == 0.0f)) {
        host::fail("the CPU does not flush subnormals: the run would not model the GPU");
    }
}

int main() {
    flush_subnormals();
    return host::serve([](const host::Case &c, std::istream &in) {
        std::string name, order;
        size_t groups, width;
        in >> name >> groups >> width >> order;
        const host::Layouts far = host::read_layouts(in, c);
        auto k = kernels().find(name);
        if (k == kernels().end()) host::fail("the shader exports no kernel " + name);

        // What the host binds: scalars by value, dims/strides arrays, buffers at byte offsets.
        // Contiguous kernels get one-element dims/strides arrays, as src/metal.rs binds them.
        const bool strided = name.find("_strided_u") != std::string::npos;
        const bool bwd = c.op == "bwd", inplace = c.op == "inplace";
        const std::vector<size_t> dims = strided ? c.dims : std::vector<size_t>{c.n}, one{1};
        Launch l;
        l.dim = c.n;
        l.num_dims = dims.size();
        l.dims = dims.data();
        const std::vector<size_t> &sx = far.x ? far.x->strides : c.x.strides;
        const std::vector<size_t> &sdy = far.dy ? far.dy->strides : c.dy.strides;
        l.x_strides = strided ? sx.data() : one.data();
        l.dy_strides = strided && bwd ? sdy.data() : one.data();
        l.a = (uint)c.a32;
        l.x = far.x ? far.x->p : c.x.storage.data() + c.x.offset * c.size;
        l.dy = far.dy ? far.dy->p : bwd ? c.dy.storage.data() + c.dy.offset * c.size : nullptr;

        // In place, the output buffer is (a copy of) x's storage; else a new one filled with a
        // sentinel (elements never written show up).
        auto y = inplace ? c.x.storage : std::vector<unsigned char>(c.n * c.size, 0xA5);
        l.y = inplace && far.x ? far.x->p : y.data() + (inplace ? c.x.offset * c.size : 0);
        const size_t threads = groups * width;
        for (size_t t = 0; t < threads; t++) k->second(l, (uint)(order == "down" ? threads - 1 - t : t));
        return inplace && far.x ? far.x->gather(c, c.x) : y;
    });
}
