#!/usr/bin/env bash
# The GPU rows of two benchmarks, on a lent GPU, after the training recipe (scripts/gpu_train.sh)
# in what is left of the device time:
#
#   scripts/gpu_bench.sh [reconstruct|text|all]     (default: reconstruct)
#
#   reconstruct: image to finished textured mesh, warm, per stage, with peak GPU memory
#                (README "Reconstruction speed", docs/reconstruction.md); about 2-3 minutes
#   text:        text to shape and stylize with ViT-B-32 (random weights: the real computation)
#                at every preset, with peak CUDA memory (docs/text_to_shape.md "GPU memory");
#                about 4 minutes
#
#   run(command="OUT=$OUT scripts/gpu_bench.sh reconstruct", carry=["data_cache/real_split", ".whl"], timeout_s=420)
#   run(command="OUT=$OUT scripts/gpu_bench.sh text", carry=[".whl"], timeout_s=540)
#
# The machine's python3 has torch, numpy, scipy, scikit-image and OpenCV but not trimesh,
# fast-simplification or open_clip: carry their wheels in .whl/ (the download line is in
# docs/reconstruction.md). The reconstruction rows use only the real-split photos that carry
# their own alpha, spread over the objects (MAX_CASES, default 21), so they measure the pipeline,
# not GrabCut on the machine's CPU.
#
# Writes $OUT/reconstruct_gpu.json/.md, $OUT/generate_gpu.json and console logs. DEVICE=cpu runs
# the same here as a smoke test.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PART=${1:-reconstruct}
OUT=${OUT:-out/gpu_bench}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MAX_CASES=${MAX_CASES:-21}
case "$PART" in reconstruct|text|all) ;; *) echo "unknown part $PART (reconstruct, text or all)" >&2; exit 2 ;; esac
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
    if [ "$PART" != text ]; then
        "$PY" scripts/bench_reconstruct.py --splits real --backgrounds alpha --max-cases "$MAX_CASES" \
            --methods model auto --presets preview default high --device "$DEVICE" --threads 8 \
            --out "$OUT/reconstruct_gpu.json"
        echo "bench_reconstruct exit $?"
    fi
    if [ "$PART" != reconstruct ]; then
        "$PY" scripts/bench_generate.py --models vitb32-random --device "$DEVICE" --qualities preview default high \
            --prompts 1 --out "$OUT/generate_gpu.json"
        echo "bench_generate exit $?"
    fi
    date -u
} 2>&1 | tee "$OUT/console_$PART.log"
