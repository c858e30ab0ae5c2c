# Sourced by the GPU scripts: a GPU machine with torch but not cnnlab's other packages gets them from the
# wheels in .whl/ (built here with `pip download --no-deps --only-binary=:all: --python-version 3.12 ...`),
# and Fashion-MNIST from .gpudata/ (both git-ignored; the device tool carries them).
OUT=${OUT:-/tmp/cnnlab-gpu}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:src
fi
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, lightning, timm; print('torch', torch.__version__, 'lightning', lightning.__version__, 'timm', timm.__version__)"
