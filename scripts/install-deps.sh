#!/usr/bin/env bash
# Installs the Debian packages the build needs when they are missing.
# Quiet and fast when everything is already there.
set -euo pipefail

# libopenblas0-pthread: the bench's unfused baseline dlopens libopenblas.so.0 (else its own GEMM);
# libbenchmark-dev: bench/ micro-benchmarks; python3-matplotlib: scripts/plot_sweep.py.
packages=(cmake ninja-build g++ make libgtest-dev libgmock-dev libbenchmark-dev libopenblas0-pthread python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
