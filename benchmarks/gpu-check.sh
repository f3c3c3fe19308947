#!/usr/bin/env bash
# The GPU half of `make bench` (section 4 and the full/tabm end-to-end goal), for a machine whose own
# Python already has a CUDA build of torch but that cannot build the project's venv (an offline GPU
# box, a cluster node). With network access, prefer: make bench TORCH=cuda ARGS='--only accelerator full-run'
#
# usage: benchmarks/gpu-check.sh OUT_DIR [more bench.py arguments, e.g. --accelerator-models tabm]
#   PYTHON=...   the interpreter to use (default python3)
# Writes OUT_DIR/bench.{md,json} and OUT_DIR/nvidia-smi.txt; exits 2 with one line if something is missing.
# Section 4 compares the reference recipe (TabM to early stopping) with the fast one and trains `full` end to end
# per recipe (--full-run-recipes reference fast); gpu-share (with Ray) trains TabM folds at 1, 0.5 and 0.25 GPUs.
set -euo pipefail

out=${1:-}
if [[ -z "$out" ]]; then
    echo "error: benchmarks/gpu-check.sh: no OUT_DIR. Fix: benchmarks/gpu-check.sh reports/gpu" >&2
    exit 2
fi
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"

missing=$("$python" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "pytabkit", "sklearn", "pandas", "scipy") if importlib.util.find_spec(m) is None))
PY
)
if [[ -n "$missing" ]]; then
    echo "error: benchmarks/gpu-check.sh: $python lacks: $missing. Fix: pip install pytabkit==1.7.3 (offline: pip install --no-index --no-deps a downloaded wheel)" >&2
    exit 2
fi
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: benchmarks/gpu-check.sh: torch in $python sees no CUDA device. Fix: run this on the GPU machine with a CUDA build of torch" >&2
    exit 2
fi

nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The GBDTs on CUDA against their own CPU runs, at Kaggle size (embedded full data, residual target, the CPU
# side on every core): OUT_DIR/gbdt/<model>-<device>/ holds the records, <model>-<device>.log what they printed.
# xgboost needs its CUDA build (PyPI's xgboost, not xgboost-cpu); a library that is missing is said and skipped.
for pair in xgb:xgboost catboost:catboost; do
    model=${pair%%:*} library=${pair##*:}
    if ! "$python" -c "import $library" 2>/dev/null; then
        echo "note: benchmarks/gpu-check.sh: $library is not installed: no $model rows" >&2
        continue
    fi
    for device in cuda cpu; do
        "$python" -m roadrisk train --profile full --model "$model" --target residual --device "$device" \
            --strict-device --label "$model-$device" --runs-dir "$out/gbdt" >"$out/$model-$device.log" 2>&1 \
            || echo "note: benchmarks/gpu-check.sh: $model on $device failed, see $out/$model-$device.log" >&2
    done
done

# GPU sharing between folds (--gpus-per-task) needs Ray; without it that section says so and the rest runs.
sections=(accelerator full-run)
if "$python" -c 'import ray' 2>/dev/null; then sections+=(gpu-share); fi
exec "$python" "$root/benchmarks/bench.py" --only "${sections[@]}" --out "$out" "$@"
