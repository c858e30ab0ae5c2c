#!/usr/bin/env bash
# The three lite0 experiments on the FULL Fashion-MNIST training set (54,000 images), on a GPU machine
# that has torch but not cnnlab's other packages: they come as wheels in .whl/, the dataset in .gpudata/.
# Usage (repo root): OUT=/some/dir bash benchmarks/transfer_full_gpu.sh
set -u
source benchmarks/gpu_env.sh
status=0
for experiment in lite0_frozen lite0_finetune lite0_scratch; do
  start=$(date +%s)
  python3 -m cnnlab train experiment=$experiment data.train_size=null trainer=gpu \
    paths.data_dir=${DATA_DIR:-.gpudata} logger=csv callbacks.progress_bar.refresh_rate=0 \
    hydra.run.dir=/tmp/runs/$experiment > "$OUT/$experiment.log" 2>&1 || status=1
  echo "$experiment: $(( $(date +%s) - start )) s wall"
  cp /tmp/runs/$experiment/metrics.json "$OUT/$experiment.json" 2>/dev/null
  grep -E -A9 "final metrics:|error|Error" "$OUT/$experiment.log" | tail -10
done
exit $status
