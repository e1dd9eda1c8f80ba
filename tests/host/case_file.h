// The case file of tests/host/mod.rs, shared by the host drivers (tests/*_host/driver.cpp):
// `serve` reads the cases from stdin and answers every `launch` line with one line on stdout,
// the output's element count and bits in hex.
#pragma once
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace host {

[[noreturn]] inline void fail(const std::string &msg) {
    std::cerr << "driver: " << msg << std::endl;
    std::exit(2);
}

// A view as the kernel gets it: the start offset (elements), strides and the whole storage.
struct Operand {
    size_t offset = 0;
    std::vector<size_t> strides;
    std::vector<unsigned char> storage;
};

struct Case {
    std::string op, dtype;
    unsigned long long a64 = 0, a32 = 0;  // the slope's f64 and f32 bits
    size_t size = 0, n = 1;               // bytes per element, elements
    std::vector<size_t> dims;
    Operand x, dy;  // dy only for op == "bwd"
};

inline Operand read_operand(std::istream &in, const Case &c) {
    Operand o;
    std::string w;
    size_t len;
    if (!(in >> w) || w != "operand") fail("expected 'operand', got '" + w + "'");
    in >> o.offset;
    o.strides.resize(c.dims.size());
    for (auto &s : o.strides) in >> s;
    in >> len;
    o.storage.resize(len * c.size);
    for (size_t i = 0; i < len; i++) {
        unsigned long long v;
        in >> std::hex >> v >> std::dec;
        std::memcpy(&o.storage[i * c.size], &v, c.size);  // little endian, as the GPU
    }
    if (!in) fail("truncated operand");
    return o;
}

// The storage offset of logical (row-major) element i of c's dims through `strides`.
inline size_t offset_of(const Case &c, const std::vector<size_t> &strides, size_t i) {
    size_t offset = 0;
    for (size_t d = c.dims.size(); d-- > 0;) {
        offset += i % c.dims[d] * strides[d];
        i /= c.dims[d];
    }
    return offset;
}

// The elements of view o of c laid out again through other strides, from offset 0, in an
// anonymous mapping reserved but not committed: strides that reach past 2^32 elements (views no
// test could allocate) touch only the pages that hold elements. Needs an OS that reserves
// address space lazily (Linux with its default overcommit, macOS): up to a few hundred GiB.
struct Far {
    std::vector<size_t> strides;
    unsigned char *p = nullptr;
    size_t bytes = 0;
    Far(const Case &c, const Operand &o, std::vector<size_t> s) : strides(std::move(s)) {
        if (c.n == 0 || strides.size() != c.dims.size()) fail("far layouts need elements and one stride per dim");
        size_t last = 0;
        for (size_t d = 0; d < c.dims.size(); d++) last += (c.dims[d] - 1) * strides[d];
        bytes = (last + 1) * c.size;
        void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) fail("cannot reserve " + std::to_string(bytes) + " bytes");
        p = static_cast<unsigned char *>(m);
        for (size_t i = 0; i < c.n; i++)
            std::memcpy(p + offset_of(c, strides, i) * c.size, &o.storage[(o.offset + offset_of(c, o.strides, i)) * c.size],
                        c.size);
    }
    Far(const Far &) = delete;
    Far &operator=(const Far &) = delete;
    ~Far() { munmap(p, bytes); }
    // o's storage with the view's elements read back from here (after an in-place run).
    std::vector<unsigned char> gather(const Case &c, const Operand &o) const {
        std::vector<unsigned char> r = o.storage;
        for (size_t i = 0; i < c.n; i++)
            std::memcpy(&r[(o.offset + offset_of(c, o.strides, i)) * c.size], p + offset_of(c, strides, i) * c.size, c.size);
        return r;
    }
};

// The end of a launch line: `near` (the operands as the case gives them) or `far` and new
// strides for x (then dy, in backward): x and dy relaid out as Far views.
struct Layouts {
    std::unique_ptr<Far> x, dy;
};
inline Layouts read_layouts(std::istream &in, const Case &c) {
    std::string w;
    in >> w;
    Layouts r;
    if (w == "near") return r;
    if (w != "far") fail("expected 'near' or 'far', got '" + w + "'");
    auto strides = [&] {
        std::vector<size_t> s(c.dims.size());
        for (auto &e : s) in >> e;
        return s;
    };
    r.x.reset(new Far(c, c.x, strides()));
    if (c.op == "bwd") r.dy.reset(new Far(c, c.dy, strides()));
    return r;
}

// Reads the case file; `launch(case, stdin)` reads the rest of a launch line and returns the
// output buffer (fwd/bwd: the n results; inplace: x's whole storage).
template <typename F>
int serve(F launch) {
    std::ios::sync_with_stdio(false);
    std::string word;
    Case c;
    size_t launches = 0;
    while (std::cin >> word) {
        if (word == "case") {
            c = Case{};
            size_t ndims;
            std::cin >> c.op >> c.dtype >> std::hex >> c.a64 >> c.a32 >> std::dec >> ndims;
            c.size = c.dtype == "f64" ? 8 : c.dtype == "f32" ? 4 : 2;
            c.dims.resize(ndims);
            for (auto &d : c.dims) c.n *= (std::cin >> d, d);
            c.x = read_operand(std::cin, c);
            if (c.op == "bwd") c.dy = read_operand(std::cin, c);
            continue;
        }
        if (word != "launch" || c.size == 0) fail("expected 'case' or 'launch', got '" + word + "'");
        const std::vector<unsigned char> y = launch(c, std::cin);
        if (!std::cin) fail("truncated launch");
        const size_t count = y.size() / c.size;
        std::cout << count << std::hex;
        for (size_t i = 0; i < count; i++) {
            unsigned long long v = 0;
            std::memcpy(&v, &y[i * c.size], c.size);
            std::cout << ' ' << v;
        }
        std::cout << std::dec << '\n';
        launches++;
    }
    std::cerr << "driver: " << launches << " launches" << std::endl;
    return 0;
}

}  // namespace host
