#!/usr/bin/env bash
# The three lite0 experiments on the FULL Fashion-MNIST training set (54,000 images), on a GPU machine
# that has torch but not cnnlab's other packages: they come as wheels in .whl/, the dataset in .gpudata/.
# Usage (repo root): OUT=/some/dir bash benchmarks/transfer_full_gpu.sh
set -u
OUT=${OUT:-/tmp/cnnlab-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:src
fi
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)"
status=0
for experiment in lite0_frozen lite0_finetune lite0_scratch; do
  start=$(date +%s)
  python3 -m cnnlab.train experiment=$experiment data.train_size=null trainer=gpu \
    paths.data_dir=${DATA_DIR:-.gpudata} logger=csv callbacks.progress_bar.refresh_rate=0 \
    hydra.run.dir=/tmp/runs/$experiment > "$OUT/$experiment.log" 2>&1 || status=1
  echo "$experiment: $(( $(date +%s) - start )) s wall"
  cp /tmp/runs/$experiment/metrics.json "$OUT/$experiment.json" 2>/dev/null
  grep -E "metrics:|error|Error" "$OUT/$experiment.log" | tail -3
done
exit $status
