#!/usr/bin/env bash
# The prepared performance check of fa (issue 12): one unattended run that measures fa and the
# two PyTorch loops of scripts/torch_loops.py on the same machine and writes everything into
# one folder, each section's results as soon as they exist.
#
#   scripts/gpu-check.sh OUT [--small] [--device cuda|cpu|cuda:N]
#
# OUT receives results.md (one markdown table per section) and results.json (every figure),
# both rewritten after each section, and the logs of every command under OUT/logs/. A section
# that fails or runs past its time limit is recorded as such; the next one still runs.
#
# Full mode (the default; on one H100/H200 in at most about 9 minutes): `fa doctor`; the
# training step of models/cifar10/parallel_predictor.fa, cell fa=nn (ResNet-18, CIFAR stem,
# NN FA from 16,384) at batch 512 in bf16 for fa (also with SGD's fused kernel,
# FA_OPTIM_FUSED=1) and for both PyTorch loops (the expert one
# with and without torch.compile), images/s and peak memory; the NN-FA share of fa's step
# at banks of 16,384 and 65,536; a short CIFAR-10 pre-training of the cells fa=none and fa=nn
# (same seed) with the kNN evaluation; a one-rank data-parallel job (NCCL on CUDA).
# --small: the same sections at small sizes on the CPU (batch 16, a few steps, banks of 1,024
# and 4,096, 320 training and 200 test images, no torch.compile), in at most about 3 minutes on a quiet 2-core
# machine; tests/gpu_check.rs runs it.
#
# What it needs, found in this order:
# - the fa executables: $FA_BIN, else the bundle's bin/ beside this script's folder, else
#   target/release/ of the checkout;
# - models/ and scripts/torch_loops.py: the bundle's or the checkout's (this script's parent);
# - CIFAR-10 as cifar10/{train,test}.tar.gz: $FA_DATA_ROOT, else the bundle's data/;
# - Python with torch 2.11 and torchvision: $PYTHON, else python3 (its libtorch is the one
#   the fa executables load, through LD_LIBRARY_PATH).
# No network and no Rust toolchain are used. `scripts/gpu-bundle.sh` builds the bundle.
set -uo pipefail

usage() {
    sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

out=""
small=0
device=""
while [ $# -gt 0 ]; do
    case "$1" in
        --small) small=1 ;;
        --device) shift; device="${1:-}" ;;
        -h|--help) usage ;;
        -*) echo "gpu-check: unknown option $1" >&2; usage ;;
        *) [ -z "$out" ] || usage; out="$1" ;;
    esac
    shift
done
[ -n "$out" ] || usage

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python="${PYTHON:-python3}"
bin="${FA_BIN:-}"
if [ -z "$bin" ]; then
    if [ -x "$root/bin/fa-torch" ]; then bin="$root/bin"; else bin="$root/target/release"; fi
fi
data_root="${FA_DATA_ROOT:-$root/data}"
if [ ! -f "$data_root/cifar10/train.tar.gz" ] && [ -f "$root/data/cifar10/train.tar.gz" ]; then
    data_root="$root/data"
fi
for needed in "$bin/fa-torch" "$root/models/cifar10/parallel_predictor.fa" "$here/torch_loops.py" \
    "$data_root/cifar10/train.tar.gz" "$data_root/cifar10/test.tar.gz"; do
    if [ ! -e "$needed" ]; then
        echo "gpu-check: $needed is missing (see the header of $0)" >&2
        exit 2
    fi
done
if ! torch_lib=$("$python" -c 'import os, torch, torchvision; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null); then
    echo "gpu-check: $python cannot import torch and torchvision (set PYTHON)" >&2
    exit 2
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "$device" ]; then
    if [ "$small" = 1 ]; then device=cpu; else device=cuda; fi
fi

mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
json="$out/results.json"
markdown="$out/results.md"
model="$root/models/cifar10/parallel_predictor.fa"

if [ "$small" = 1 ]; then
    batch=16; steps=3; warmup=1; banks="1024 4096"; bank=4096; limit=256; precision=f32
    pretrain_epochs=1; step_limit=120; compile_too=0
    # A small copy of CIFAR-10 (32 training and 20 test images per class) keeps the kNN
    # evaluation of the pre-training section within seconds on a CPU.
    "$python" - "$data_root" "$out/small-data" <<'EOF' || exit 1
import os, sys, tarfile
source, target = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(target, "cifar10"), exist_ok=True)
for split, per_class in (("train", 32), ("test", 20)):
    counts = {}
    with tarfile.open(os.path.join(source, "cifar10", f"{split}.tar.gz"), "r:gz") as tar_in, \
            tarfile.open(os.path.join(target, "cifar10", f"{split}.tar.gz"), "w:gz") as tar_out:
        for member in tar_in:
            if not member.isfile():
                continue
            label = member.name.split("/")[-2]
            if counts.get(label, 0) >= per_class:
                continue
            counts[label] = counts.get(label, 0) + 1
            tar_out.addfile(member, tar_in.extractfile(member))
EOF
    data_root="$out/small-data"
    pretrain_root="$data_root"
    pretrain_sets=(--set data.batch=32 --set train.epochs=1)
else
    batch=512; steps=20; warmup=5; banks="16384 65536"; bank=16384; limit=10240; precision=bf16
    pretrain_epochs=3; step_limit=150; compile_too=1
    pretrain_root="$data_root"
    pretrain_sets=(--set train.epochs=$pretrain_epochs)
fi
python_steps=$((steps < 8 ? steps : 8))

# The results so far, as JSON; each section adds its key with `record KEY JSON`.
echo '{}' > "$json"
{
    echo "# fa performance check"
    echo
    echo "Started $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), device $device, mode $([ "$small" = 1 ] && echo small || echo full)."
    echo "Model: models/cifar10/parallel_predictor.fa, cell fa=nn, unless a section says otherwise."
    echo
} > "$markdown"

record() {
    "$python" - "$json" "$1" "$2" <<'EOF'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(path) as file:
    results = json.load(file)
results[key] = value
with open(path + ".tmp", "w") as file:
    json.dump(results, file, indent=2)
import os
os.replace(path + ".tmp", path)
EOF
}

# Runs a command with a time limit, its output in logs/NAME.log; returns its status. The
# command runs in the background so that a signal to this script (a job's time limit) stops
# it too, through the trap below, rather than leaving it running.
child=""
trap 'if [ -n "$child" ]; then kill "$child" 2>/dev/null; fi; exit 143' TERM INT HUP
run() {
    local name="$1" limit="$2" status
    shift 2
    timeout --kill-after=10 "$limit" "$@" > "$out/logs/$name.log" 2>&1 &
    child=$!
    wait "$child"
    status=$?
    child=""
    return "$status"
}

# fa's training step: median images/s and ms/step of the steps after the warm-up, from the
# run's metrics.jsonl, as a JSON object (or {"error": ...}) in logs/NAME.json. Long commands
# run in this shell, never inside $(...), so that the trap above can stop them.
fa_step() {
    local name="$1" limit="$2" file="$3"
    shift 3
    local run_dir="$out/runs/$name"
    rm -rf "$run_dir"
    if run "$name" "$limit" "$bin/fa-torch" train "$file" --device "$device" \
        --data-root "$data_root" --out "$run_dir" --log-format plain --no-eval \
        --max-steps $((warmup + steps)) --precision "$precision" \
        --set data.batch=$batch "$@"; then
        "$python" - "$run_dir" "$warmup" "$batch" > "$out/logs/$name.json" <<'EOF'
import json, statistics, sys
run, warmup, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
records = [json.loads(line) for line in open(f"{run}/metrics.jsonl") if line.strip()]
steps = [r for r in records if r.get("kind") == "step"][warmup:]
rate = statistics.median(r["images_per_s"] for r in steps)
summary = json.load(open(f"{run}/summary.json"))
print(json.dumps({"images_per_s": rate, "ms_per_step": 1000 * batch / rate,
                  "peak_memory": summary.get("peak_memory"), "steps": len(steps)}))
EOF
    else
        echo "{\"error\": \"exit $? (logs/$name.log)\"}" > "$out/logs/$name.json"
    fi
}

# One PyTorch loop's figures, as a JSON object in logs/NAME.json.
torch_loop() {
    local name="$1" limit="$2"
    shift 2
    if run "$name" "$limit" "$python" "$here/torch_loops.py" --train "$data_root/cifar10/train.tar.gz" \
        --limit "$limit_images" --device "$device" --batch "$batch" --bank "$bank" \
        --steps "$python_steps" --warmup 2 --precision "$precision" "$@"; then
        tail -n 1 "$out/logs/$name.log" > "$out/logs/$name.json"
    else
        echo "{\"error\": \"exit $? (logs/$name.log)\"}" > "$out/logs/$name.json"
    fi
}
result() { cat "$out/logs/$1.json"; }
limit_images=$limit

# --- fa doctor
if run doctor 60 "$bin/fa-torch" doctor; then doctor_status=ok; else doctor_status="failed (exit $?)"; fi
record doctor "$("$python" -c 'import json, sys; print(json.dumps({"status": sys.argv[1], "output": open(sys.argv[2]).read()}))' "$doctor_status" "$out/logs/doctor.log")"
{
    echo "## fa doctor ($doctor_status)"
    echo
    echo '```text'
    cat "$out/logs/doctor.log"
    echo '```'
    echo
} >> "$markdown"

# --- Training step: fa against the PyTorch loops
fa_step step-fa "$step_limit" "$model" --set fa=nn
# The same with SGD's fused kernel (opt-in; on a GPU it replaces several multi-tensor launches).
export FA_OPTIM_FUSED=1
fa_step step-fa-fused "$step_limit" "$model" --set fa=nn
unset FA_OPTIM_FUSED
torch_loop step-typical "$step_limit" --loop typical
torch_loop step-expert "$step_limit" --loop expert
fa_result=$(result step-fa)
fa_fused=$(result step-fa-fused)
typical=$(result step-typical)
expert=$(result step-expert)
compiled='{"skipped": "small mode"}'
if [ "$compile_too" = 1 ]; then
    torch_loop step-expert-compile "$((step_limit + 60))" --loop expert --compile
    compiled=$(result step-expert-compile)
fi
record step "{\"batch\": $batch, \"precision\": \"$precision\", \"fa\": $fa_result, \"fa_fused\": $fa_fused, \"typical\": $typical, \"expert\": $expert, \"expert_compile\": $compiled}"
"$python" - "$json" "$batch" "$precision" >> "$markdown" <<'EOF'
import json, sys
step = json.load(open(sys.argv[1]))["step"]
print(f"## Training step (batch {sys.argv[2]}, {sys.argv[3]})\n")
print("| loop | images/s | ms/step | peak memory MiB |")
print("|---|---|---|---|")
for key, label in (("fa", "fa train"), ("fa_fused", "fa train, fused SGD (FA_OPTIM_FUSED=1)"), ("typical", "PyTorch typical"), ("expert", "PyTorch expert"), ("expert_compile", "PyTorch expert + torch.compile")):
    row = step[key]
    if "images_per_s" not in row:
        print(f"| {label} | {row.get('error') or row.get('skipped')} | | |")
        continue
    memory = row.get("peak_memory_mib")
    if memory is None and row.get("peak_memory"):
        peak = row["peak_memory"]
        memory = peak.get("cuda_mib") or peak.get("rss_mib")
    memory = "" if memory is None else f"{memory:.0f}"
    print(f"| {label} | {row['images_per_s']:.1f} | {row['ms_per_step']:.1f} | {memory} |")
print()
EOF

# --- NN-FA share of fa's step
# The bank size is not a --set key: a copy of the model folder with the nn cell's bank changed.
fa_step share-none "$step_limit" "$model" --set fa=none
share_rows="\"none\": $(result share-none)"
for size in $banks; do
    mkdir -p "$out/models/bank-$size"
    cp "$root/models/cifar10/"*.fa "$out/models/bank-$size/"
    sed -i "s/^  nn: fa nn(bank: 16384,/  nn: fa nn(bank: $size,/" "$out/models/bank-$size/parallel_predictor.fa"
    grep -q "nn(bank: $size," "$out/models/bank-$size/parallel_predictor.fa" \
        || echo "gpu-check: the nn cell of $model no longer reads 'nn: fa nn(bank: 16384,'" >&2
    fa_step "share-nn-$size" "$step_limit" "$out/models/bank-$size/parallel_predictor.fa" --set fa=nn
    share_rows="$share_rows, \"nn_$size\": $(result "share-nn-$size")"
done
record nn_share "{$share_rows}"
"$python" - "$json" >> "$markdown" <<'EOF'
import json, sys
share = json.load(open(sys.argv[1]))["nn_share"]
print("## NN-FA share of fa's step\n")
print("| FA | ms/step | share of the step |")
print("|---|---|---|")
none = share["none"].get("ms_per_step")
for key, row in share.items():
    if "ms_per_step" not in row:
        print(f"| {key} | {row.get('error')} | |")
        continue
    fraction = "" if key == "none" or none is None else f"{100 * (1 - none / row['ms_per_step']):.1f}%"
    print(f"| {key.replace('_', ' bank ')} | {row['ms_per_step']:.1f} | {fraction} |")
print()
EOF

# --- Short pre-training of the cells fa=none and fa=nn with kNN
pretrain_rows=""
for cell in none nn; do
    run_dir="$out/runs/pretrain-$cell"
    rm -rf "$run_dir"
    if run "pretrain-$cell" "$((step_limit * 2))" "$bin/fa-torch" train "$model" --set "fa=$cell" \
        --device "$device" --data-root "$pretrain_root" --out "$run_dir" --log-format plain \
        --precision "$precision" "${pretrain_sets[@]}"; then
        row=$(cat "$run_dir/summary.json")
    else
        row="{\"error\": \"exit $? (logs/pretrain-$cell.log)\"}"
    fi
    pretrain_rows="$pretrain_rows${pretrain_rows:+, }\"$cell\": $row"
done
record pretrain "{\"epochs\": $pretrain_epochs, \"cells\": {$pretrain_rows}}"
"$python" - "$json" >> "$markdown" <<'EOF'
import json, sys
pretrain = json.load(open(sys.argv[1]))["pretrain"]
print(f"## Pre-training, {pretrain['epochs']} epoch(s), kNN top-1\n")
print("| cell | kNN top-1 % | random init % | training s | whole run s | peak memory MiB |")
print("|---|---|---|---|---|---|")
for cell, row in pretrain["cells"].items():
    if "error" in row:
        print(f"| {cell} | {row['error']} | | | | |")
        continue
    top1 = lambda key: "" if not row.get(key) else f"{row[key]['top1']:.2f}"
    peak = row.get("peak_memory") or {}
    memory = peak.get("cuda_mib") or peak.get("rss_mib")
    memory = "" if memory is None else f"{memory:.0f}"
    print(f"| {cell} | {top1('knn')} | {top1('random_init_knn')} | {row['train_seconds']:.1f} | {row['seconds']:.1f} | {memory} |")
print()
EOF
# --- Data-parallel smoke test: a one-rank job through c10d (NCCL on CUDA, Gloo on the CPU),
# the rank started as `fa train --nproc` starts each of its ranks. One GPU cannot test a
# collective between GPUs; this shows that the NCCL group forms and trains a few steps.
smoke_dir="$out/runs/dist-smoke"
rm -rf "$smoke_dir" "$out/runs/dist-smoke.store"
if FA_RANK=0 FA_WORLD_SIZE=1 FA_RENDEZVOUS_FILE="$out/runs/dist-smoke.store" \
    run dist-smoke "$step_limit" "$bin/fa-torch" train "$model" --set fa=nn --device "$device" \
    --data-root "$data_root" --out "$smoke_dir" --log-format plain --no-eval --max-steps 3 \
    --precision "$precision" --set data.batch=$batch; then
    smoke_status=ok
else
    smoke_status="failed (exit $?)"
fi
backend=$([ "$device" = cpu ] && echo gloo || echo nccl)
record dist_smoke "{\"backend\": \"$backend\", \"status\": \"$smoke_status\"}"
{
    echo "## Data-parallel smoke test (one rank, $backend): $smoke_status"
    echo
    echo '```text'
    grep -E "ranks|rank [0-9]|error|NCCL|Gloo" "$out/logs/dist-smoke.log" | head -n 5
    echo '```'
    echo
} >> "$markdown"

echo "Finished $(date -u +%Y-%m-%dT%H:%M:%SZ)." >> "$markdown"
echo "gpu-check: results in $markdown and $json"
