#!/usr/bin/env bash
# Which build of torch 2.13 `make install` puts in the venv when TORCH_BUILD is not given:
# prints cpu, cu126, cu129 or cu130 (the PyTorch wheel index https://download.pytorch.org/whl/<build>).
#
#   cpu    no NVIDIA driver (no nvidia-smi, or it finds no GPU), or a driver older than 525.60.13
#   cu126  CUDA 12.6, driver >= 525.60.13; the only build with kernels for Maxwell, Pascal and
#          Volta (compute capability 5.0-7.0, e.g. P100, V100), and up to Hopper (9.0)
#   cu130  CUDA 13.0, driver >= 580; Turing to Blackwell (7.5-12.0); PyPI's plain torch==2.13.0
#   cu129  CUDA 12.9, driver >= 525.60.13; Turing to Blackwell: for Blackwell with a driver < 580
#
# The choice goes to stderr with the reason; `make install TORCH_BUILD=...` overrides it.
set -euo pipefail

say() { echo "torch build: $*" >&2; }
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  say "cpu (no nvidia-smi)"; echo cpu; exit 0
fi
driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ')" || driver=""
caps="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' ')" || caps=""
if [ -z "$driver" ]; then
  say "cpu (nvidia-smi finds no GPU)"; echo cpu; exit 0
fi
if ! at_least "$driver" 525.60.13; then
  say "cpu (driver $driver; every CUDA build of torch 2.13 needs >= 525.60.13: upgrade the driver)"
  echo cpu; exit 0
fi
lowest="$(sort -V <<< "$caps" | head -n1)"
highest="$(sort -V <<< "$caps" | tail -n1)"
if [ -n "$lowest" ] && ! at_least "$lowest" 7.5; then
  build=cu126; why="compute capability $lowest needs the CUDA 12.6 build"
elif at_least "$driver" 580; then
  build=cu130; why="driver $driver >= 580"
elif [ -n "$highest" ] && at_least "$highest" 10.0; then
  build=cu129; why="compute capability $highest with driver $driver < 580"
else
  build=cu126; why="driver $driver < 580"
fi
say "$build ($why)"
echo "$build"
