#!/usr/bin/env bash
# Builds the self-contained bundle scripts/gpu-check.sh runs from on a GPU node that has a
# Python with torch 2.11 and torchvision but no Rust toolchain and no network:
#
#   scripts/gpu-bundle.sh [OUT.tar.gz]        (default: target/fa-gpu-check.tar.gz)
#
# The bundle holds the release executables `fa` and `fa-torch` (stripped), models/, the
# check and its PyTorch loops, and CIFAR-10 as data/cifar10/{train,test}.tar.gz, taken from
# $FA_DATA_ROOT or ../shared/datasets. It must stay under 64 MB; it is built here and never
# committed (the datasets are not part of the project). On the node:
#
#   tar xzf fa-gpu-check.tar.gz && fa-gpu-check/scripts/gpu-check.sh results
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="${1:-$root/target/fa-gpu-check.tar.gz}"
limit=$((64 * 1024 * 1024))

data=""
for candidate in "${FA_DATA_ROOT:-}" "$root/../shared/datasets"; do
    if [ -n "$candidate" ] && [ -f "$candidate/cifar10/train.tar.gz" ] && [ -f "$candidate/cifar10/test.tar.gz" ]; then
        data="$candidate"
        break
    fi
done
if [ -z "$data" ]; then
    echo "gpu-bundle: CIFAR-10 (cifar10/{train,test}.tar.gz) is in neither \$FA_DATA_ROOT nor ../shared/datasets" >&2
    exit 2
fi

(cd "$root" && cargo build --release --quiet --bin fa --bin fa-torch)

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
bundle="$staging/fa-gpu-check"
mkdir -p "$bundle/bin" "$bundle/scripts" "$bundle/data/cifar10"
for executable in fa fa-torch; do
    cp "$root/target/release/$executable" "$bundle/bin/"
    strip "$bundle/bin/$executable"
done
cp -r "$root/models" "$bundle/"
cp "$root/scripts/gpu-check.sh" "$root/scripts/torch_loops.py" "$bundle/scripts/"
cp "$data/cifar10/train.tar.gz" "$data/cifar10/test.tar.gz" "$bundle/data/cifar10/"
cat > "$bundle/README.md" <<EOF
# fa performance check

Built $(date -u +%Y-%m-%d) from commit $(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown).
Needs a Python with torch 2.11 and torchvision (\$PYTHON, else python3) and, for the full
check, a CUDA GPU. Run \`scripts/gpu-check.sh OUT\` (or \`--small\` on a CPU); the results are
OUT/results.md and OUT/results.json. CIFAR-10 (Krizhevsky, Nair and Hinton, 2009) is included
for this check only.
EOF
mkdir -p "$(dirname "$out")"
tar -czf "$out" -C "$staging" fa-gpu-check
size=$(stat -c %s "$out")
if [ "$size" -ge "$limit" ]; then
    echo "gpu-bundle: $out is $size bytes, over the 64 MB limit" >&2
    exit 1
fi
echo "gpu-bundle: $out ($((size / 1024 / 1024)) MB)"
