#!/usr/bin/env bash
# The GPU recipe (docs/training.md): everything a lent GPU machine does in one command, sized to
# end inside the device tool's 10-minute command limit. Needs only this repository (the machine's
# own python3 has torch, numpy, scipy, scikit-image, safetensors, pillow and tqdm) plus
# data_cache/real_split carried along for the real-object evaluation.
#
#   scripts/gpu_train.sh [MINUTES] [finetune|gpu|layered]
#
#   finetune (default): the committed weights' architecture, fine-tuned at batch 256
#   gpu:                the ResNet-34 `gpu` model preset from scratch, batch 128
#   layered:            the layered-depth network (reconstruct's `layered` method) carried on from
#                       the committed weights, 128 photos a step at lr 5e-4 (a fresh run starts at
#                       2e-3, which one step of a carried-on run already pays for on the real split)
#                       -> $OUT/layered_depth.{json,safetensors}
#
# Writes to $OUT (the device tool's return folder; default out/gpu): shape_model.json and its
# float16 .safetensors shards (each under 15 MiB) and logs.tar.gz (throughput benchmark, training
# log, evaluations - the committed weights' too, on the same sets: before/after - and the
# console) - at most 6 files, under 60 MiB.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MINUTES=${1:-7}
MODE=${2:-finetune}
OUT=${OUT:-out/gpu}
PY=${PYTHON:-python3}
RUN=${RUN_DIR:-/tmp/stepstone_run}
rm -rf "$RUN/run"  # a fresh run each time (the machine is bare anyway)
mkdir -p "$OUT" "$RUN"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then  # wheels carried for packages the machine lacks
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
if [ "$MODE" = layered ]; then
    { date -u; nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
      "$PY" scripts/train_layered_depth.py --minutes "$MINUTES" --device "${DEVICE:-cuda}" --views-per-step 128 --lr 5e-4 \
          --init-from backend/weights/layered_depth --seed 8200000 --out "$OUT/layered_depth"
      echo "train_layered_depth.py exit $?"; date -u; } 2>&1 | tee "$OUT/console.log"
    exit 0
fi
case "$MODE" in
    finetune) PRESET=cpu; BATCH=256; EXTRA=(--init-from backend/weights/shape_model_cpu --lr 3e-4) ;;
    gpu) PRESET=gpu; BATCH=128; EXTRA=(--render-every 4) ;;
    *) echo "unknown mode $MODE (finetune or gpu)" >&2; exit 2 ;;
esac
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu BATCH=16 runs the same script here, as a smoke test
BATCH=${BATCH_SIZE:-$BATCH}
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
    "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
    # throughput first (about a minute): how fast shapes bake, photos render and steps run here
    "$PY" scripts/bench_train_data.py --device "$DEVICE" --model-preset "$PRESET" --batch-size "$BATCH" --shapes 32 \
        --repeats 3 --out "$RUN/bench.json"
    "$PY" scripts/train.py --minutes "$MINUTES" --device "$DEVICE" --out "$RUN/run" --quiet \
        --real data_cache/real_split --export "$OUT/shape_model" --model-preset "$PRESET" --batch-size "$BATCH" \
        --baseline backend/weights/shape_model_cpu "${EXTRA[@]}"
    echo "train.py exit $?"
    date -u
} 2>&1 | tee "$RUN/console.log"
cp "$RUN"/run/log.jsonl "$RUN"/run/eval.jsonl "$RUN"/run/train_config.json "$RUN"/run/baseline_eval.json "$RUN" 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$RUN" bench.json console.log log.jsonl eval.jsonl train_config.json baseline_eval.json \
    2>/dev/null
ls -la "$OUT"
