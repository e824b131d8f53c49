/* BenchmarkService on the raw gRPC C core: the floor a binding can reach with the same
 * core and filter stack. Uses the fastest path the C API offers:
 *
 *  - every method is registered; UnaryCall and StreamingFromServer read their request
 *    with the call (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER);
 *  - a unary reply is one batch: initial metadata, message, status, close;
 *  - ping-pong sends each response and receives the next request in one batch;
 *  - K threads, each polling its own completion queue with S slots per method posted
 *    on it, replaced as soon as they are used.
 *
 *   bench_server_c [--port N] [--cq-threads K] [--slots S] [--arg key=integer]...
 *
 * Experiments on how replies share transport writes (issue #18; benches/syscalls):
 *   --pollers-per-cq P   P threads poll each completion queue (default 1)
 *   --write-hint 1       unary replies carry GRPC_WRITE_BUFFER_HINT on their message
 *   --defer 1            unary reply batches are held until the queue is drained (a
 *                        zero-timeout poll comes back empty), then started back to back
 *   --defer 2            the same, started inside one core execution context (a build with
 *                        -DEXECCTX_EXPERIMENT and execctx_experiment.cc only)
 *   --callback 1         unary requests arrive on a callback-type completion queue: the
 *                        reply batch is started from the core's functor (an inlineable one),
 *                        i.e. from inside the core's own execution context
 *
 * Prints "listening on PORT", then serves until killed. Built by benches/compare:
 *   gcc -O2 bench_server.c $(pkg-config --cflags --libs grpc) -lpthread
 */
#define _GNU_SOURCE /* RTLD_DEFAULT, for bench_common.h */
#include <pthread.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "bench_common.h"

/* All five methods are registered, as every other server registers them: each posted slot
 * costs every call a little, so the same service must post the same number of slots. */
enum { M_UNARY, M_STREAMING, M_FROM_SERVER, M_FROM_CLIENT, M_BOTH_WAYS, M_COUNT };
static const char* const METHOD_PATHS[M_COUNT] = {
    "/grpc.testing.BenchmarkService/UnaryCall",
    "/grpc.testing.BenchmarkService/StreamingCall",
    "/grpc.testing.BenchmarkService/StreamingFromServer",
    "/grpc.testing.BenchmarkService/StreamingFromClient",
    "/grpc.testing.BenchmarkService/StreamingBothWays",
};

static grpc_server* server;
static void* methods[M_COUNT];
static grpc_slice empty_details;
static int write_hint;      /* --write-hint */
static int defer_replies;   /* --defer */
static grpc_completion_queue* callback_cq; /* --callback */

/* Every tag starts with the function that handles its event. */
/* A tag is also a callback-queue functor (the functor first, so one pointer serves both). */
typedef struct tag {
  grpc_completion_queue_functor functor;
  void (*done)(struct tag* t, int ok);
} tag;

static void start(grpc_call* call, const grpc_op* ops, size_t n, tag* t) {
  grpc_call_error e = grpc_call_start_batch(call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_server_c: grpc_call_start_batch failed: %d\n", e);
    abort();
  }
}

/* --defer: unary reply batches waiting for the end of the drain round (one thread per
 * queue only, checked in main). */
typedef struct {
  grpc_call* call;
  grpc_op ops[4];
  tag* t;
} deferred;
static __thread deferred* deferred_list;
static __thread size_t deferred_len, deferred_cap;

#ifdef EXECCTX_EXPERIMENT
/* --defer 2, in an experiment build only (execctx_experiment.cc says how to make it): the
 * held batches are started inside one core execution context through the core's internal
 * C++ API, which the public grpc_call_start_batch does not allow; each completion runs the
 * tag's handler from inside the core instead of coming out of the queue. */
void exp_in_exec_ctx(void (*fn)(void*), void* arg);
int exp_start_batch_in_ctx(grpc_call* call, const grpc_op* ops, size_t n, void (*done)(void*, int),
                           void* arg);
static void exp_done(void* arg, int ok) {
  tag* t = arg;
  t->done(t, ok);
}
static void exp_start_all(void* arg) {
  (void)arg;
  for (size_t i = 0; i < deferred_len; i++) {
    if (exp_start_batch_in_ctx(deferred_list[i].call, deferred_list[i].ops, 4, exp_done, deferred_list[i].t) != 0) {
      abort();
    }
  }
}
#endif

static void start_deferred(void) {
#ifdef EXECCTX_EXPERIMENT
  if (defer_replies == 2) {
    exp_in_exec_ctx(exp_start_all, NULL);
    deferred_len = 0;
    return;
  }
#endif
  for (size_t i = 0; i < deferred_len; i++) {
    start(deferred_list[i].call, deferred_list[i].ops, 4, deferred_list[i].t);
  }
  deferred_len = 0;
}

/* --- request slots ------------------------------------------------------------------- */

typedef struct {
  tag t;
  int method;
  grpc_completion_queue* cq;
  grpc_call* call;
  gpr_timespec deadline;
  grpc_metadata_array metadata;
  grpc_byte_buffer* payload;
} slot;

static void slot_done(tag* t, int ok);

static void post(slot* s) {
  s->call = NULL;
  s->payload = NULL;
  grpc_metadata_array_init(&s->metadata);
  grpc_completion_queue* cq = (callback_cq && s->method == M_UNARY) ? callback_cq : s->cq;
  grpc_call_error e = grpc_server_request_registered_call(
      server, methods[s->method], &s->call, &s->deadline, &s->metadata,
      (s->method == M_UNARY || s->method == M_FROM_SERVER) ? &s->payload : NULL, cq, cq, s);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_server_c: request_registered_call failed: %d\n", e);
    abort();
  }
}

/* --- UnaryCall: one batch ------------------------------------------------------------ */

typedef struct {
  tag t;
  grpc_call* call;
  grpc_byte_buffer* response;
  int cancelled;
} unary_call;

static void functor_run(grpc_completion_queue_functor* f, int ok);

static void unary_done(tag* t, int ok) {
  (void)ok;
  unary_call* u = (unary_call*)t;
  grpc_byte_buffer_destroy(u->response);
  grpc_call_unref(u->call);
  free(u);
}

static void unary_start(grpc_call* call, grpc_byte_buffer* request) {
  int64_t size = parse_response_size(request);
  grpc_byte_buffer_destroy(request);
  unary_call* u = malloc(sizeof *u);
  u->t.functor.functor_run = functor_run;
  u->t.functor.inlineable = 1;
  u->t.done = unary_done;
  u->call = call;
  grpc_slice body = encode_with_payload(1, size > 0 ? (size_t)size : 0, 0);
  u->response = grpc_raw_byte_buffer_create(&body, 1);
  grpc_slice_unref(body);
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->response;
  if (write_hint) ops[1].flags = GRPC_WRITE_BUFFER_HINT;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &u->cancelled;
  ops[3].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[3].data.send_status_from_server.status = size < 0 ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_OK;
  ops[3].data.send_status_from_server.status_details = &empty_details;
  if (defer_replies) {
    if (deferred_len == deferred_cap) {
      deferred_cap = deferred_cap ? 2 * deferred_cap : 256;
      deferred_list = realloc(deferred_list, deferred_cap * sizeof *deferred_list);
    }
    deferred* d = &deferred_list[deferred_len++];
    d->call = call;
    memcpy(d->ops, ops, sizeof ops);
    d->t = &u->t;
    return;
  }
  start(call, ops, 4, &u->t);
}

/* --- StreamingCall: ping-pong, one batch per round trip ------------------------------ */

typedef struct {
  tag t;
  grpc_call* call;
  grpc_byte_buffer* received;
  grpc_byte_buffer* response;
  int headers_sent;
  int finishing;
  int cancelled;
  int one_reply;      /* StreamingFromClient: one response after the client half-closes */
  int64_t last_size;  /* its response size, from the last request */
} stream_call;

static void stream_free(stream_call* s) {
  if (s->received) grpc_byte_buffer_destroy(s->received);
  if (s->response) grpc_byte_buffer_destroy(s->response);
  grpc_call_unref(s->call);
  free(s);
}

static void stream_done(tag* t, int ok) {
  stream_call* s = (stream_call*)t;
  if (s->response) {
    grpc_byte_buffer_destroy(s->response);
    s->response = NULL;
  }
  if (!ok || s->finishing) {
    stream_free(s);
    return;
  }
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  /* Headers go out with the first response (or the status). */
  if (!s->headers_sent && !(s->one_reply && s->received != NULL)) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->headers_sent = 1;
  }
  if (s->received == NULL) { /* the client half-closed: finish */
    s->finishing = 1;
    if (s->one_reply) {
      grpc_slice body = encode_with_payload(1, s->last_size > 0 ? (size_t)s->last_size : 0, 0);
      s->response = grpc_raw_byte_buffer_create(&body, 1);
      grpc_slice_unref(body);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n++].data.send_message.send_message = s->response;
    }
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &s->cancelled;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[n++].data.send_status_from_server.status_details = &empty_details;
    start(s->call, ops, n, &s->t);
    return;
  }
  int64_t size = parse_response_size(s->received);
  grpc_byte_buffer_destroy(s->received);
  s->received = NULL;
  if (s->one_reply) { /* keep reading; answer once at the end */
    s->last_size = size;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->received;
    start(s->call, ops, n, &s->t);
    return;
  }
  grpc_slice body = encode_with_payload(1, size > 0 ? (size_t)size : 0, 0);
  s->response = grpc_raw_byte_buffer_create(&body, 1);
  grpc_slice_unref(body);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = s->response;
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &s->received;
  start(s->call, ops, n, &s->t);
}

static void stream_start(grpc_call* call, int one_reply) {
  stream_call* s = calloc(1, sizeof *s);
  s->t.done = stream_done;
  s->call = call;
  s->one_reply = one_reply;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->received;
  start(call, &op, 1, &s->t);
}

/* --- StreamingFromServer: send until the client cancels ------------------------------ */

typedef struct {
  tag t;
  grpc_call* call;
  grpc_slice body;
  grpc_byte_buffer* response;
} from_server_call;

static void from_server_send(from_server_call* f, int with_headers) {
  f->response = grpc_raw_byte_buffer_create(&f->body, 1);
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (with_headers) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = f->response;
  start(f->call, ops, n, &f->t);
}

static void from_server_done(tag* t, int ok) {
  from_server_call* f = (from_server_call*)t;
  grpc_byte_buffer_destroy(f->response);
  if (!ok) {
    grpc_slice_unref(f->body);
    grpc_call_unref(f->call);
    free(f);
    return;
  }
  from_server_send(f, 0);
}

static void from_server_start(grpc_call* call, grpc_byte_buffer* request) {
  int64_t size = parse_response_size(request);
  grpc_byte_buffer_destroy(request);
  from_server_call* f = malloc(sizeof *f);
  f->t.done = from_server_done;
  f->call = call;
  f->body = encode_with_payload(1, size > 0 ? (size_t)size : 0, 0);
  from_server_send(f, 1);
}

/* --- dispatch ------------------------------------------------------------------------ */

static void slot_done(tag* t, int ok) {
  slot* s = (slot*)t;
  if (!ok) { /* server shutting down */
    grpc_metadata_array_destroy(&s->metadata);
    free(s);
    return;
  }
  grpc_call* call = s->call;
  grpc_byte_buffer* payload = s->payload;
  int method = s->method;
  grpc_metadata_array_destroy(&s->metadata);
  post(s);
  switch (method) {
    case M_UNARY: unary_start(call, payload); break;
    case M_STREAMING: stream_start(call, 0); break;
    case M_BOTH_WAYS: stream_start(call, 0); break; /* answers each request, as ping-pong */
    case M_FROM_CLIENT: stream_start(call, 1); break;
    case M_FROM_SERVER: from_server_start(call, payload); break;
  }
}

/* --callback: the core calls this for every event on the callback queue. */
static void functor_run(grpc_completion_queue_functor* f, int ok) {
  tag* t = (tag*)f;
  t->done(t, ok);
}

typedef struct {
  grpc_completion_queue* cq;
  int slots;
  int post_slots; /* only the first poller of a queue posts its slots */
} worker;

static void* run(void* arg) {
  worker* w = arg;
  for (int m = 0; m < M_COUNT && w->post_slots; m++) {
    for (int i = 0; i < w->slots; i++) {
      slot* s = calloc(1, sizeof *s);
      s->t.functor.functor_run = functor_run;
      s->t.functor.inlineable = 1;
      s->t.done = slot_done;
      s->method = m;
      s->cq = w->cq;
      post(s);
    }
  }
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type == GRPC_OP_COMPLETE) ((tag*)ev.tag)->done((tag*)ev.tag, ev.success);
    if (defer_replies && deferred_len > 0) {
      /* Drain what is ready without waiting, then start the held replies together. */
      for (;;) {
        ev = grpc_completion_queue_next(w->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE) break;
        ((tag*)ev.tag)->done((tag*)ev.tag, ev.success);
      }
      start_deferred();
      if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  static const char* const known[] = {"port", "cq-threads", "slots", "arg", "pollers-per-cq",
                                      "write-hint", "defer", "callback", NULL};
  check_flags(argc, argv, known);
  int port = (int)flag_num(argc, argv, "port", 0);
  int threads = (int)flag_num(argc, argv, "cq-threads", 1);
  int pollers = (int)flag_num(argc, argv, "pollers-per-cq", 1);
  write_hint = (int)flag_num(argc, argv, "write-hint", 0);
  defer_replies = (int)flag_num(argc, argv, "defer", 0);
  int use_callback = (int)flag_num(argc, argv, "callback", 0);
  if (pollers < 1) pollers = 1;
  if (defer_replies && pollers > 1) {
    fprintf(stderr, "bench_server_c: --defer needs one poller per queue\n");
    return 2;
  }
  int slots = (int)flag_num(argc, argv, "slots", 32);
  if (threads < 1) threads = 1;
  if (slots < 1) slots = 1;

  /* --arg key=integer (repeatable): integer channel arguments for the server, e.g.
   * --arg grpc.minimal_stack=1, to price the core's optional filters one by one. */
  grpc_arg args[16];
  size_t nargs = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--arg") != 0) continue;
    char* eq = strchr(argv[i + 1], '=');
    if (eq == NULL || nargs == sizeof args / sizeof args[0]) {
      fprintf(stderr, "bench_server_c: --arg wants key=integer (at most 16)\n");
      return 2;
    }
    *eq = '\0';
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = argv[i + 1];
    args[nargs].value.integer = atoi(eq + 1);
    nargs++;
  }
  grpc_channel_args channel_args = {nargs, args};

  grpc_init();
  quiet_abseil_deadlock_detection();
  empty_details = grpc_empty_slice();
  server = grpc_server_create(nargs ? &channel_args : NULL, NULL);
  methods[M_UNARY] = grpc_server_register_method(server, METHOD_PATHS[M_UNARY], NULL,
                                                 GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  methods[M_STREAMING] = grpc_server_register_method(server, METHOD_PATHS[M_STREAMING], NULL,
                                                     GRPC_SRM_PAYLOAD_NONE, 0);
  methods[M_FROM_SERVER] = grpc_server_register_method(server, METHOD_PATHS[M_FROM_SERVER], NULL,
                                                       GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  methods[M_FROM_CLIENT] = grpc_server_register_method(server, METHOD_PATHS[M_FROM_CLIENT], NULL,
                                                       GRPC_SRM_PAYLOAD_NONE, 0);
  methods[M_BOTH_WAYS] = grpc_server_register_method(server, METHOD_PATHS[M_BOTH_WAYS], NULL,
                                                     GRPC_SRM_PAYLOAD_NONE, 0);
  if (use_callback) {
    static grpc_completion_queue_functor on_shutdown; /* never called before exit */
    callback_cq = grpc_completion_queue_create_for_callback(&on_shutdown, NULL);
    grpc_server_register_completion_queue(server, callback_cq, NULL);
  }
  int nworkers = threads * pollers;
  worker* workers = calloc((size_t)nworkers, sizeof *workers);
  for (int i = 0; i < threads; i++) {
    grpc_completion_queue* cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    for (int p = 0; p < pollers; p++) {
      workers[i * pollers + p].cq = cq;
      workers[i * pollers + p].slots = slots;
      workers[i * pollers + p].post_slots = p == 0;
    }
  }
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
  int bound = grpc_server_add_http2_port(server, addr, creds);
  grpc_server_credentials_release(creds);
  if (bound == 0) {
    fprintf(stderr, "bench_server_c: cannot bind %s\n", addr);
    return 1;
  }
  grpc_server_start(server);
  pthread_t* tids = calloc((size_t)nworkers, sizeof *tids);
  for (int i = 0; i < nworkers; i++) pthread_create(&tids[i], NULL, run, &workers[i]);
  announce_port(bound);
  for (int i = 0; i < nworkers; i++) pthread_join(tids[i], NULL);
  return 0;
}
