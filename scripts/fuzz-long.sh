#!/usr/bin/env bash
# The long fuzz runs: RUNS executions of each target from its corpus (fuzz/corpus/<target>,
# which grows with what libFuzzer finds), FUZZ_JOBS (2) targets at a time, each stopped after
# MAX_SECONDS if it has not reached RUNS. Each run's log goes under fuzz/logs/, and a line
# (date, build, executions, seconds, coverage, corpus, peak memory, crash inputs, exit) is
# added to fuzz/results.tsv, so that runs made in several sittings add up. A crash stops its
# target; its input is saved under fuzz/artifacts/<target>/.
#
#   FUZZ_BIN=<folder of the built targets> FUZZ_BUILD=<how they were built> \
#       scripts/fuzz-long.sh RUNS MAX_SECONDS TARGET...        (make fuzz-long runs it)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=$1
max_seconds=$2
shift 2
mkdir -p fuzz/logs
bin=${FUZZ_BIN:-fuzz/target/x86_64-unknown-linux-gnu/release}
build=${FUZZ_BUILD:-asan}

fuzz_one() {
    local target=$1 log=fuzz/logs/$1.log start end status
    mkdir -p "fuzz/artifacts/$target"
    start=$(date +%s)
    "$bin/$target" "fuzz/corpus/$target" -runs="$runs" -max_total_time="$max_seconds" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1
    status=$?
    end=$(date +%s)
    local execs cov ft corpus rss crashes
    execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | grep -oE '[0-9]+$')
    rss=$(grep -oE 'stat::peak_rss_mb: +[0-9]+' "$log" | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    corpus=$(ls "fuzz/corpus/$target" | wc -l)
    crashes=$(ls "fuzz/artifacts/$target" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$(date -u +%F)" "$build" "${execs:-0}" "$((end - start))" \
        "${cov:-?}" "${ft:-?}" "$corpus" "${rss:-?}" "$crashes" "$status" >"fuzz/logs/$target.tsv"
}

for target in "$@"; do
    fuzz_one "$target" &
    while [ "$(jobs -rp | wc -l)" -ge "${FUZZ_JOBS:-2}" ]; do sleep 5; done
done
wait
header='target\tdate\tbuild\texecutions\tseconds\tcoverage\tfeatures\tcorpus\tpeak_rss_mb\tcrash_inputs\texit'
[ -s fuzz/results.tsv ] || printf "$header\n" >fuzz/results.tsv
for target in "$@"; do cat "fuzz/logs/$target.tsv" >>fuzz/results.tsv; done
column -t fuzz/results.tsv
