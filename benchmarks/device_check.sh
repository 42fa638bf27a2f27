#!/usr/bin/env bash
# The GPU check in one go: install, CUDA tests, a smoke run of every command, synthesis /
# calibration / reconstruction timings on DeiT-T/S/B (float32 and bf16), the teacher preset when it
# exists; everything as JSON in $OUT/device_check.json (default ./device_out).
#
#   bash benchmarks/device_check.sh                          # on a GPU machine (sized for <= 8 minutes)
#   bash benchmarks/device_check.sh --device cpu --tiny --skip install,teacher   # CPU dry run
#
# Options go to benchmarks/device_check.py (see its --help). CIFAR-10 from --data or $SARDFQ_DATA;
# without it the smoke runs use a random stand-in (code paths only) and the teacher is not trained.
# A lent GPU machine sees only the repository: to give it CIFAR-10 (19 MB), copy the data folder
# into an ignored folder of the checkout (e.g. .devdata/cifar10), carry it, and pass --data .devdata.
set -u
cd "$(dirname "$0")/.."
export OUT="${OUT:-device_out}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
"$PYTHON" benchmarks/device_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/device_check.log"
exit "${PIPESTATUS[0]}"
