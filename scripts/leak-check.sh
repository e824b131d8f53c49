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
# by the server, peers of grpcio-health-checking); and the large-message tests (Rust buffers
# adopted as core slices, received slices held by zero-copy `Bytes` fields) and the
# send-and-receive batches (a receive folded into a send, then cancelled or half-closed).
#
#   scripts/leak-check.sh                 the list above (what CI runs)
#   scripts/leak-check.sh --all           every integration-test binary of the grpcore crate
#   scripts/leak-check.sh NAME...         the named test binaries
# GRPCORE_LEAK_FEATURES=F,G builds the binaries with those features of grpcore (the
# shared-writes step checks the outbox's call references and queue borrows this way).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tests=(drop_order unary streaming call_core connectivity settings tls_reload call_credentials
       panicking_logger tls_reload_reentrant bind_failure health large_messages send_and_receive)
if [ "${1:-}" = "--all" ]; then
    tests=()
    for f in tests/*.rs; do tests+=("$(basename "$f" .rs)"); done
elif [ "$#" -gt 0 ]; then
    tests=("$@")
fi
# A destructor preloaded into each binary waits at exit until the gRPC core has finished
# shutting down (grpc_is_initialized() is 0), so valgrind sees the heap after the teardown
# and a binary gets the same verdict every run (scripts/leak-exit-wait.c says why).
exit_wait=$(mktemp -d)/leak-exit-wait.so
cc -O2 -shared -fPIC -o "$exit_wait" scripts/leak-exit-wait.c -ldl
for test in "${tests[@]}"; do
    bin=$(cargo test --no-run --message-format=json ${GRPCORE_LEAK_FEATURES:+--features "$GRPCORE_LEAK_FEATURES"} \
        --test "$test" 2>/dev/null \
        | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$test")
    echo "valgrind: $test ($bin)"
    log=$(mktemp)
    rc=0
    LD_PRELOAD=$exit_wait valgrind --quiet --error-exitcode=97 --leak-check=full --num-callers=40 \
        --show-leak-kinds=definite,possible --errors-for-leak-kinds=definite,possible \
        --suppressions=scripts/valgrind.supp --gen-suppressions=all \
        "$bin" --test-threads=1 >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$log"
        echo "valgrind: $test failed (exit $rc): a definite or possible leak, a memory error," \
            "or a failing test (the log has a suppression stanza per leak; add one to" \
            "scripts/valgrind.supp only for memory the core keeps on purpose)" >&2
        exit 1
    fi
    grep -E '^test result' "$log"
    rm -f "$log"
done
echo "valgrind: no definite or possible leaks, no memory errors"
