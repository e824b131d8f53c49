/* What the raw C core peers share: flags, the few protobuf bytes of the benchmark
 * messages, clocks, and the JSON report (the same fields as grpcore-bench's common.rs).
 *
 * The benchmark messages are tiny, so they are encoded and parsed by hand here:
 *   SimpleRequest  { int32 response_size = 2; Payload payload = 3; ... }
 *   SimpleResponse { Payload payload = 1; ... }
 *   Payload        { PayloadType type = 1; bytes body = 2; }
 */
#ifndef GRPCORE_BENCH_COMMON_H
#define GRPCORE_BENCH_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

/* --- flags: "--name value" pairs, looked up by name --------------------------------- */

static inline const char* flag_str(int argc, char** argv, const char* name, const char* dflt) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0) return argv[i + 1];
  }
  return dflt;
}

static inline double flag_num(int argc, char** argv, const char* name, double dflt) {
  const char* s = flag_str(argc, argv, name, NULL);
  return s ? atof(s) : dflt;
}

/* Rejects flags nobody knows (typos fail loudly), and odd argument counts. */
static inline void check_flags(int argc, char** argv, const char* const* known) {
  if ((argc - 1) % 2 != 0) {
    fprintf(stderr, "%s: flags are --name value pairs\n", argv[0]);
    exit(2);
  }
  for (int i = 1; i < argc; i += 2) {
    int ok = 0;
    for (const char* const* k = known; *k; k++) {
      if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, *k) == 0) ok = 1;
    }
    if (!ok) {
      fprintf(stderr, "%s: unknown flag %s\n", argv[0], argv[i]);
      exit(2);
    }
  }
}

/* --- protobuf by hand --------------------------------------------------------------- */

static inline size_t put_varint(uint8_t* p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static inline int get_varint(const uint8_t** p, const uint8_t* end, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

/* A message whose field `outer` (1 in SimpleResponse, 3 in SimpleRequest) is a Payload
 * with `size` zero bytes, plus response_size = `response_size` when it is positive (a
 * SimpleRequest). Returned as one slice, ready for a byte buffer. */
static inline grpc_slice encode_with_payload(int outer, size_t size, int32_t response_size) {
  uint8_t head[32];
  size_t h = 0;
  if (response_size > 0) {
    head[h++] = (2 << 3) | 0; /* response_size, varint */
    h += put_varint(head + h, (uint64_t)response_size);
  }
  uint8_t inner[12];
  size_t in = 0;
  if (size > 0) {
    inner[in++] = (2 << 3) | 2; /* body, bytes */
    in += put_varint(inner + in, size);
  }
  head[h++] = (uint8_t)((outer << 3) | 2); /* payload, message */
  h += put_varint(head + h, in + size);
  grpc_slice s = grpc_slice_malloc(h + in + size);
  uint8_t* p = GRPC_SLICE_START_PTR(s);
  memcpy(p, head, h);
  memcpy(p + h, inner, in);
  memset(p + h + in, 0, size);
  return s;
}

/* The response_size of a SimpleRequest (0 when absent; -1 when it does not parse). */
static inline int64_t parse_response_size(grpc_byte_buffer* bb) {
  grpc_byte_buffer_reader reader;
  if (!bb || !grpc_byte_buffer_reader_init(&reader, bb)) return -1;
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  const uint8_t* p = GRPC_SLICE_START_PTR(all);
  const uint8_t* end = p + GRPC_SLICE_LENGTH(all);
  int64_t result = 0;
  while (p < end) {
    uint64_t key, v;
    if (!get_varint(&p, end, &key)) goto bad;
    switch (key & 7) {
      case 0:
        if (!get_varint(&p, end, &v)) goto bad;
        if ((key >> 3) == 2) result = (int32_t)v;
        break;
      case 1: p += 8; break;
      case 2:
        if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) goto bad;
        p += v;
        break;
      case 5: p += 4; break;
      default: goto bad;
    }
  }
  if (p > end) goto bad;
  grpc_slice_unref(all);
  return result;
bad:
  grpc_slice_unref(all);
  return -1;
}

/* Payload bytes of a SimpleResponse, -1 when it does not parse. */
static inline int64_t response_payload_len(grpc_byte_buffer* bb) {
  grpc_byte_buffer_reader reader;
  if (!bb || !grpc_byte_buffer_reader_init(&reader, bb)) return -1;
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  const uint8_t* p = GRPC_SLICE_START_PTR(all);
  const uint8_t* end = p + GRPC_SLICE_LENGTH(all);
  int64_t result = 0;
  uint64_t key, len;
  /* field 1 (payload) then, inside it, field 2 (body); the benchmark sets nothing else */
  if (p < end) {
    if (!get_varint(&p, end, &key) || key != ((1 << 3) | 2) || !get_varint(&p, end, &len)) result = -1;
    const uint8_t* pend = p + len;
    while (result >= 0 && p < pend) {
      uint64_t k2, v;
      if (!get_varint(&p, pend, &k2)) result = -1;
      else if ((k2 & 7) == 0) { if (!get_varint(&p, pend, &v)) result = -1; }
      else if ((k2 & 7) == 2) {
        if (!get_varint(&p, pend, &v)) result = -1;
        else { if ((k2 >> 3) == 2) result = (int64_t)v; p += v; }
      } else result = -1;
    }
  }
  grpc_slice_unref(all);
  return result;
}

/* --- clocks and usage --------------------------------------------------------------- */

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline double cpu_secs(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* VmHWM, not ru_maxrss: the latter survives execve and would report the parent's peak. */
static inline long max_rss_kib(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmHWM:", 6) == 0) kib = atol(line + 6);
  }
  if (f) fclose(f);
  if (kib < 0) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    kib = ru.ru_maxrss;
  }
  return kib;
}

/* What grpcore does when it initializes the core (src/env.rs, quiet_abseil_deadlock_detection):
 * abseil's mutex deadlock detection, on in Debian's abseil (built without NDEBUG), is turned
 * off unless GRPCORE_ABSL_DEADLOCK_DETECTION is set to something other than 0, so the C
 * peers and grpcore run the core alike. */
static inline void quiet_abseil_deadlock_detection(void) {
  static const char* const names[] = {
      "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
      "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
  };
  const char* keep = getenv("GRPCORE_ABSL_DEADLOCK_DETECTION");
  if (keep != NULL && strcmp(keep, "0") != 0) return;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    void* sym = dlsym(RTLD_DEFAULT, names[i]);
    if (sym != NULL) {
      void (*set_mode)(int);
      memcpy(&set_mode, &sym, sizeof set_mode);
      set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
      return;
    }
  }
}

static inline void announce_port(int port) {
  printf("listening on %d\n", port);
  fflush(stdout);
}

#endif
