// grpcore-sys feature `batch-scope`: start several batches inside ONE core execution context.
//
// Why: the public grpc_call_start_batch opens and flushes an ExecCtx of its own, so every
// batch that sends (a unary reply, say) is its own transport write; batches started inside
// one ExecCtx share the transport's combiner round and go out in one write
// (benches/README.md, "Issue #18, target 1").
//
// This file uses the core's INTERNAL C++ headers and two functions that the shared library
// exports but no public header declares (grpc_call_start_batch_and_execute,
// grpc_cq_begin_op / grpc_cq_end_op). It is therefore bound to the exact core release whose
// source it is compiled against; build.rs refuses a source tree whose version differs from
// the library's, and matches the library's NDEBUG setting (it changes grpc_closure's layout).
//
// Completion protocol (mirrors FilterStackCall::StartBatch in src/core/lib/surface/call.cc
// for a queue-notified batch):
//   1. grpc_cq_begin_op(cq, tag) before the batch starts: the queue counts one pending
//      operation and cannot finish shutting down until it is ended.
//   2. grpc_call_start_batch_and_execute(call, ops, n, &closure): the call takes its own
//      "completion" reference for the batch and runs `closure` when the batch is done.
//   3. The closure ends the op with grpc_cq_end_op(cq, tag, error, free, box, &box->storage):
//      the completion comes out of grpc_completion_queue_next as an ordinary event with the
//      caller's tag. The storage lives in the heap box until the queue calls `free` after
//      the event was taken, which deletes the box.
//   If the call refuses the batch (a call error), it runs no closure and takes no reference,
//   so the op is ended here at once with a failure: no begin_op is ever left open.

#include "src/core/lib/iomgr/closure.h"
#include "src/core/lib/iomgr/error.h"
#include "src/core/lib/iomgr/exec_ctx.h"
#include "src/core/lib/surface/call.h"
#include "src/core/lib/surface/completion_queue.h"

namespace {

// One deferred batch's completion: the closure the call runs and the queue storage of the
// event it becomes. Freed by the queue once the event has been taken.
struct Completion {
  grpc_closure closure;
  grpc_completion_queue* cq;
  void* tag;
  grpc_cq_completion storage;
};

void FreeCompletion(void* arg, grpc_cq_completion* /*storage*/) {
  delete static_cast<Completion*>(arg);
}

void OnBatchDone(void* arg, grpc_error_handle error) {
  auto* c = static_cast<Completion*>(arg);
  grpc_cq_end_op(c->cq, c->tag, error, FreeCompletion, c, &c->storage);
}

}  // namespace

extern "C" {

// Runs fn(arg) inside one ApplicationCallbackExecCtx + ExecCtx: whatever fn starts on the
// core is flushed once, when this returns. fn must not unwind (grpcore's fn catches panics).
void grpcore_batch_scope_run(void (*fn)(void*), void* arg) noexcept {
  grpc_core::ApplicationCallbackExecCtx callback_exec_ctx;
  grpc_core::ExecCtx exec_ctx;
  fn(arg);
}

// Starts `ops` on `call` so that it completes as an event with `tag` on `cq` (the call's
// queue), without flushing: call it inside grpcore_batch_scope_run. Returns the call's
// error code; on an error the event still comes, with success = 0, so the tag is always
// delivered exactly once. The caller must keep `cq` from being shut down during this call
// and the call alive (one reference) during this call.
grpc_call_error grpcore_start_batch_deferred(grpc_call* call, grpc_completion_queue* cq,
                                             const grpc_op* ops, size_t nops, void* tag) noexcept {
  if (!grpc_cq_begin_op(cq, tag)) {
    // Only when the queue is shutting down, which the caller rules out; nothing was begun,
    // so there is nothing to end.
    return GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN;
  }
  auto* c = new Completion;
  c->cq = cq;
  c->tag = tag;
  GRPC_CLOSURE_INIT(&c->closure, OnBatchDone, c, nullptr);
  grpc_call_error rc = grpc_call_start_batch_and_execute(call, ops, nops, &c->closure);
  if (rc != GRPC_CALL_OK) {
    grpc_cq_end_op(cq, tag, GRPC_ERROR_CREATE("grpcore: the core refused a deferred batch"),
                   FreeCompletion, c, &c->storage);
  }
  return rc;
}

}  // extern "C"
