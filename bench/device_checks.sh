#!/usr/bin/env bash
# Every GPU check of issue 6 in one run, for a machine with one CUDA GPU (about 6 minutes on an H100):
# the CUDA tests, end-to-end embedding throughput against forward-only, and the probe against sklearn (its single
# fit with and without the bfloat16 phase; --sweep with no values skips sklearn's slow sweep).
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python -m pytest tests/test_embed_fast.py tests/test_classifiers_logreg.py -k cuda -q -p no:cacheprovider --basetemp=/tmp/cuda_tests
python bench/embed_throughput.py --model vit_base_patch16_224 --images 16384 --workers 12
python bench/probe_speed.py --n 50000 --d 768 --classes 1000 --correlated 1 --device cuda --float32 --sweep
