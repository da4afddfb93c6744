#!/usr/bin/env bash
# Installs what coopc needs on a Debian 12 machine: LLVM/MLIR 22 and Polly (melior and tblgen link against them),
# the libraries they link with, and the Fashion-MNIST data set used by the main experiment.
# Safe to run again: packages already present are skipped by apt.
set -euo pipefail

packages=(
    llvm-22-dev libmlir-22-dev mlir-22-tools libclang-22-dev libpolly-22-dev
    libzstd-dev libz3-dev libxml2-dev zlib1g-dev
    dataset-fashion-mnist
)

missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends \
        "${missing[@]}"
fi

command -v cargo >/dev/null || {
    echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
}
echo "setup: all packages present"
