/* Closed-loop BenchmarkService client on the raw gRPC C core: the floor for clients.
 * One thread polls one completion queue; methods are registered on each channel
 * (grpc_channel_register_call); a unary call is one six-op batch; a ping-pong round trip
 * is one batch (send the request, receive the response).
 *
 *   bench_client_c --target 127.0.0.1:PORT [--rpc unary|streaming] [--channels C]
 *                  [--outstanding M] [--req-size B] [--resp-size B]
 *                  [--warmup-secs S] [--secs S | --count N]
 *
 * Prints the same JSON line as grpcore's bench_client (impl "c-core") on stdout.
 */
#define _GNU_SOURCE /* RTLD_DEFAULT, for bench_common.h */
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "bench_common.h"

typedef struct {
  int64_t* v;
  size_t n, cap;
} samples;

static void push(samples* s, int64_t x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4096;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
  }
  s->v[s->n++] = x;
}

static int cmp_i64(const void* a, const void* b) {
  int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
  return (x > y) - (x < y);
}

/* The value at quantile q, as an HDR histogram reports it (rank ceil(q * n)). */
static double quantile_us(const samples* s, double q) {
  if (s->n == 0) return 0;
  size_t rank = (size_t)(q * (double)s->n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > s->n) rank = s->n;
  return s->v[rank - 1] / 1e3;
}

enum { WARMUP, MEASURE, STOP };
static int phase = WARMUP;
static int64_t remaining = INT64_MAX;

/* Whether to start another call: -1 stop, 0 warm-up, 1 measured. */
static int next_call(void) {
  if (phase == WARMUP) return 0;
  if (phase == MEASURE && remaining-- > 0) return 1;
  phase = STOP;
  return -1;
}

static int streaming;
static size_t resp_size;
static grpc_slice request_body;
static samples lat;
static long errors;
static int active;

typedef struct {
  grpc_channel* channel;
  void* method;
} chan;

typedef struct {
  chan* ch;
  grpc_call* call;
  int64_t t0;
  int measured;
  int started; /* streaming: headers exchanged */
  int closing; /* streaming: close and status requested */
  grpc_byte_buffer* send;
  grpc_byte_buffer* recv;
  grpc_metadata_array initial, trailing;
  grpc_status_code status;
  grpc_slice details;
} slot;

static grpc_completion_queue* cq;

static void start(slot* s, const grpc_op* ops, size_t n) {
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, s, NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_client_c: grpc_call_start_batch failed: %d\n", e);
    abort();
  }
}

static grpc_call* new_call(slot* s) {
  return grpc_channel_create_registered_call(s->ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, s->ch->method,
                                             gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

static void unary_issue(slot* s) {
  int m = next_call();
  if (m < 0) {
    active--;
    return;
  }
  s->measured = m;
  s->t0 = now_ns();
  s->call = new_call(s);
  s->send = grpc_raw_byte_buffer_create(&request_body, 1);
  s->recv = NULL;
  grpc_metadata_array_init(&s->initial);
  grpc_metadata_array_init(&s->trailing);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = s->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &s->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing;
  ops[5].data.recv_status_on_client.status = &s->status;
  ops[5].data.recv_status_on_client.status_details = &s->details;
  start(s, ops, 6);
}

static void unary_done(slot* s, int ok) {
  int good = ok && s->status == GRPC_STATUS_OK && response_payload_len(s->recv) == (int64_t)resp_size;
  int64_t t1 = now_ns();
  if (s->measured) {
    if (good) push(&lat, t1 - s->t0);
    else errors++;
  }
  if (!good) fprintf(stderr, "bench_client_c: unary call failed (status %d)\n", (int)s->status);
  grpc_byte_buffer_destroy(s->send);
  if (s->recv) grpc_byte_buffer_destroy(s->recv);
  grpc_metadata_array_destroy(&s->initial);
  grpc_metadata_array_destroy(&s->trailing);
  grpc_slice_unref(s->details);
  grpc_call_unref(s->call);
  unary_issue(s);
}

/* One ping-pong round trip, or the close when the run is over. */
static void stream_issue(slot* s) {
  int m = next_call();
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (m < 0) {
    s->closing = 1;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &s->trailing;
    ops[n].data.recv_status_on_client.status = &s->status;
    ops[n++].data.recv_status_on_client.status_details = &s->details;
    start(s, ops, n);
    return;
  }
  s->measured = m;
  s->t0 = now_ns();
  if (!s->started) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n++].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    s->started = 1;
  }
  s->send = grpc_raw_byte_buffer_create(&request_body, 1);
  s->recv = NULL;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = s->send;
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &s->recv;
  start(s, ops, n);
}

static void stream_done(slot* s, int ok) {
  if (s->closing) {
    if (s->status != GRPC_STATUS_OK) {
      fprintf(stderr, "bench_client_c: stream ended with status %d\n", (int)s->status);
      errors++;
    }
    grpc_metadata_array_destroy(&s->initial);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    active--;
    return;
  }
  int good = ok && response_payload_len(s->recv) == (int64_t)resp_size;
  int64_t t1 = now_ns();
  if (s->measured) {
    if (good) push(&lat, t1 - s->t0);
    else errors++;
  }
  grpc_byte_buffer_destroy(s->send);
  if (s->recv) grpc_byte_buffer_destroy(s->recv);
  if (!good) {
    fprintf(stderr, "bench_client_c: ping-pong failed\n");
    phase = STOP;
  }
  stream_issue(s);
}

int main(int argc, char** argv) {
  static const char* const known[] = {"target", "rpc", "channels", "outstanding", "req-size", "resp-size",
                                      "warmup-secs", "secs", "count", "threads", NULL};
  check_flags(argc, argv, known);
  const char* target = flag_str(argc, argv, "target", "127.0.0.1:50051");
  const char* rpc = flag_str(argc, argv, "rpc", "unary");
  int channels = (int)flag_num(argc, argv, "channels", 1);
  int outstanding = (int)flag_num(argc, argv, "outstanding", 1);
  size_t req_size = (size_t)flag_num(argc, argv, "req-size", 100);
  resp_size = (size_t)flag_num(argc, argv, "resp-size", 100);
  double warmup = flag_num(argc, argv, "warmup-secs", 1);
  double secs = flag_num(argc, argv, "secs", 5);
  const char* count = flag_str(argc, argv, "count", NULL);
  if (strcmp(rpc, "unary") == 0) streaming = 0;
  else if (strcmp(rpc, "streaming") == 0) streaming = 1;
  else {
    fprintf(stderr, "bench_client_c: --rpc must be unary or streaming\n");
    return 2;
  }
  if (channels < 1) channels = 1;
  if (outstanding < 1) outstanding = 1;
  if (count) remaining = atoll(count);

  grpc_init();
  quiet_abseil_deadlock_detection();
  cq = grpc_completion_queue_create_for_next(NULL);
  request_body = encode_with_payload(3, req_size, (int32_t)resp_size);
  const char* path = streaming ? "/grpc.testing.BenchmarkService/StreamingCall" : "/grpc.testing.BenchmarkService/UnaryCall";
  /* A local subchannel pool gives every channel its own connection. */
  grpc_arg arg;
  arg.type = GRPC_ARG_INTEGER;
  arg.key = (char*)"grpc.use_local_subchannel_pool";
  arg.value.integer = 1;
  grpc_channel_args args = {1, &arg};
  chan* chans = calloc((size_t)channels, sizeof *chans);
  grpc_channel_credentials* creds = grpc_insecure_credentials_create();
  for (int i = 0; i < channels; i++) {
    chans[i].channel = grpc_channel_create(target, creds, &args);
    chans[i].method = grpc_channel_register_call(chans[i].channel, path, NULL, NULL);
  }
  grpc_channel_credentials_release(creds);

  int total = channels * outstanding;
  slot* slots = calloc((size_t)total, sizeof *slots);
  active = total;
  for (int i = 0; i < total; i++) {
    slot* s = &slots[i];
    s->ch = &chans[i / outstanding];
    if (streaming) {
      s->call = new_call(s);
      grpc_metadata_array_init(&s->initial);
      grpc_metadata_array_init(&s->trailing);
      stream_issue(s);
    } else {
      unary_issue(s);
    }
  }

  int64_t start_ns = now_ns();
  int64_t measure_at = start_ns + (int64_t)(warmup * 1e9);
  int64_t stop_at = count ? INT64_MAX : measure_at + (int64_t)(secs * 1e9);
  int64_t t0 = 0;
  double cpu0 = 0;
  if (warmup <= 0) {
    phase = MEASURE;
    t0 = now_ns();
    cpu0 = cpu_secs();
  }
  while (active > 0) {
    int64_t now = now_ns();
    if (phase == WARMUP && now >= measure_at) {
      phase = MEASURE;
      t0 = now;
      cpu0 = cpu_secs();
    }
    if (phase == MEASURE && now >= stop_at) phase = STOP;
    int64_t wake = phase == WARMUP ? measure_at : (phase == MEASURE && stop_at != INT64_MAX ? stop_at : now + 1000000000);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(wake - now, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(cq, deadline, NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    slot* s = ev.tag;
    if (streaming) stream_done(s, ev.success);
    else unary_done(s, ev.success);
  }
  int64_t t1 = now_ns();
  double cpu = cpu_secs() - cpu0;
  double elapsed = (t1 - t0) / 1e9;

  qsort(lat.v, lat.n, sizeof *lat.v, cmp_i64);
  double qps = elapsed > 0 ? lat.n / elapsed : 0;
  double per_1k = lat.n ? cpu * 1000.0 / lat.n : 0;
  printf("{\"impl\":\"c-core\",\"rpc\":\"%s\",\"target\":\"%s\",\"channels\":%d,\"outstanding\":%d,"
         "\"req_size\":%zu,\"resp_size\":%zu,\"threads\":1,\"calls\":%zu,\"errors\":%ld,\"secs\":%.6f,"
         "\"qps\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},"
         "\"cpu_secs\":%.6f,\"cpu_secs_per_1k\":%.6f,\"max_rss_kib\":%ld}\n",
         streaming ? "streaming" : "unary", target, channels, outstanding, req_size, resp_size, lat.n, errors,
         elapsed, qps, quantile_us(&lat, 0.5), quantile_us(&lat, 0.9), quantile_us(&lat, 0.99),
         quantile_us(&lat, 0.999), lat.n ? lat.v[lat.n - 1] / 1e3 : 0, cpu, per_1k, max_rss_kib());
  fflush(stdout);
  fprintf(stderr, "c-core %s c=%d m=%d %zuB/%zuB: %zu calls in %.2fs = %.0f/s, p50 %.0fus p99 %.0fus, %.4f CPU s per 1k, %ld errors\n",
          streaming ? "streaming" : "unary", channels, outstanding, req_size, resp_size, lat.n, elapsed, qps,
          quantile_us(&lat, 0.5), quantile_us(&lat, 0.99), per_1k, errors);
  /* Exit without tearing down: channels and the core go with the process. */
  _exit(errors > 0 || lat.n == 0 ? 1 : 0);
}
