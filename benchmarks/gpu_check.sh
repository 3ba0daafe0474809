#!/usr/bin/env bash
# GPU checks for a lent accelerator (run from the repo root; the dataset files travel in .device/data):
#   the lockstep-vs-Lightning equivalence test and the "a run's numbers do not depend on its group"
#   test on the GPU, the side-by-side benchmark, and one full default compare (4 optimizers x 30
#   epochs) timed with its peak RSS.
set -uo pipefail
export FMNIST_DATA=${FMNIST_DATA:-.device/data} PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
FMNIST_TEST_ACCELERATOR=gpu python3 -m pytest -q tests/engine/test_lockstep.py -p no:cacheprovider 2>&1 | tail -8
python3 benchmarks/bench_compare.py --batches 600 --seeds 5 2>&1 | grep -v -i "warn\|tip\|available\|LOCAL_RANK" | tee "$OUT/bench.txt"
/usr/bin/time -v python3 -m fmnist_pl compare --epochs 30 --name gpu30 --output-dir "$OUT/o" --no-progress \
  > "$OUT/compare.txt" 2> "$OUT/compare.err"
echo "compare exit $?"
grep -E "Elapsed|Maximum resident" "$OUT/compare.err"
grep -v "^$" "$OUT/compare.txt" | tail -14
cp "$OUT/o/gpu30/report.html" "$OUT/report-gpu.html" 2>/dev/null
rm -rf "$OUT/o"
