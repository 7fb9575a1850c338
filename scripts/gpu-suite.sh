#!/usr/bin/env bash
# A benchmark suite on one GPU: every run of SUITE (default fashion-ssl-long) trained JOBS at a
# time on the same GPU (one process and one CPU thread each), stopped after LIMIT seconds. Runs
# checkpoint, so the same command continues an unfinished suite; finished runs are kept. The
# results are those of the CPU suites, in the same format: OUT/results.json and OUT/table.md
# (the table covers every finished run), one folder per run, OUT/machine.txt.
#
#   scripts/gpu-suite.sh [SUITE] [OUT] [key=value ...]     # e.g. ... fashion-ssl-long OUT steps=24000
#
# Environment: DATA, the folder of Fashion-MNIST's four idx files (default data/fashion-mnist,
# which `make gpu-data` fills from Debian's package so that it can travel with the checkout, else
# Debian's /usr/share/datasets/fashion-mnist); JOBS (default 16); LIMIT (seconds of training,
# default 480, so that start-up, the runs' last checkpoints and the table fit in 10 minutes);
# ONLY (a --only filter, e.g. "method=supervised,fixmatch seed=0"); PYTHON (default .venv/bin/python,
# else python3); DEVICE (default cuda; cpu runs the same plumbing without a GPU, for its test).
# Key=value arguments override the suite's base settings (the budget, amp, ...); on CUDA training
# runs in bf16 autocast unless amp=off is given, so its figures are not the float32 CPU rows'.
# The run folders hold checkpoints (a few MB each); to bring back only the tables, give OUT a
# scratch folder and copy OUT/results.json, OUT/table.md and OUT/machine.txt afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
SUITE=${1:-fashion-ssl-long}
name=$(basename "$SUITE"); name=${name%.yaml}; name=${name%.yml}
OUT=${2:-${OUT:-runs/gpu-suite}/$name}
shift $(( $# < 2 ? $# : 2 ))
JOBS=${JOBS:-16}
LIMIT=${LIMIT:-480}
DEVICE=${DEVICE:-cuda}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ -z "${DATA:-}" ]; then
    if [ -d data/fashion-mnist ]; then DATA=data/fashion-mnist; else DATA=/usr/share/datasets/fashion-mnist; fi
fi
if [ ! -d "$DATA" ]; then
    echo "gpu-suite: no Fashion-MNIST folder at $DATA (set DATA, or run make gpu-data)" >&2
    exit 2
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu-suite: $PY sees no CUDA device; nothing to run" >&2
    exit 2
fi
mkdir -p "$OUT"
{
    [ "$DEVICE" = cuda ] && { nvidia-smi -L 2>/dev/null || true; }
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
    echo "$(date -u +%FT%TZ) suite $SUITE, $JOBS runs at once, device $DEVICE, limit ${LIMIT}s, overrides: $*"
} | tee -a "$OUT/machine.txt"

only=()
[ -n "${ONLY:-}" ] && read -r -a only <<<"--only $ONLY"
# SIGTERM at the limit: the runs save their checkpoints and the suite stops; what finished is
# then tabulated.
timeout --signal=TERM --kill-after=30 "$LIMIT" "$PY" -m metassl.cli bench "$SUITE" --out "$OUT" \
    --jobs "$JOBS" device="$DEVICE" data_root="$DATA" threads=1 "$@" ${only[@]+"${only[@]}"}
status=$?
case $status in
    0) ;;
    124 | 130 | 137)  # the limit (or an interrupt): every run saved a checkpoint, or dies at its last
        echo "gpu-suite: stopped at the limit (exit $status) before every run finished; the same command continues" >&2
        "$PY" -c 'import sys; from pathlib import Path; from metassl.bench import suites
print(suites.tabulate(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))' "$SUITE" "$OUT" "$JOBS" ;;
esac
exit $status
