#!/usr/bin/env bash
# gpu-bundle/run.sh OUT_DIR: the GPU check, offline, from what `npm run gpu:bundle` put beside this file.
#
# Unpacks node, onnxruntime-node, dawn.node, the bundled check, the data and (where the machine has no
# libvulkan.so.1) Debian's Vulkan loader into OUT_DIR/runtime, finds the NVIDIA Vulkan ICD, then runs each step
# in its own process, cut at its budget (`timeout`), 8 minutes in all (CAPSNET_GPU_CHECK_BUDGET_S):
#   a. inference on onnxruntime-node's WebGPU EP: parity vs ORT cpu (fp32, fp16 compute), throughput   130 s
#   b. training on tfjs-backend-webgpu (Dawn): a paper-size step at batch 32 and 128, a short real run   200 s
#   c. the same CapsNet in PyTorch on CUDA with this machine's python3 (skipped without torch+CUDA)      80 s
#   d. onnxruntime-node's CUDA EP, where libonnxruntime_providers_cuda.so is found (else a skip row)     40 s
#   e. one table with the ratios, and OUT_DIR/summary.json
# Never calls npm, npx, pip, apt-get or the network; writes only under OUT_DIR. Exit 0 when no row failed.
#
# Environment: VK_ICD_FILENAMES (a Vulkan ICD to use instead of NVIDIA's), CAPSNET_GPU_CHECK_TINY=1 (tiny sizes,
# for a software adapter), CAPSNET_ORT_CUDA_DIR (a folder with libonnxruntime_providers_cuda.so and
# libonnxruntime_providers_shared.so of the same ORT version), CAPSNET_PYTHON (default python3),
# CAPSNET_GPU_BUNDLE_UNPACK=python (unpack with python3's lzma even where tar has xz).
set -uo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 OUT_DIR" >&2; exit 2; fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOTAL=${CAPSNET_GPU_CHECK_BUDGET_S:-480}
mkdir -p "$1" || { echo "run.sh: cannot create $1" >&2; exit 2; }
OUT=$(cd "$1" && pwd)
RT=$OUT/runtime
mkdir -p "$RT" "$OUT/steps"
log() { printf '[%3ds] %s\n' "$SECONDS" "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(uname -sm)" = "Linux x86_64" ] || die "the bundle holds linux x86-64 binaries; this is $(uname -sm)"
[ -f "$HERE/BUNDLE.json" ] || die "no BUNDLE.json beside run.sh: build the bundle with npm run gpu:bundle"

# ---- unpack (xz through tar, or python3's lzma where tar has no xz)
use_tar() {
  [ "${CAPSNET_GPU_BUNDLE_UNPACK:-}" != python ] && command -v xz >/dev/null && tar --help 2>/dev/null | grep -q -- '--xz'
}
unpack() { # ARCHIVE DEST
  mkdir -p "$2"
  if use_tar; then
    tar -xJf "$1" -C "$2"
  elif command -v python3 >/dev/null; then
    python3 - "$1" "$2" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "r:xz") as t:
    if hasattr(tarfile, "data_filter"):
        t.extractall(sys.argv[2], filter="data")
    else:
        t.extractall(sys.argv[2])
PY
  else
    return 1
  fi
}
STAMP=$(cksum < "$HERE/BUNDLE.json" | cut -d' ' -f1)
if [ "$(cat "$RT/.unpacked" 2>/dev/null)" != "$STAMP" ]; then
  log "unpacking into $RT ($(use_tar && echo 'tar + xz' || echo "python3's lzma"))"
  rm -rf "$RT/node" "$RT/app" "$RT/data" "$RT/vulkan"
  unpack "$HERE/node.tar.xz" "$RT" || die "cannot unpack node.tar.xz: needs tar with xz, or python3"
  for part in ort dawn app; do unpack "$HERE/$part.tar.xz" "$RT/app" || die "cannot unpack $part.tar.xz"; done
  unpack "$HERE/data.tar.xz" "$RT" || die "cannot unpack data.tar.xz"
  echo "$STAMP" > "$RT/.unpacked"
fi
NODE=$RT/node/bin/node
APP=$RT/app/check.mjs
"$NODE" --version >/dev/null 2>&1 || die "the bundled node does not start here ($("$NODE" --version 2>&1 | tail -1))"

# ---- Vulkan: the loader (the system's, else the bundled .deb's) and the ICD (NVIDIA's, else VK_ICD_FILENAMES)
LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
if "$LDCONFIG" -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  LOADER="system ($("$LDCONFIG" -p | awk '/libvulkan\.so\.1 / {print $NF; exit}'))"
else
  DEB=$(ls "$HERE"/libvulkan1_*.deb 2>/dev/null | head -1)
  [ -n "$DEB" ] || die "no libvulkan.so.1 here and no libvulkan1 .deb in the bundle"
  if [ ! -d "$RT/vulkan" ]; then
    if [ "${CAPSNET_GPU_BUNDLE_UNPACK:-}" != python ] && command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$DEB" "$RT/vulkan" || die "dpkg-deb could not unpack $DEB"
    else
      # A .deb is an ar archive holding data.tar.*; python3 reads both.
      python3 - "$DEB" "$RT/vulkan" <<'PY' || die "could not unpack $DEB with python3"
import io, sys, tarfile
blob = open(sys.argv[1], "rb").read()
assert blob[:8] == b"!<arch>\n", "not an ar archive"
at = 8
while at < len(blob):
    name = blob[at:at + 16].decode().strip().rstrip("/")
    size = int(blob[at + 48:at + 58].decode().strip())
    body = blob[at + 60:at + 60 + size]
    if name.startswith("data.tar"):
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as t:
            t.extractall(sys.argv[2], filter="data") if hasattr(tarfile, "data_filter") else t.extractall(sys.argv[2])
        break
    at += 60 + size + (size & 1)
else:
    sys.exit("no data.tar in the .deb")
PY
    fi
  fi
  LIBDIR=$(dirname "$(find "$RT/vulkan" -name 'libvulkan.so.1' | head -1)")
  LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  LOADER="bundled $(basename "$DEB") ($LIBDIR)"
fi
export LD_LIBRARY_PATH
ICD=${VK_ICD_FILENAMES:-}
if [ -z "$ICD" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
           /etc/vulkan/icd.d/nvidia_icd*.json /usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$f" ] && { ICD=$f; break; }
  done
fi
if [ -z "$ICD" ]; then
  # Containers often get the driver's Vulkan library without its ICD file (NVIDIA_DRIVER_CAPABILITIES lacks graphics).
  GLX=$("$LDCONFIG" -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 / {print $NF; exit}')
  for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do [ -z "$GLX" ] && [ -f "$d/libGLX_nvidia.so.0" ] && GLX=$d/libGLX_nvidia.so.0; done
  if [ -n "$GLX" ]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$GLX" > "$OUT/nvidia_icd.json"
    ICD=$OUT/nvidia_icd.json
  fi
fi
if [ -n "$ICD" ]; then export VK_ICD_FILENAMES=$ICD; else ICD="none found (no NVIDIA Vulkan ICD and no libGLX_nvidia.so.0): WebGPU will find no adapter"; fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
GPU=$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
log "Vulkan ICD: $ICD"
log "Vulkan loader: $LOADER"
[ -n "$GPU" ] && log "GPU: $GPU"
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
printf '{"icd":"%s","loader":"%s","gpu":"%s","tiny":"%s"}\n' "$(esc "$ICD")" "$(esc "$LOADER")" "$(esc "$GPU")" "${CAPSNET_GPU_CHECK_TINY:-0}" > "$OUT/env.json"

# ---- the steps, each in its own process, cut at its budget
RESERVE=10 # for the table
step() { # NAME BUDGET ARGS...
  local name=$1 budget=$2; shift 2
  local left=$((TOTAL - SECONDS - RESERVE))
  [ "$budget" -gt "$left" ] && budget=$left
  rm -f "$OUT/steps/$name.json"
  if [ "$budget" -lt 15 ]; then
    log "step $name: not started, the budget is spent"
    echo "rc=125 seconds=0 budget=$budget" > "$OUT/steps/$name.status"
    return
  fi
  log "step $name (budget ${budget} s)"
  local t0=$SECONDS
  timeout -k 5 "$budget" "$NODE" "$APP" "$@" --out "$OUT" --budget "$budget" > >(tee "$OUT/steps/$name.log") 2>&1
  local rc=$?
  echo "rc=$rc seconds=$((SECONDS - t0)) budget=$budget" > "$OUT/steps/$name.status"
  [ $rc = 124 ] || [ $rc = 137 ] && log "step $name: cut at its budget of $budget s"
}
step a 130 infer --data "$RT/data"
step b 200 train --data "$RT/data"
step c 80 torch --script "$RT/app/bench_train_torch.py"
step d 40 cuda-ep --data "$RT/data"
log "step e: table"
timeout 30 "$NODE" "$APP" table --out "$OUT" --wall "$SECONDS" | tee "$OUT/table.txt"
rc=${PIPESTATUS[0]}
log "done: $OUT/summary.json, $OUT/table.txt, step logs in $OUT/steps/"
exit "$rc"
