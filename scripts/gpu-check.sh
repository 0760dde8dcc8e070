#!/usr/bin/env bash
# scripts/gpu-check.sh [RUN_DIR]: the GPU check from a checkout, on a Linux x64 machine with an NVIDIA GPU AND a
# network (it runs npm ci, npm run install:cuda, pip and apt-get as needed). On a GPU machine without network or
# Node.js, use the offline bundle instead (`npm run gpu:bundle`, then gpu-bundle/run.sh OUT_DIR; README "Checking a
# GPU"): that is the documented way. This script remains for what the bundle leaves out: the parity matrix against
# the tfjs reference, bench:infer's backends, and @tensorflow/tfjs-node-gpu.
#
#   1. installs onnxruntime-node's CUDA provider if it is missing (`npm run install:cuda`), and finds the CUDA 12
#      and cuDNN 9 libraries it loads (system, pip wheels, or a pip install into ~/.cache/capsnet-cuda-libs);
#   2. makes Vulkan reach the GPU for WebGPU (Vulkan loader, NVIDIA's Vulkan ICD);
#   3. runs the inference benchmark (bench/infer.ts: ORT cpu 1/2 threads, CUDA, WebGPU, ORT-web wasm, tfjs);
#   4. runs the parity matrix against the tfjs reference: node-cpu, node-cuda, node-webgpu (both required),
#      node-wasm (headless Chromium is left out: on a display-less server it would not reach the GPU);
#   4b. exports the same checkpoint as fp16 with fp16 compute (`--precision fp16`), times it on CUDA and WebGPU
#      (half kernels there) and checks its parity on node-cpu, node-cuda and node-webgpu (both required; a WebGPU
#      adapter without shader-f16 is reported as a skip with the reason, and fails the check) within the
#      fp16-compute tolerances (parity/matrix.ts);
#   5. times training on the GPU: a paper-size step (batch 32) on tfjs's webgpu backend (Dawn over the GPU's Vulkan
#      driver) and on tensorflow where @tensorflow/tfjs-node-gpu loads (bench/train.ts), then one
#      small-preset epoch on the embedded digits with the faster of the two that loads (`capsnet train`);
#   6. prints one table (parity, inference and training rows), writes it all to summary.json, and exits non-zero
#      if parity failed.
#
# RUN_DIR: a trained run directory (capsnet train --out); default: an untrained paper-size checkpoint, which
# benchmarks the real model size (parity still compares every output; its argmax are near-ties).
# Budget: 8 minutes (GPU_CHECK_BUDGET_S) on a machine where node_modules is installed, the CUDA downloads included;
# the fp16-compute checks get at most 2 x 90 s; training gets what inference and parity leave (at most
# TRAIN_BUDGET_S, 200 s), and each step is cut short rather than overrun.
# Results: bench-results/gpu-check/{parity,infer,parity-fp16,infer-fp16,train}.json, epoch/metrics.jsonl, summary.json.
set -uo pipefail
cd "$(dirname "$0")/.."
# Run the TypeScript sources of the workspace packages (their exports' "capsnet-source" condition).
export NODE_OPTIONS="${NODE_OPTIONS:-} --conditions=capsnet-source"
BUDGET=${GPU_CHECK_BUDGET_S:-480}
TRAIN_BUDGET=${TRAIN_BUDGET_S:-200}
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
  for site in $(python3 -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null); do
    add_nvidia_wheels "$site"
  done
fi
CUDA_LIBS=${CAPSNET_CUDA_LIBS:-$HOME/.cache/capsnet-cuda-libs}
add_nvidia_wheels "$CUDA_LIBS"
if [ -n "$(missing)" ] && command -v pip3 >/dev/null; then
  echo "missing: $(missing | tr '\n' ' ')-> pip install into $CUDA_LIBS"
  timeout $(( $(left) - 150 > 30 ? $(left) - 150 : 30 )) pip3 install --quiet --target "$CUDA_LIBS" \
    nvidia-cuda-runtime-cu12 nvidia-cublas-cu12 "nvidia-cudnn-cu12>=9,<10" nvidia-cufft-cu12 nvidia-curand-cu12 || echo "pip install failed or timed out"
  add_nvidia_wheels "$CUDA_LIBS"
fi
[ -z "$(missing)" ] && echo "CUDA provider and its libraries: OK" ||
  echo "still missing: $(missing | tr '\n' ' ')(node-cuda will fail; install CUDA 12 + cuDNN 9)"

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
node --input-type=module -e "import { create } from 'webgpu'; const a = await create([]).requestAdapter(); const i = a?.info;
  console.log('Dawn adapter:', i ? [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') : 'none');
  process.exit(0)" 2>/dev/null || echo "Dawn adapter: probe failed"

MODEL_ARGS=()
if [ $# -ge 1 ]; then
  RUN=$1
  step "export $RUN"
  npx capsnet export "$RUN" -o "$OUT/model.onnx" || die "export failed"
  MODEL="$OUT/model.onnx"
  MODEL_ARGS=(--model "$MODEL" --checkpoint "$RUN")
fi

step "inference benchmark"
rm -f "$OUT"/{parity,infer,parity-fp16,infer-fp16,train}.json "$OUT/epoch.status"
timeout $(( $(left) - TRAIN_BUDGET - 100 )) node --import tsx bench/infer.ts \
  --backends ort-node-cpu-1t,ort-node-cpu-2t,ort-node-cuda,ort-node-webgpu,ort-web-wasm,tfjs ${MODEL_ARGS[@]+"${MODEL_ARGS[@]}"} --out "$OUT/infer.json" \
  --latency-runs 10 --throughput-runs 3 --timeout 90 || echo "benchmark did not finish (see above)"
if [ $# -eq 0 ]; then RUN=bench-results/models/paper; MODEL=$RUN/model.onnx; fi

step "parity"
[ -f "$MODEL" ] || die "no model at $MODEL"
timeout $(( $(left) - TRAIN_BUDGET )) npx capsnet parity "$MODEL" --checkpoint "$RUN" \
  --devices node-cpu,node-cuda,node-webgpu,node-wasm --require node-cuda,node-webgpu \
  --digits 8 --random 4 --webgpu-count 14 --latency-runs 10 --webgpu-latency-runs 10 --timeout 90 --json "$OUT/parity.json"
PARITY=$?

step "fp16 compute: export, time on CUDA and WebGPU, parity"
# The fp16 export computes its convolutions, u_hat and decoder in half precision: CUDA's and WebGPU's half kernels.
rm -f "$OUT"/model.fp16.onnx "$OUT"/model.fp16.decoder.onnx
PARITY16=1
# Each of its two runs gets at most 90 s, less when that would leave training under half its budget.
F16=$(( ($(left) - TRAIN_BUDGET / 2) / 2 )); [ "$F16" -gt 90 ] && F16=90; [ "$F16" -lt 20 ] && F16=20
if npx capsnet export "$RUN" --precision fp16 -o "$OUT/model.fp16.onnx"; then
  timeout "$F16" node --import tsx bench/infer.ts --backends ort-node-cuda,ort-node-webgpu --model "$OUT/model.fp16.onnx" --checkpoint "$RUN" \
    --out "$OUT/infer-fp16.json" --latency-runs 10 --throughput-runs 3 --timeout 60 || echo "fp16 benchmark did not finish (see above)"
  timeout "$F16" npx capsnet parity "$OUT/model.fp16.onnx" --checkpoint "$RUN" \
    --devices node-cpu,node-cuda,node-webgpu --require node-cuda,node-webgpu \
    --digits 8 --random 4 --webgpu-count 14 --latency-runs 10 --webgpu-latency-runs 10 --timeout 60 --json "$OUT/parity-fp16.json"
  PARITY16=$?
else
  echo "fp16 export failed"
fi

step "training: a paper-size step on webgpu and tensorflow"
# Half of what is left for the step timings (each backend in its own process, cut off by bench-train's timeout).
TRAIN_LEFT=$(( $(left) - 10 ))
timeout $(( TRAIN_LEFT / 2 )) node --import tsx bench/train.ts --backends webgpu,tensorflow --batch 32 --steps 3 \
  --no-torch --no-parts --timeout-s $(( TRAIN_LEFT / 4 )) --out "$OUT/train.json" || echo "training benchmark did not finish (see above)"

EPOCH_BACKEND=webgpu
node -e "require('@tensorflow/tfjs-node-gpu')" >/dev/null 2>&1 && EPOCH_BACKEND=tensorflow
step "training: one small-preset epoch on $EPOCH_BACKEND"
rm -rf "$OUT/epoch"
timeout $(( $(left) - 10 )) npx capsnet train --preset small --epochs 1 --batch-size 128 --backend "$EPOCH_BACKEND" \
  --checkpoint-every 0 --test-limit 2000 --no-progress --out "$OUT/epoch"
EPOCH_RC=$?
echo "backend $EPOCH_BACKEND, batch 128, exit $EPOCH_RC$([ $EPOCH_RC = 124 ] && echo ' (out of time)')" > "$OUT/epoch.status"

step "summary ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
node --import tsx packages/capsnet/src/parity/gpu-table.ts "$OUT" --json "$OUT/summary.json"
echo "total: ${SECONDS}s; details in $OUT/"
[ "$PARITY" = 0 ] && [ "$PARITY16" = 0 ]
