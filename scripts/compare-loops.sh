#!/usr/bin/env bash
# fa's training step against the two PyTorch loops of scripts/torch_loops.py, in alternating
# rounds on this machine, and fa's ablations in the same sitting. Prints every round, then
# a markdown table of medians and ratios (docs/benchmarks.md, "The quiet-machine comparison").
#
#   scripts/compare-loops.sh [--rounds N] [--batch N] [--data DIR] [--fa PATH]
#
# Needs a release build (cargo build --release), the venv of ./dev (.venv/bin/python with
# torch and torchvision) and CIFAR-10's archives under DIR/cifar10 (default ../shared/datasets).
# Each fa variant is `fa-torch train` of models/cifar10/parallel_predictor.fa, cell fa=nn, for
# 8 steps; its figure is the median images/s of steps 3-8 of metrics.jsonl. Each loop prints
# the median of its six timed steps. A round runs every variant once, in the same order.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5
batch=64
data=../shared/datasets
fa=target/release/fa-torch
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --fa) fa=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--batch N] [--data DIR] [--fa PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$fa" ] || { echo "no $fa: run cargo build --release" >&2; exit 2; }
[ -f "$data/cifar10/train.tar.gz" ] || { echo "no $data/cifar10/train.tar.gz" >&2; exit 2; }

# name|environment (fa variants) — the first is fa as shipped.
variants=(
  "fa|"
  "fa, FA_OPTIM_FUSED=1|FA_OPTIM_FUSED=1"
  "fa, FA_HOST_ALLOC=default|FA_HOST_ALLOC=default"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results.tsv

for round in $(seq 1 "$rounds"); do
  for variant in "${variants[@]}"; do
    name=${variant%%|*}
    env_vars=${variant#*|}
    rm -rf "$work/run"
    env $env_vars "$fa" train models/cifar10/parallel_predictor.fa --set fa=nn \
      --set data.batch="$batch" --max-steps 8 --no-eval --device cpu --data-root "$data" \
      --out "$work/run" --log-format quiet --no-tensorboard >/dev/null
    rate=$(python3 -c 'import json,statistics,sys
r=[json.loads(l) for l in open(sys.argv[1])]
print(round(statistics.median(x["images_per_s"] for x in r if x["kind"]=="step" and x["step"]>=3),1))' "$work/run/metrics.jsonl")
    printf '%s\t%s\n' "$name" "$rate" | tee -a "$results"
  done
  for loop in typical expert; do
    rate=$(.venv/bin/python scripts/torch_loops.py --loop "$loop" --train "$data/cifar10/train.tar.gz" \
      --batch "$batch" --steps 6 --warmup 2 | tail -1 |
      python3 -c 'import json,sys;print(round(json.loads(sys.stdin.read())["images_per_s"],1))')
    printf '%s\t%s\n' "PyTorch $loop" "$rate" | tee -a "$results"
  done
  echo "round $round done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
done

python3 - "$results" "$batch" <<'EOF'
import collections, statistics, sys
rates = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, rate = line.rstrip("\n").split("\t")
    rates.setdefault(name, []).append(float(rate))
median = {name: statistics.median(values) for name, values in rates.items()}
typical, expert = median["PyTorch typical"], median["PyTorch expert"]
print(f"\nbatch {sys.argv[2]}, images/s, {len(rates['fa'])} rounds")
print("| loop | rounds | median | / typical | / expert |")
print("|---|---|---|---|---|")
for name, values in rates.items():
    m = median[name]
    print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | **{m:.1f}** "
          f"| {m / typical:.2f} | {m / expert:.2f} |")
EOF
