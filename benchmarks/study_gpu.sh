#!/usr/bin/env bash
# The transfer-learning study of notebooks/02_transfer_study.ipynb (cnnlab.run.study: sizes 100..10,000 x
# cnn / lite0 scratch / frozen / finetune x seeds 1, 2, 3: 60 runs) on one GPU; results in
# $OUT/study/results.json (a study skips the runs its results.json already has). To give the notebook's
# one-run GPU cells their intervals, commit it as notebooks/study_results_h200.json.
# Usage (repo root): OUT=/some/dir bash benchmarks/study_gpu.sh
set -u
source benchmarks/gpu_env.sh
python3 -m cnnlab study --root "$OUT/study" trainer=gpu paths.data_dir=${DATA_DIR:-.gpudata} logger=csv \
  > "$OUT/study.log" 2>&1
status=$?
grep -E "^study:|^\|" "$OUT/study.log" | tail -40
rm -rf "$OUT"/study/runs/*/checkpoints  # the results come back, not the weights
exit $status
