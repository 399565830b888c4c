#!/usr/bin/env bash
# The prepared device run of bench/gpu_rtfx.py --engine vllm: vLLM 0.26.0 (slim bundle) against
# transformers on one GPU, full-size random model, 4 s blocks, 4 tokens per audio second.
#
# The GPU test machine (one H200) has torch 2.11.0+cu130 and transformers 5.17, no vLLM and no
# network; ../shared/tools/vllm-gpu-bundle/ builds the bundle (README.md there). Build it here,
# once (about 2 minutes, downloads from PyPI; 56.4 MB, which with the project fits the 64 MiB a
# device call carries):
#
#     echo /.vllm026/ >> .git/info/exclude
#     ../shared/tools/vllm-gpu-bundle/build.sh .vllm026
#
# then run this from the project root on the device, with the device tool:
#
#     run(command="bash bench/gpu_check.sh", carry=[".vllm026"], timeout_s=600)
#
# Time: setup ~30 s, building the full-size random model ~80 s, vLLM (start-up with compilation
# and CUDA graphs, warm-up, passes) and then transformers, each limited to ROLE_TIMEOUT seconds
# (default 200) by gpu_rtfx.py so that a stuck engine still leaves the other's figures; the whole
# ends inside the 600 s a device command may run even then (about 30 + 80 + 2 x 200 s). Everything printed is also
# written to $OUT/gpu_check.log ($OUT: the device tool's folder that comes back; else /tmp).
# Extra arguments go to gpu_rtfx.py (e.g. --batches 256,1024 --sched-blocks 4096).
# gpu_rtfx.py's last line, gpu_rtfx=<best vLLM RTFx> vllm_over_transformers=<x> gpu=<name>, comes just
# before this script's own "gpu_check: exit <rc> after <s> s".
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${OUT:-/tmp}
mkdir -p "$LOG_DIR"
exec > >(tee "$LOG_DIR/gpu_check.log") 2>&1
t0=$SECONDS

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"

echo "== setup (bundle: .vllm026)"
# Exactly the bundle README's setup.
S=/tmp/site
mkdir -p $S
tar -xJf .vllm026/vllm-0.26.0-slim.tar.xz -C $S || { echo "untar failed"; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target $S .vllm026/wheels/*.whl \
  || { echo "pip install failed"; exit 1; }
export PYTHONPATH=$S VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
echo "setup done at $((SECONDS - t0)) s"

echo "== versions"
python3 -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
python3 -c 'import vllm; print("vllm", vllm.__version__, "from", vllm.__file__)' || echo "vllm import FAILED (gpu_rtfx.py still runs the transformers baseline)"
echo "versions done at $((SECONDS - t0)) s"

echo "== bench/gpu_rtfx.py --engine vllm"
python3 bench/gpu_rtfx.py --engine vllm --role-timeout "${ROLE_TIMEOUT:-200}" "$@"
rc=$?
echo "gpu_check: exit $rc after $((SECONDS - t0)) s"
exec >&- 2>&-
wait  # for tee to finish the log
exit $rc
