/* An experiment of issue #18 (benches/README.md, "Target 1"): a preloaded library that sets
 * SO_SNDBUF=$SNDBUF on every socket a server accepts, so that small send buffers fill and
 * the core's writes go pending (EAGAIN), letting replies pile up into one write. Build and use:
 *   gcc -O2 -shared -fPIC -o /var/tmp/sndbuf.so bench/c/sndbuf_preload.c -ldl
 *   benches/syscalls --variant 'c-sndbuf4k=c-core env:LD_PRELOAD=/var/tmp/sndbuf.so env:SNDBUF=4096'
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
static void tune(int fd) {
  const char* v = getenv("SNDBUF");
  if (fd >= 0 && v) { int n = atoi(v); setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof n); }
}
int accept4(int s, struct sockaddr* a, socklen_t* l, int f) {
  static int (*real)(int, struct sockaddr*, socklen_t*, int);
  if (!real) real = dlsym(RTLD_NEXT, "accept4");
  int fd = real(s, a, l, f); tune(fd); return fd;
}
int accept(int s, struct sockaddr* a, socklen_t* l) {
  static int (*real)(int, struct sockaddr*, socklen_t*);
  if (!real) real = dlsym(RTLD_NEXT, "accept");
  int fd = real(s, a, l); tune(fd); return fd;
}
