#!/usr/bin/env bash
# Opens a .fa file with an error in Neovim (headless, no user configuration), connects it to
# `fa lsp` and prints the diagnostics Neovim received. Installs Debian's neovim when missing.
#
#   editors/neovim/verify.sh [FILE]     default: tests/cli/error.fa; FA=path/to/fa to choose fa
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
file=${1:-$root/tests/cli/error.fa}
if ! command -v nvim >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq neovim >/dev/null
fi
export FA=${FA:-$root/target/debug/fa}
if [ ! -x "$FA" ]; then
    cargo build --manifest-path "$root/Cargo.toml" --quiet --bin fa
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
OUT="$out" timeout 60 nvim --headless -u NONE -i NONE -n \
    -c "luafile $root/editors/neovim/verify.lua" "$file"
nvim --version | head -1
cat "$out"
