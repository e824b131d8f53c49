/* An experiment of issue #18, target 1 (benches/README.md), never part of a product build:
 * several batches started inside ONE core execution context, through the core's internal
 * (exported, C++) ExecCtx and grpc_call_start_batch_and_execute. The public
 * grpc_call_start_batch opens and flushes an ExecCtx of its own per call, which is what makes
 * every unary reply its own sendmsg; this shows what sharing one context would give.
 * Needs the core's source tree for its internal headers (the same release as the library):
 *   S=/var/tmp/grpcore-vendored-target/grpc-src
 *   g++ -std=c++17 -O2 -c bench/c/execctx_experiment.cc -I$S -I$S/include -I$S/third_party/upb \
 *       -I$S/src/core/ext/upb-generated -o /tmp/execctx_experiment.o
 *   gcc -O2 -DEXECCTX_EXPERIMENT -c bench/c/bench_server.c $(pkg-config --cflags grpc) -o /tmp/bs.o
 *   mkdir -p /var/tmp/bench-c-execctx
 *   g++ -o /var/tmp/bench-c-execctx/bench_server_c /tmp/bs.o /tmp/execctx_experiment.o \
 *       $(pkg-config --libs grpc) -lpthread
 * then `bench_server_c --defer 2`.
 */
#include "src/core/lib/iomgr/exec_ctx.h"
#include "src/core/lib/iomgr/closure.h"
#include "src/core/lib/surface/call.h"

extern "C" {
typedef void (*exp_done_fn)(void* arg, int ok);
struct exp_closure {
  grpc_closure closure;
  exp_done_fn done;
  void* arg;
};
static void exp_run(void* arg, grpc_error_handle error) {
  auto* c = static_cast<exp_closure*>(arg);
  c->done(c->arg, error.ok());
  delete c;
}
// Runs fn(arg) inside one ExecCtx: what fn queues on the core is flushed once, at the end.
void exp_in_exec_ctx(void (*fn)(void*), void* arg) {
  grpc_core::ExecCtx exec_ctx;
  fn(arg);
}
int exp_start_batch_in_ctx(grpc_call* call, const grpc_op* ops, size_t n, exp_done_fn done, void* arg) {
  auto* c = new exp_closure{{}, done, arg};
  GRPC_CLOSURE_INIT(&c->closure, exp_run, c, nullptr);
  return grpc_call_start_batch_and_execute(call, ops, n, &c->closure);
}
}

