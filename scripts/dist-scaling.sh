#!/usr/bin/env bash
# The scaling figure of docs/distributed.md: the quickstart model (global batch 256, 10,240
# images, 25 steps) on 1 process x 2 threads, 2 processes x 1 thread (with and without sync
# batch norm) and 1 process x 1 thread; prints the median images per second of steps 4-25.
#
#   scripts/dist-scaling.sh [FA] [REPETITIONS]     FA defaults to target/debug/fa
set -euo pipefail
fa=${1:-target/debug/fa}
repetitions=${2:-3}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FA_DATA_ROOT=${FA_DATA_ROOT:-/usr/share/datasets}
median() {
    "$python" -c "
import json, statistics, sys
rates = [r['images_per_s'] for r in map(json.loads, open(sys.argv[1])) if 'images_per_s' in r][3:]
print(round(statistics.median(rates), 1))" "$1"
}
for repetition in $(seq "$repetitions"); do
    for configuration in one-2-threads two-processes two-processes-sync one-1-thread; do
        out="$work/$configuration-$repetition"
        flags=(train models/quickstart.fa --set data.limit=10240 --max-steps 25 --no-eval
               --log-format quiet --out "$out")
        case $configuration in
            one-2-threads) OMP_NUM_THREADS=2 "$fa" "${flags[@]}" >/dev/null ;;
            two-processes) "$fa" "${flags[@]}" --nproc 2 >/dev/null ;;
            two-processes-sync) "$fa" "${flags[@]}" --nproc 2 --sync-batch-norm >/dev/null ;;
            one-1-thread) OMP_NUM_THREADS=1 "$fa" "${flags[@]}" >/dev/null ;;
        esac
        echo "$configuration $repetition $(median "$out/metrics.jsonl") img/s (load: $(cut -d' ' -f1 /proc/loadavg))"
    done
done
