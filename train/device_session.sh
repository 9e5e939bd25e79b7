#!/usr/bin/env bash
# One ConvMer session on a lent GPU machine (docs/training.md, "On a lent GPU"). The device tool runs it in
# the repository root with `.device` carried (`make device-pack` makes it here); $OUT comes back with the
# session's snapshot (convmer.tar: checkpoints/convmer with this session added to its ledger and curve),
# its score on all 986 CROHME 2014 images, the log and the status file.
#   SEED=N bash train/device_session.sh [train.finetune flags]   N: the session's number in sessions.json
# MINUTES (default 6) is the training time; the data, the scoring and the snapshot take ~2 more minutes.
# A dry run on a CPU, in a scratch clone (it rebuilds data/):
#   OUT=/tmp/out SEED=0 MINUTES=1 WORKERS=1 SCORE_LIMIT=20 PYTHON=.venv/bin/python bash train/device_session.sh --use_cpu true
set -euo pipefail
SEED=${SEED:?give SEED, the session number in checkpoints/convmer/sessions.json}
MINUTES=${MINUTES:-6}
OUT=${OUT:?give OUT, the folder the results go to}
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-14}
SHARED=${SHARED:-/tmp/shared}
SCORE=(${SCORE_LIMIT:+--limit "$SCORE_LIMIT"})
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
log() { echo "[$(date +%T)] $*"; }

# transformers as verified here, and what that machine lacks, unless it has them already
if ! $PY -c "import sys, transformers, pylatexenc, rapidfuzz, nltk; sys.exit(transformers.__version__ != '5.23.0')" \
    2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/wheels/*.whl
  export PYTHONPATH=/tmp/site
fi
log "ink and fonts"
mkdir -p "$SHARED" && tar -xJf .device/crohme.tar.xz -C "$SHARED"
cp -rn .device/fonts/. /usr/share/fonts/ 2>/dev/null || log "fonts not installed: train.synth falls back to DejaVu"

log "data"
$PY -m train.build_data crohme "$SHARED/crohme/inkml/train" --labels "$SHARED/crohme/train_caption.txt" \
    --tasks vanilla,tree,count --ink --out data/convmer --no-progress
$PY -m train.synth --n 30000 --seed 11 --tasks vanilla --ink --out data/convmer_synth --no-progress
$PY -m train.build_data crohme "$SHARED/crohme/inkml/2014" --tasks vanilla \
    --labels "$SHARED/reference_preds/crohme_2014_pred.json" --out data/crohme2014 --no-progress

log "training for $MINUTES minutes"
status=0
$PY -m train.finetune --config train/configs/convmer/gpu.yaml --model checkpoints/convmer --seed "$SEED" \
    --output_dir runs/convmer/gpu --time_budget_minutes "$MINUTES" --dataloader_num_workers "$WORKERS" \
    "$@" > "$OUT/finetune.log" 2>&1 || status=$?
cp runs/convmer/gpu/status.json "$OUT/" 2>/dev/null || true
if [ "$status" != 0 ]; then tail -30 "$OUT/finetune.log"; exit "$status"; fi

log "scoring all 986 CROHME 2014 images"
$PY -m train.evaluate --model runs/convmer/gpu --data data/crohme2014 --out "$OUT/convmer_2014.json" --batch-size 64 \
    "${SCORE[@]}" 2> "$OUT/evaluate.log"
log "snapshot"
rm -rf /tmp/snapshot && mkdir -p /tmp/snapshot && cp -r checkpoints/convmer /tmp/snapshot/
$PY -m train.snapshot runs/convmer/gpu --into /tmp/snapshot/convmer --eval "$OUT/convmer_2014.json"
tar -cf "$OUT/convmer.tar" -C /tmp/snapshot convmer
log "done: $(cat "$OUT/status.json")"
