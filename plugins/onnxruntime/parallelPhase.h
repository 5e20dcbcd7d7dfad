/*
 * One parallel phase of the CPU op: runs body(i) for every i in [0, total) on a ParallelRunner and rethrows the first
 * exception any item threw on the calling thread (later items are skipped once one failed). Shared by the float and
 * the INT8 op.
 */
#pragma once

#include "sparseBlockCpu.h"

#include <atomic>
#include <exception>
#include <mutex>

namespace smsr::cpu
{

template <typename F>
void runPhase(ParallelRunner& runner, size_t total, F&& body)
{
    if (total == 0)
        return;
    struct Ctx
    {
        F* body;
        std::atomic<bool> failed{false};
        std::mutex m;
        std::exception_ptr error;
    } ctx;
    ctx.body = &body;
    runner.run(total,
        [](void* data, size_t i) {
            auto* c = static_cast<Ctx*>(data);
            if (c->failed.load(std::memory_order_relaxed))
                return;
            try
            {
                (*c->body)(i);
            }
            catch (...)
            {
                std::lock_guard<std::mutex> lock(c->m);
                if (!c->error)
                    c->error = std::current_exception();
                c->failed = true;
            }
        },
        &ctx);
    if (ctx.error)
        std::rethrow_exception(ctx.error);
}

} // namespace smsr::cpu
