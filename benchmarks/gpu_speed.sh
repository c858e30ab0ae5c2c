#!/usr/bin/env bash
# benchmarks/gpu_speed.py on a bare GPU machine (the device tool: carry .whl and .gpudata).
# Usage (repo root): OUT=/some/dir bash benchmarks/gpu_speed.sh
set -u
source benchmarks/gpu_env.sh
python3 -c "import torchvision; print('torchvision', torchvision.__version__)"
nproc
python3 -m benchmarks.gpu_speed --data-dir ${DATA_DIR:-.gpudata} --workers ${WORKERS:-8} --out "$OUT" \
  > "$OUT/gpu_speed.log" 2>&1
status=$?
grep -vE "^\s*$|Warning|warn\(" "$OUT/gpu_speed.log" | tail -40
exit $status
