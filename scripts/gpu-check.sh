#!/usr/bin/env bash
# scripts/gpu-check.sh [RUN_DIR]: the GPU check, on a Linux x64 machine with an NVIDIA GPU, in one command.
#
#   1. installs onnxruntime-node's CUDA provider if it is missing (`npm run install:cuda`), and finds the CUDA 12
#      and cuDNN 9 libraries it loads (system, pip wheels, or a pip install into ~/.cache/capsnet-cuda-libs);
#   2. makes Vulkan reach the GPU for WebGPU (Vulkan loader, NVIDIA's Vulkan ICD);
#   3. runs the inference benchmark (scripts/bench-infer.ts: ORT cpu 1/2 threads, CUDA, WebGPU, ORT-web wasm, tfjs);
#   4. runs the parity matrix against the tfjs reference: node-cpu, node-cuda, node-webgpu (both required),
#      node-wasm (headless Chromium is left out: on a display-less server it would not reach the GPU);
#   5. prints one table (parity columns and benchmark columns per backend) and exits non-zero if parity failed.
#
# RUN_DIR: a trained run directory (capsnet train --out); default: an untrained paper-size checkpoint, which
# benchmarks the real model size (parity still compares every output; its argmax are near-ties).
# Budget: under 5 minutes on a machine where node_modules is installed (the CUDA downloads take part of it).
# Results: bench-results/gpu-check/{parity,infer}.json.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${GPU_CHECK_BUDGET_S:-290}
OUT=bench-results/gpu-check
mkdir -p "$OUT"

step() { printf '\n== %s  [%ds]\n' "$*" "$SECONDS"; }
die() { echo "gpu-check: $*" >&2; exit 1; }
left() { echo $((BUDGET - SECONDS)); }

step "GPU"
command -v nvidia-smi >/dev/null || die "no nvidia-smi: this check needs an NVIDIA GPU and its driver"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || die "nvidia-smi failed: is the driver loaded?"
[ "$(uname -sm)" = "Linux x86_64" ] || die "onnxruntime-node's CUDA provider exists for Linux x64 only (this is $(uname -sm))"
[ -d node_modules/onnxruntime-node ] || npm ci --no-audit --no-fund || die "npm ci failed"

step "CUDA provider"
BIN=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
if [ ! -f "$BIN/libonnxruntime_providers_cuda.so" ]; then
  timeout "$(left)" npm run install:cuda || die "npm run install:cuda failed (it downloads Microsoft.ML.OnnxRuntime.Gpu.Linux from nuget.org)"
fi
missing() { LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}" ldd "$BIN/libonnxruntime_providers_cuda.so" | awk '/not found/ {print $1}'; }
add_nvidia_wheels() { # lib dirs of pip's nvidia-* wheels under $1
  for d in "$1"/nvidia/*/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH
}
if [ -n "$(missing)" ] && command -v python3 >/dev/null; then
  for site in $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null); do add_nvidia_wheels "$site"; done
fi
CUDA_LIBS=${CAPSNET_CUDA_LIBS:-$HOME/.cache/capsnet-cuda-libs}
add_nvidia_wheels "$CUDA_LIBS"
if [ -n "$(missing)" ] && command -v pip3 >/dev/null; then
  echo "missing: $(missing | tr '\n' ' ')-> pip install into $CUDA_LIBS"
  timeout $(( $(left) - 150 > 30 ? $(left) - 150 : 30 )) pip3 install --quiet --target "$CUDA_LIBS" \
    nvidia-cuda-runtime-cu12 nvidia-cublas-cu12 "nvidia-cudnn-cu12>=9,<10" nvidia-cufft-cu12 nvidia-curand-cu12 || echo "pip install failed or timed out"
  add_nvidia_wheels "$CUDA_LIBS"
fi
[ -z "$(missing)" ] && echo "CUDA provider and its libraries: OK" || echo "still missing: $(missing | tr '\n' ' ')(node-cuda will fail; install CUDA 12 + cuDNN 9)"

step "Vulkan for WebGPU"
if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    timeout 60 apt-get install -y -qq libvulkan1 >/dev/null 2>&1 || timeout 90 sh -c 'apt-get update -qq && apt-get install -y -qq libvulkan1' >/dev/null 2>&1
  fi
  ldconfig -p | grep -q 'libvulkan.so.1' || echo "no Vulkan loader (libvulkan.so.1): install libvulkan1; node-webgpu will fail"
fi
if [ -z "${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json >/dev/null 2>&1; then
  # Containers often get the driver's Vulkan library without its ICD file (NVIDIA_DRIVER_CAPABILITIES lacks "graphics").
  GLX=$(ldconfig -p | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
  if [ -n "$GLX" ]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$GLX" > "$OUT/nvidia_icd.json"
    export VK_ICD_FILENAMES="$PWD/$OUT/nvidia_icd.json"
    echo "no NVIDIA Vulkan ICD file: wrote $VK_ICD_FILENAMES for $GLX"
  else
    echo "no NVIDIA Vulkan driver (libGLX_nvidia.so.0); in a container set NVIDIA_DRIVER_CAPABILITIES=all. node-webgpu will fail"
  fi
fi
node --input-type=module -e "import { create } from 'webgpu'; const a = await create([]).requestAdapter(); const i = a?.info; console.log('Dawn adapter:', i ? [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') : 'none'); process.exit(0)" 2>/dev/null || echo "Dawn adapter: probe failed"

MODEL_ARGS=()
if [ $# -ge 1 ]; then
  RUN=$1
  step "export $RUN"
  npx capsnet export "$RUN" -o "$OUT/model.onnx" || die "export failed"
  MODEL="$OUT/model.onnx"
  MODEL_ARGS=(--model "$MODEL" --checkpoint "$RUN")
fi

step "inference benchmark"
timeout $(( $(left) - 100 )) node --import tsx scripts/bench-infer.ts ${MODEL_ARGS[@]+"${MODEL_ARGS[@]}"} --out "$OUT/infer.json" \
  --latency-runs 10 --throughput-runs 3 --timeout 90 || echo "benchmark did not finish (see above)"
if [ $# -eq 0 ]; then RUN=bench-results/models/paper; MODEL=$RUN/model.onnx; fi

step "parity"
[ -f "$MODEL" ] || die "no model at $MODEL"
timeout "$(left)" npx capsnet parity "$MODEL" --checkpoint "$RUN" \
  --backends node-cpu,node-cuda,node-webgpu,node-wasm --require node-cuda,node-webgpu \
  --digits 8 --random 4 --webgpu-count 14 --latency-runs 10 --webgpu-latency-runs 10 --timeout 90 --json "$OUT/parity.json"
PARITY=$?

step "summary ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
node --import tsx parity/gpu-table.ts "$OUT/parity.json" "$OUT/infer.json"
echo "total: ${SECONDS}s; details in $OUT/"
exit $PARITY
