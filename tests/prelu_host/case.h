// The PReLU case file of tests/prelu_host.rs, read by the host drivers (cuda_driver.cpp,
// metal_driver.cpp): whitespace separated,
//   case OP DTYPE N CHANNELS INNER          OP fwd or bwd; N x's elements; (CHANNELS, INNER) as
//                                           base::check_prelu gives them
//   operand NDIMS DIMS... OFFSET STRIDES... LEN HEX...   x, then the weight, then dy (bwd): each
//                                           operand's view and its whole storage
//   launch ...                              one or more, in the backend's words
// `serve` answers every launch with one line: the output's element count and bits in hex (fwd: y,
// n elements; bwd: dx ++ dweight, n + CHANNELS elements; never-written elements show the fill).
#pragma once
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace cases {

[[noreturn]] inline void fail(const std::string &msg) {
    std::cerr << "driver: " << msg << std::endl;
    // _Exit: no exit handlers (LeakSanitizer's among them) on a fiber's stack.
    std::cout.flush();
    std::_Exit(2);
}

struct Operand {
    std::vector<size_t> dims, strides;
    size_t offset = 0, n = 1;  // start offset and element count of the view
    std::vector<unsigned char> storage;
};

struct Case {
    std::string op, dtype;
    size_t size = 0, n = 0, channels = 0, inner = 0;
    Operand x, w, dy;  // dy only for bwd
    size_t out_len() const { return op == "bwd" ? n + channels : n; }
};

inline Operand read_operand(std::istream &in, size_t size) {
    Operand o;
    std::string word;
    size_t nd, len;
    if (!(in >> word) || word != "operand") fail("expected 'operand', got '" + word + "'");
    in >> nd;
    o.dims.resize(nd);
    o.strides.resize(nd);
    for (auto &d : o.dims) o.n *= (in >> d, d);
    in >> o.offset;
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

// The byte range [from, to) of o's storage that the view addresses (empty view: 0, 0).
inline void view_bytes(const Operand &o, size_t size, size_t &from, size_t &to) {
    if (o.n == 0) {
        from = to = 0;
        return;
    }
    size_t last = o.offset;
    for (size_t d = 0; d < o.dims.size(); d++) last += (o.dims[d] - 1) * o.strides[d];
    from = o.offset * size;
    to = (last + 1) * size;
}

// Reads the case file; `launch(case, stdin)` reads the rest of a launch line and returns the
// output's bytes.
template <typename F>
int serve(F launch) {
    std::ios::sync_with_stdio(false);
    std::string word;
    Case c;
    size_t launches = 0;
    while (std::cin >> word) {
        if (word == "case") {
            c = Case{};
            std::cin >> c.op >> c.dtype >> c.n >> c.channels >> c.inner;
            if (c.op != "fwd" && c.op != "bwd") fail("unknown op " + c.op);
            c.size = c.dtype == "f64" ? 8 : c.dtype == "f32" ? 4 : 2;
            c.x = read_operand(std::cin, c.size);
            c.w = read_operand(std::cin, c.size);
            if (c.op == "bwd") c.dy = read_operand(std::cin, c.size);
            if (c.x.n != c.n) fail("x's dims do not give N elements");
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

}  // namespace cases
