#!/usr/bin/env bash
# The GPU check: the tests marked `cuda`, then `bench speed` on cnn3 and WRN-28-2 at 3x32x32 in
# bf16 and NHWC, eager and compiled, with images/s and the ratio of each variant to its eager
# row ("x plain"), and a profile of 3 more steps of each row (profile.md: GPU time by operator
# family). Built to finish within 8 minutes on one GPU: each part runs under a timeout,
# so a slow compile cuts that part short instead of the whole check (170 + 130 + 150 s at most).
#
#   scripts/gpu-check.sh [OUT]        # OUT: results folder (default $OUT, else runs/gpu-check)
#   PYTHON=/path/to/python scripts/gpu-check.sh
#
# Needs a Python with a CUDA build of torch (and Triton, for compile=on) and metassl's
# dependencies; it runs metassl from this checkout. Results: OUT/tests.txt, OUT/<model>/speed.md,
# speed.json and profile.md, OUT/machine.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-runs/gpu-check}}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
mkdir -p "$OUT"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-check: $PY sees no CUDA device; nothing to check" >&2
    exit 2
fi
{
    nvidia-smi -L 2>/dev/null || true
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
} | tee "$OUT/machine.txt"

status=0
echo "== tests marked cuda" >&2
timeout 170 "$PY" -m pytest -m cuda tests -q -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

METHODS=(supervised:amp=off supervised supervised:compile=on mixup
         meta_pl_mixup meta_pl_mixup:compile=on meta_pl_mixup_reference
         metamixup metamixup:grad=first_order)
for spec in "cnn3 130" "wrn28_2 150"; do
    read -r model limit <<<"$spec"
    echo "== bench speed $model" >&2
    timeout "$limit" "$PY" -m metassl.cli bench speed --out "$OUT/$model" --model "$model" --device cuda \
        --layout nhwc --channels 3 --image-size 32 --batch-size 64 --rounds 20 --profile 3 --methods "${METHODS[@]}" \
        >/dev/null || { echo "gpu-check: bench speed $model did not finish within ${limit}s" >&2; status=1; }
    [ -f "$OUT/$model/speed.md" ] && cat "$OUT/$model/speed.md"
    [ -f "$OUT/$model/profile.md" ] && head -n 16 "$OUT/$model/profile.md"
done
exit $status
