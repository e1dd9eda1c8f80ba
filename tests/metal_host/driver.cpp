// Runs kernels/leaky_relu.metal on the host over a simulated Metal grid.
//   driver < CASES > ANSWERS
// CASES (written by tests/host/mod.rs), whitespace separated, one case after another:
//   case OP DTYPE ALPHA_F64_HEX ALPHA_F32_HEX NDIMS DIMS...
//   operand OFFSET STRIDES(NDIMS)... LEN HEX...        (x; then dy for OP = bwd)
//   launch KERNEL GROUPS WIDTH
// ANSWERS get one line per case: the count, then the output bits in hex (fwd/bwd: the contiguous
// result; inplace: x's whole storage afterwards). Every case runs twice, threads in ascending
// and in descending order; results that differ (a race) fail the run.
#include <iostream>
#include <vector>

#include <metal_stdlib>  // tests/metal_host/include: the shim
#include "leaky_relu.metal"

namespace {

struct Operand {
    size_t offset = 0;
    std::vector<size_t> strides;
    std::vector<unsigned char> storage;
};

[[noreturn]] void fail(const std::string &msg) {
    std::cerr << "driver: " << msg << std::endl;
    std::exit(2);
}

size_t dtype_size(const std::string &dtype) {
    if (dtype == "f32") return 4;
    if (dtype == "f16" || dtype == "bf16") return 2;
    fail("unknown dtype " + dtype);
}

void expect(std::istream &in, const char *word) {
    std::string w;
    if (!(in >> w) || w != word) fail(std::string("expected '") + word + "', got '" + w + "'");
}

Operand read_operand(std::istream &in, size_t ndims, size_t size) {
    Operand o;
    expect(in, "operand");
    size_t len;
    in >> o.offset;
    o.strides.resize(ndims);
    for (auto &s : o.strides) in >> s;
    in >> len;
    o.storage.resize(len * size);
    for (size_t i = 0; i < len; i++) {
        unsigned long long v;
        in >> std::hex >> v >> std::dec;
        std::memcpy(&o.storage[i * size], &v, size);  // little endian, as the GPU
    }
    if (!in) fail("truncated operand");
    return o;
}

// One launch of GROUPS * WIDTH threads in the given order over a copy of `out`, bound at byte
// `y_offset`; returns the output buffer.
std::vector<unsigned char> run(const Thread &k, Launch l, size_t threads, bool descending,
                               std::vector<unsigned char> out, size_t y_offset) {
    l.y = out.data() + y_offset;
    for (size_t t = 0; t < threads; t++) k(l, (uint)(descending ? threads - 1 - t : t));
    return out;
}

}  // namespace

int main() {
    std::ios::sync_with_stdio(false);
    std::istream &in = std::cin;
    std::ostream &out = std::cout;
    std::string word;
    size_t cases = 0;
    while (in >> word) {
        if (word != "case") fail("expected 'case', got '" + word + "'");
        std::string op, dtype, name;
        unsigned long long a64, a32;
        size_t ndims, groups, width;
        in >> op >> dtype >> std::hex >> a64 >> a32 >> std::dec >> ndims;
        std::vector<size_t> dims(ndims);
        for (auto &d : dims) in >> d;
        const size_t size = dtype_size(dtype);
        Operand x = read_operand(in, ndims, size), dy;
        if (op == "bwd") dy = read_operand(in, ndims, size);
        expect(in, "launch");
        in >> name >> groups >> width;
        if (!in) fail("truncated case");
        auto k = kernels().find(name);
        if (k == kernels().end()) fail("the shader exports no kernel " + name);

        // What the host binds: scalars by value, dims/strides arrays, buffers at byte offsets.
        // Contiguous kernels get one-element dims/strides arrays, as src/metal.rs binds them.
        size_t n = 1;
        for (size_t d : dims) n *= d;
        const bool strided = name.size() > 8 && name.compare(name.size() - 8, 8, "_strided") == 0;
        std::vector<size_t> bdims = strided ? dims : std::vector<size_t>{n};
        std::vector<size_t> one{1};
        Launch l;
        l.dim = n;
        l.num_dims = bdims.size();
        l.dims = bdims.data();
        l.x_strides = strided ? x.strides.data() : one.data();
        l.dy_strides = strided && op == "bwd" ? dy.strides.data() : one.data();
        l.a = metal::as_type<float>((uint)a32);
        l.x = x.storage.data() + x.offset * size;
        l.dy = op == "bwd" ? dy.storage.data() + dy.offset * size : nullptr;

        // In place, the output buffer is x's storage; else a new one filled with a sentinel
        // (elements never written show up).
        const bool inplace = op == "inplace";
        const auto init = inplace ? x.storage : std::vector<unsigned char>(n * size, 0xA5);
        const size_t y_offset = inplace ? x.offset * size : 0;
        auto up = run(k->second, l, groups * width, false, init, y_offset);
        auto down = run(k->second, l, groups * width, true, init, y_offset);
        if (up != down) {
            fail("case " + std::to_string(cases) + " (" + name + "): thread order changes the result");
        }
        const size_t count = up.size() / size;
        out << count;
        for (size_t i = 0; i < count; i++) {
            unsigned long long v = 0;
            std::memcpy(&v, &up[i * size], size);
            out << ' ' << std::hex << v << std::dec;
        }
        out << '\n';
        cases++;
    }
    std::cerr << "driver: " << cases << " cases, " << kernels().size() << " kernels exported"
              << std::endl;
    return 0;
}
