/* Preloaded by scripts/leak-check.sh into each test binary run under valgrind: at exit, it
 * waits (at most 20 s) until the gRPC core has finished shutting down, so that valgrind
 * sees the heap after the teardown and the same binary gets the same verdict every run.
 *
 * Why a wait is needed, and why it must ask the core rather than look at threads:
 *
 * - Each grpcore Environment pairs a grpc_init with a grpc_shutdown (src/env.rs). When its
 *   last handle goes away inside a completion, a short-lived "grpcore-env-drop" thread joins
 *   its queue threads and calls grpc_shutdown; nobody waits for that thread.
 * - The environment's grpc_shutdown is often not the last one. In 1.51 every channel and
 *   every subchannel takes a grpc_init of its own when it is made and gives it back when the
 *   core finally destroys it, which happens later, asynchronously, on one of the core's
 *   threads (a subchannel that failed to connect lives until its back-off is cancelled and
 *   its last closure has run). When that last grpc_shutdown runs inside the core's
 *   execution context, the core cannot clean up there and starts a detached thread named
 *   "grpc_shutdown" to do it.
 * - So at exit there can be a stretch with the core still up and no teardown thread at all
 *   yet: the previous version of this file, which waited only for threads by name, returned
 *   at once then, and valgrind reported the still-living subchannel's tagged-pointer status
 *   (and, when an endpoint was closing, the polled fd's) as "possibly lost", in some runs
 *   and not in others. Measured on panicking_logger: the core was still initialised when the
 *   old wait returned, and needed ~0.9 s more. Thread names also mislead the other way:
 *   the core's event-engine pool threads are started without a name and inherit their
 *   creator's ("grpcore-cq-0"), and they live until exit by design, so drop_order used to
 *   wait the full 20 s for threads that never end.
 *
 * grpc_is_initialized() (public API) answers 0 only once the number of grpc_init holders is
 * 0 and the cleanup has completed: it takes the core's init mutex, which grpc_shutdown's
 * cleanup holds from start to end, on whichever thread runs it. After that the only thing
 * left is for the env-drop and "grpc_shutdown" threads to return, which they do at once.
 * A leaked environment, channel or server keeps its grpc_init: the wait then runs out,
 * says so, and valgrind reports the leak. A binary that never loaded the core (no symbol)
 * waits for the threads only.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Thread names are cut to 15 bytes: "grpcore-env-drop" reads "grpcore-env-dro". Both are
 * named by their creators (Rust's std, the core's Thread), so they are never inherited. */
static const char *const TEARDOWN[] = {"grpcore-env-dro", "grpc_shutdown"};

static int is_teardown(const char *name) {
    size_t i;
    for (i = 0; i < sizeof TEARDOWN / sizeof TEARDOWN[0]; i++)
        if (strncmp(name, TEARDOWN[i], strlen(TEARDOWN[i])) == 0) return 1;
    return 0;
}

static int teardown_threads(void) {
    int n = 0;
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    if (!dir) return 0;
    while ((e = readdir(dir)) != NULL) {
        char path[300], name[32] = {0};
        FILE *f;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        if (!(f = fopen(path, "r"))) continue;
        if (fgets(name, sizeof name, f) && is_teardown(name)) n++;
        fclose(f);
    }
    closedir(dir);
    return n;
}

__attribute__((destructor)) static void wait_for_core_shutdown(void) {
    int (*core_initialized)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "grpc_is_initialized");
    int i, up = 0, left = 0;
    for (i = 0; i < 2000; i++) {
        up = core_initialized != NULL && core_initialized();
        left = teardown_threads();
        if (!up && left == 0) return;
        usleep(10000);
    }
    fprintf(stderr,
            "leak-exit-wait: after 20 s the gRPC core is %s and %d teardown thread(s) still run: "
            "something still holds a grpc_init (a leaked environment, channel or server?)\n",
            up ? "still initialised" : "shut down", left);
}
