#!/usr/bin/env bash
# Run on a machine with an NVIDIA GPU (CuPy installed): the whole test suite with the CuPy backend, then
# the benchmarks on the GPU. Writes JSON results under ${OUT:-gpu_results}/.
#   bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_results}"
mkdir -p "$out"
python -c "import cupy; print('CuPy', cupy.__version__, 'GPUs:', cupy.cuda.runtime.getDeviceCount())"
export MINIDP_DEVICE=cuda
python -m pytest -q 2>&1 | tee "$out/pytest_cuda.txt"
python scripts/bench_model.py --json "$out/bench_model.json" || true
python scripts/bench_step.py --models minilm,roberta-base --seq-lens 128,256 --json "$out/bench_step.json" || true
python scripts/bench_denoise.py --json "$out/bench_denoise.json" || true
echo "results in $out/"
