// The case file of tests/host/mod.rs, shared by the host drivers (tests/*_host/driver.cpp):
// `serve` reads the cases from stdin and answers every `launch` line with one line on stdout,
// the output's element count and bits in hex.
#pragma once
#include <cstdlib>
#include <cstring>
#include <iostream>
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
