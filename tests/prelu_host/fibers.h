// Cooperating simulated GPU threads for the host runs of kernels/prelu.{cu,metal}: the threads of
// one block (CUDA) or threadgroup (Metal) run as fibers (ucontext) on one OS thread, one after
// another, each until it finishes or waits at a synchronisation point (a warp shuffle, a
// threadgroup barrier) that the others have not reached yet. Threads that never wait run to the
// end one by one, as in the LeakyReLU drivers. A synchronisation that can never complete (some
// thread waits for one that finished or waits elsewhere) stops the run with an error: on the GPU
// it would be undefined behaviour or a hang.
//
// Built with AddressSanitizer, every switch is announced to it (__sanitizer_*_switch_fiber), so
// that it tracks the fiber stacks.
#pragma once
#include <ucontext.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FIBERS_ASAN 1
#else
#define FIBERS_ASAN 0
#endif

namespace fibers {

[[noreturn]] inline void fail(const std::string &msg) {
    std::cerr << "driver: " << msg << std::endl;
    // _Exit: no exit handlers (LeakSanitizer's among them) on a fiber's stack.
    std::cout.flush();
    std::_Exit(2);
}

// Runs count threads of one block; `enter(t)` is called before thread t runs or resumes (it sets
// the simulated thread index), `body(t)` is the thread.
class Group {
   public:
    static Group *&current() {
        static Group *g = nullptr;
        return g;
    }

    // Runs body(0 .. count) to the end, resuming in ascending (down = false) or descending order.
    void run(unsigned count, bool down, std::function<void(unsigned)> enter, std::function<void(unsigned)> body) {
        enter_ = std::move(enter);
        body_ = std::move(body);
        threads_.resize(count);
        if (stacks_.size() < count) stacks_.resize(count);
        for (unsigned t = 0; t < count; t++) {
            Thread &f = threads_[t];
            f = Thread{};
            if (stacks_[t].empty()) stacks_[t].resize(kStack);
            if (getcontext(&f.ctx) != 0) fail("getcontext failed");
            f.ctx.uc_stack.ss_sp = stacks_[t].data();
            f.ctx.uc_stack.ss_size = stacks_[t].size();
            f.ctx.uc_link = &main_;
            makecontext(&f.ctx, (void (*)())entry, 1, (int)t);
        }
        Group *outer = current();
        current() = this;
        unsigned live = count;
        while (live > 0) {
            const uint64_t before = progress_;
            for (unsigned k = 0; k < count; k++) {
                const unsigned t = down ? count - 1 - k : k;
                if (threads_[t].done) continue;
                resume(t);
                if (threads_[t].done) live--;
            }
            if (live > 0 && progress_ == before) {
                fail("deadlock: every live thread waits at a shuffle or barrier that cannot complete");
            }
        }
        current() = outer;
    }

    // The simulated thread now running.
    unsigned self() const { return running_; }
    unsigned size() const { return (unsigned)threads_.size(); }
    bool done(unsigned t) const { return threads_[t].done; }

    // From a thread: returns once ready() holds, letting the others run meanwhile.
    void wait_until(const std::function<bool()> &ready) {
        while (!ready()) yield();
        progress_++;
    }

   private:
    static constexpr size_t kStack = 256 * 1024;
    struct Thread {
        ucontext_t ctx{};
        bool done = false;
        void *fake = nullptr;
    };

    static void entry(int t) {
        Group *g = current();
#if FIBERS_ASAN
        __sanitizer_finish_switch_fiber(nullptr, &g->main_bottom_, &g->main_size_);
#endif
        g->progress_++;
        g->body_((unsigned)t);
        g->threads_[t].done = true;
        g->progress_++;
#if FIBERS_ASAN
        // Last switch away from this fiber: ASan may drop its fake stack.
        __sanitizer_start_switch_fiber(nullptr, g->main_bottom_, g->main_size_);
#endif
        // Returning resumes uc_link, the scheduler.
    }

    void resume(unsigned t) {
        running_ = t;
        enter_(t);
        Thread &f = threads_[t];
#if FIBERS_ASAN
        __sanitizer_start_switch_fiber(&main_fake_, f.ctx.uc_stack.ss_sp, f.ctx.uc_stack.ss_size);
#endif
        if (swapcontext(&main_, &f.ctx) != 0) fail("swapcontext failed");
#if FIBERS_ASAN
        __sanitizer_finish_switch_fiber(main_fake_, nullptr, nullptr);
#endif
    }

    void yield() {
        Thread &f = threads_[running_];
#if FIBERS_ASAN
        __sanitizer_start_switch_fiber(&f.fake, main_bottom_, main_size_);
#endif
        if (swapcontext(&f.ctx, &main_) != 0) fail("swapcontext failed");
#if FIBERS_ASAN
        __sanitizer_finish_switch_fiber(f.fake, &main_bottom_, &main_size_);
#endif
    }

    std::vector<Thread> threads_;
    std::vector<std::vector<char>> stacks_;
    std::function<void(unsigned)> enter_, body_;
    ucontext_t main_{};
    unsigned running_ = 0;
    uint64_t progress_ = 0;
    void *main_fake_ = nullptr;
    const void *main_bottom_ = nullptr;
    size_t main_size_ = 0;
};

}  // namespace fibers
