#!/usr/bin/env bash
# GPU rows of the reconstruction speed benchmark (README "Reconstruction speed", docs/reconstruction.md):
# image to finished textured mesh, warm, per stage, with peak GPU memory, on a lent GPU. Run it
# after the training recipe (scripts/gpu_train.sh), in what is left of the device time:
#
#   run(command="OUT=$OUT scripts/gpu_bench.sh", carry=["data_cache/real_split", ".whl"], timeout_s=420)
#
# The machine's python3 has torch, numpy, scipy, scikit-image and OpenCV but not trimesh or
# fast-simplification: carry their wheels in .whl/ (docs/reconstruction.md gives the download line).
# Only photos that carry their own alpha are used, spread over the objects (MAX_CASES, default 21),
# so the rows measure the pipeline, not GrabCut on the machine's CPU.
#
# Writes $OUT/reconstruct_gpu.json, .md and console.log. DEVICE=cpu runs the same here as a smoke test.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-out/gpu_bench}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MAX_CASES=${MAX_CASES:-21}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
    "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
    "$PY" scripts/bench_reconstruct.py --splits real --backgrounds alpha --max-cases "$MAX_CASES" \
        --methods model auto --presets preview default high --device "$DEVICE" --threads 8 \
        --out "$OUT/reconstruct_gpu.json"
    echo "bench_reconstruct exit $?"
    date -u
} 2>&1 | tee "$OUT/console.log"
