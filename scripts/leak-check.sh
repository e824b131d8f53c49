#!/usr/bin/env bash
# Runs integration-test binaries under valgrind and fails on any definite or possible leak
# (tags are interior pointers, so a leaked channel or call shows as "possibly lost") or
# memory error, less what scripts/valgrind.supp says the core keeps on purpose: the
# drop-order tests (every order of dropping environment, channel, server and an in-flight
# call), the unary tests (success, errors, panics, cancellation, 1,000 calls), the
# connectivity tests (watch tags completed or abandoned), the settings tests (resource
# quota references taken and released in every order), and the credentials whose state the
# core owns through C callbacks (certificate-reload slots freed by a processor's destroy
# hook, token-source plugins, verify_server checks), also when the log backend panics and
# when a reload callback re-enters its reloader; a server whose build failed after it
# bound a port (shut down on a private queue, then destroyed); and the call core's tests
# (sinks that outlive their handler, calls that outlive their channel, cancelled uploads);
# and the health tests (shutdown hooks run on the server's shutdown thread, watches ended
# by the server, peers of grpcio-health-checking).
#
#   scripts/leak-check.sh                 the list above (what CI runs)
#   scripts/leak-check.sh --all           every integration-test binary of the grpcore crate
#   scripts/leak-check.sh NAME...         the named test binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests=(drop_order unary streaming call_core connectivity settings tls_reload call_credentials
       panicking_logger tls_reload_reentrant bind_failure health)
if [ "${1:-}" = "--all" ]; then
    tests=()
    for f in tests/*.rs; do tests+=("$(basename "$f" .rs)"); done
elif [ "$#" -gt 0 ]; then
    tests=("$@")
fi
# A destructor preloaded into each binary waits at exit for environment teardowns still
# running on their own thread, so that an exit race does not look like a leak
# (scripts/leak-exit-wait.c says why).
exit_wait=$(mktemp -d)/leak-exit-wait.so
cc -O2 -shared -fPIC -o "$exit_wait" scripts/leak-exit-wait.c
for test in "${tests[@]}"; do
    bin=$(cargo test --no-run --message-format=json --test "$test" 2>/dev/null \
        | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$test")
    echo "valgrind: $test ($bin)"
    # One run; a run whose only findings are "possibly lost" records gets one more try. The
    # core's shutdown in 1.51 finishes asynchronously, and what it holds through tagged or
    # interior pointers at the moment of exit varies from run to run; a real leak (a channel,
    # a call, a server) is there every time and fails both runs. Definite leaks, memory
    # errors and failing tests fail at once.
    for attempt in 1 2; do
        log=$(mktemp)
        rc=0
        LD_PRELOAD=$exit_wait valgrind --quiet --error-exitcode=97 --leak-check=full --num-callers=40 \
            --show-leak-kinds=definite,possible --errors-for-leak-kinds=definite,possible \
            --suppressions=scripts/valgrind.supp --gen-suppressions=all \
            "$bin" --test-threads=1 >"$log" 2>&1 || rc=$?
        if [ "$rc" -eq 0 ]; then
            break
        fi
        only_possible=no
        if [ "$rc" -eq 97 ] && grep -q 'are possibly lost in loss record' "$log" \
            && ! grep -qE 'are definitely lost in loss record|Invalid (read|write|free)|uninitialised|Mismatched free' "$log" \
            && ! grep -qE '^test result: FAILED' "$log"; then
            only_possible=yes
        fi
        if [ "$attempt" -eq 1 ] && [ "$only_possible" = yes ]; then
            echo "valgrind: $test: only possibly-lost records at exit; running it once more" \
                "(a leak that is really ours is there every time)"
            rm -f "$log"
            continue
        fi
        cat "$log"
        echo "valgrind: $test failed (exit $rc): a definite or possible leak, a memory error," \
            "or a failing test (the log has a suppression stanza per leak; add one to" \
            "scripts/valgrind.supp only for memory the core keeps on purpose)" >&2
        exit 1
    done
    grep -E '^test result' "$log"
    rm -f "$log"
done
echo "valgrind: no definite or possible leaks, no memory errors"
