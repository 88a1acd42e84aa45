#!/usr/bin/env bash
# make test's pytest run. With no arguments the suite runs as three pytest processes at once,
# because most of its time is spent waiting on real-time calls, not computing:
#   telephone-a  tests/integration (all but the files below), on the Asterisk root in
#                HOTLINE_ASTERISK__ROOT_DIR (default /var/cache/hotline/asterisk-root)
#   telephone-b  the files below and tests/cluster, on a second root (<root>-b, built by the
#                test bed like the first if it is missing): one Asterisk per root
#   rest         unit, storage (both databases), API, speech
# Each process has its own PostgreSQL database (tests/conftest.py) and temporary directories;
# SIPp, Asterisk and the services pick free ports. telephone-a prints its progress live; the
# others write to var/test-*.log, shown when all have finished. With arguments, one pytest
# runs them as given (e.g. make test PYTEST_ARGS="tests/unit -x").
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTEST=("$PY" -m pytest -p no:cacheprovider -ra)
if [ "$#" -gt 0 ]; then
    exec "${PYTEST[@]}" "$@"
fi

# The second telephone shard: the longest integration modules (about half of their time).
# test_queue_waiting (about 150 s) went back to telephone-a as tests/cluster grew (session
# 27: the supervisor, the hand-back, callbacks on the queue node): b had 991 s, a 787 s.
SHARD_B=(tests/integration/test_callbacks.py tests/integration/test_faults.py)
root=${HOTLINE_ASTERISK__ROOT_DIR:-/var/cache/hotline/asterisk-root}
ignore_b=()
for f in "${SHARD_B[@]}"; do ignore_b+=("--ignore=$f"); done

mkdir -p var
pids=()
# tests/cluster first, as in one process: its edge tests expect no test bed running in the root
HOTLINE_ASTERISK__ROOT_DIR="$root-b" "${PYTEST[@]}" tests/cluster "${SHARD_B[@]}" \
    >var/test-telephone-b.log 2>&1 &
pids+=($!)
"${PYTEST[@]}" --ignore=tests/integration --ignore=tests/cluster >var/test-rest.log 2>&1 &
pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
echo "== two more pytest processes run beside this one:"
echo "   var/test-telephone-b.log (tests/cluster, ${SHARD_B[*]##*/}; root $root-b)"
echo "   var/test-rest.log (unit, storage, API, speech)"
HOTLINE_ASTERISK__ROOT_DIR="$root" "${PYTEST[@]}" tests/integration "${ignore_b[@]}"
a=$?
echo "== waiting for the other two ..."
wait "${pids[0]}"; b=$?
wait "${pids[1]}"; rest=$?
for log in var/test-telephone-b.log var/test-rest.log; do
    echo "== $log"
    cat "$log"
done
echo "== exit codes: telephone-a $a, telephone-b $b, rest $rest"
[ "$a" -eq 0 ] && [ "$b" -eq 0 ] && [ "$rest" -eq 0 ]
