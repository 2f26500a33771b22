#!/usr/bin/env bash
# The prepared accelerator check (issue #12): one short script for a lent GPU.
#
#   OUT=runs/gpu JAXLOSS_MNIST_NPZ=.mnist/mnist.npz bash experiments/gpu_check.sh
#
# Needs JAX with the accelerator's plugin, Flax, Optax, Orbax, matplotlib and tqdm (no
# TensorFlow: MNIST comes from a copy made on a machine that has it,
#   python -c "from jaxloss import train as jt; jt.load_mnist().save('.mnist/mnist.npz')"
# ). Writes under $OUT: the device, the benchmark (one run: fused, bf16 and loop epochs,
# floors, 1 and 64 vmapped models with compile seconds, the GPU goals as PASS/FAIL), and
# compare's default run (CE vs sigmoid-difference, 3 seeds, 10 epochs) in float32 and, for CE,
# bf16. About 3 minutes on an H200, most of it start-up and compilation.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
: "${JAXLOSS_MNIST_NPZ:?set JAXLOSS_MNIST_NPZ to a jaxloss.train.Mnist.save copy of MNIST}"
export JAXLOSS_MNIST_NPZ

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  python -c "import jax; print('jax', jax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/device.txt"
python -m experiments.benchmark --no-torch --models 1,64 --repeats 5 \
    --matmul-sizes 4096,8192 2>&1 | tee "$OUT/benchmark.txt"
python -m experiments.compare --out "$OUT/compare" --no-progress 2>&1 | tee "$OUT/compare.txt"
python -m experiments.compare --losses softmax_cross_entropy --precision bf16 \
    --out "$OUT/compare_bf16" --no-progress 2>&1 | tee "$OUT/compare_bf16.txt"
echo "gpu_check: done; results in $OUT"
