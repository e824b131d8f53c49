/* Preloaded by scripts/leak-check.sh into each test binary run under valgrind.
 *
 * When the last handle on a grpcore Environment goes away inside a completion (on one of its
 * own queue threads), a short-lived "grpcore-env-drop" thread tears it down (src/env.rs) and
 * nobody waits for it; its queue threads ("grpcore-cq-N") finish first, and the core may
 * finish grpc_shutdown on a thread of its own ("grpc_shutdown"). If that happens in a
 * binary's last test, the process can exit mid-teardown, and valgrind then reports the
 * environment's and its server's half-freed core objects as "possibly lost": an exit race,
 * not a leak (seen in streaming, settings and call_core, always in their last test).
 *
 * This destructor runs at exit and waits, at most 20 s, until none of those threads is
 * left, so the leak check sees the heap after the teardowns that had begun. A leaked
 * environment keeps its queue threads: the wait then runs out, says so, and valgrind
 * reports the leak as before.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Thread names are cut to 15 bytes: "grpcore-env-drop" reads "grpcore-env-dro". The shared
 * environment's threads ("grpcore-shared-N") live for the whole process and are not waited
 * for. */
static const char *const TEARDOWN[] = {"grpcore-env-dro", "grpcore-cq-", "grpc_shutdown"};

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

__attribute__((destructor)) static void wait_for_environment_teardown(void) {
    int left, i;
    for (i = 0; i < 2000 && (left = teardown_threads()) > 0; i++) usleep(10000);
    if (i == 2000) fprintf(stderr, "leak-exit-wait: %d grpcore queue or teardown thread(s) still running after 20 s\n", left);
}
