#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU and CuPy (pip install '.[gpu,test]'):
#   1. the whole test suite with the device fixture set to cuda (MINIDP_TEST_DEVICES=cuda, and
#      MINIDP_DEVICE=cuda so every default follows), going on past failures and listing them;
#   2. scripts/bench/bench_step.py --device cuda: the minidp DP step vs the non-private step vs Opacus, on the same
#      GPU (time with a device synchronisation around it, memory from CuPy's pool / torch.cuda);
#   3. scripts/bench/bench_denoise.py --device cuda: the denoiser's time and its overhead on the DP step of 2.;
# then writes everything to one JSON file, ${OUT:-gpu_results}/gpu_check.json, and prints every figure.
#
#   bash scripts/gpu_check.sh                                    # on the GPU machine
#   MINIDP_FAKE_CUPY=1 GPU_CHECK_QUICK=1 bash scripts/gpu_check.sh   # on a CPU: a smoke test of this script
#
# MINIDP_FAKE_CUPY=1 runs everything against the CuPy stand-in (tests/fake_cupy.py): the figures are
# named but are CPU timings, and device memory reads 0. GPU_CHECK_QUICK=1: tiny benchmark shapes (and
# GPU_CHECK_QUICK_METHODS: which bench_step methods then).
# GPU_CHECK_PYTEST_ARGS: what to pass to pytest instead of the whole suite (e.g. one test file).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
rm -f "$out"/*.rc "$out"/gpu_check.json
if [ "${MINIDP_FAKE_CUPY:-}" = "1" ]; then
  echo "gpu_check: MINIDP_FAKE_CUPY=1: the CuPy stand-in on the CPU (a smoke test of this script, no GPU figures)"
  export PYTHONPATH="$PWD/tests/stand_in_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export MINIDP_DEVICE=cuda MINIDP_TEST_DEVICES=cuda

python - "$out/device.json" <<'EOF' || { echo "gpu_check: CuPy finds no GPU; nothing to check" >&2; exit 2; }
import json, sys
import cupy
props = cupy.cuda.runtime.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
info = {"gpu": name, "gpus": cupy.cuda.runtime.getDeviceCount(), "cupy": cupy.__version__,
        "stand_in": bool(getattr(cupy, "STAND_IN", False))}
json.dump(info, open(sys.argv[1], "w"))
print("gpu_check:", info)
EOF

echo "== 1/3 the test suite on cuda"
# shellcheck disable=SC2086  # GPU_CHECK_PYTEST_ARGS is a list of arguments
python -m pytest -rfE -p no:cacheprovider --junitxml="$out/pytest_cuda.xml" ${GPU_CHECK_PYTEST_ARGS:-} 2>&1 \
  | tee "$out/pytest_cuda.txt"
echo "${PIPESTATUS[0]}" > "$out/pytest.rc"

if [ "${GPU_CHECK_QUICK:-}" = "1" ]; then
  step_args=(--quick --layers 1 --batch 4 --seq-lens 16 --vocab-size 2000
             --methods "${GPU_CHECK_QUICK_METHODS:-minidp_nonprivate,minidp_dp,opacus_hooks,opacus_ghost}")
  denoise_args=(--shape 1,32,64)
else
  step_args=(--models minilm,roberta-base --seq-lens 128,256)
  denoise_args=()
fi

echo "== 2/3 DP step vs non-private vs Opacus, on the GPU"
python -m scripts.bench.bench_step --device cuda "${step_args[@]}" --json "$out/bench_step.json" 2>&1 \
  | tee "$out/bench_step.txt"
echo "${PIPESTATUS[0]}" > "$out/bench_step.rc"

echo "== 3/3 the denoiser on the GPU"
dp_step=()
[ -f "$out/bench_step.json" ] && dp_step=(--dp-step-json "$out/bench_step.json")
python -m scripts.bench.bench_denoise --device cuda ${denoise_args[@]+"${denoise_args[@]}"} \
  ${dp_step[@]+"${dp_step[@]}"} --json "$out/bench_denoise.json" 2>&1 | tee "$out/bench_denoise.txt"
echo "${PIPESTATUS[0]}" > "$out/bench_denoise.rc"

python -m scripts.gpu_check_report "$out"
