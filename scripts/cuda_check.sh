#!/usr/bin/env bash
# The checks to run on a machine with a CUDA GPU (CI has none): Jittor starting on CUDA, the parity
# tests of the hand-written kernels, norms and layers on the GPU, a short train.py run with Jittor's
# synchronous error reports (JT_SYNC=1 names the op that fails), and the iteration benchmark.
# Usage: bash scripts/cuda_check.sh LMDB   (with jgan's requirements installed)
set -uo pipefail
lmdb=${1:?usage: bash scripts/cuda_check.sh LMDB}
work=$(mktemp -d)
export use_parallel_op_compiler=${use_parallel_op_compiler:-16}  # hundreds of new kernels, cores to spare
python -c "from jgan import runtime; runtime.init('cuda'); print(runtime.startup_line())" || exit 1
python -c "from jgan import runtime; runtime.init('cuda'); from jittor import nn; print('convolutions:', nn.conv2d.__module__)"
python -m pytest -q -rfE tests/test_gemm_conv.py tests/test_kernels.py tests/test_cuda_sources.py tests/test_ema.py \
  tests/test_norms.py tests/test_layers.py tests/test_losses.py
# batch 16, then the preset's 128: Jittor's own convolution without cuDNN loops over batch x in x
# out channels x pixels x taps products in int32 (over 2^31 at 128); jgan.gemm_conv replaces it
for batch in 16 128; do
  JT_SYNC=1 trace_py_var=3 python train.py "$lmdb" --arch dcgan --device cuda --batch "$batch" --iters 40 \
    --name "cuda-check-$batch" --sample-every 20 --ckpt-every 40 --checkpoint-dir "$work/checkpoint" \
    --sample-dir "$work/sample" --no-progress
done
python scripts/bench.py --device cuda --archs dcgan stylegan --sizes 64 --batch 16
echo "samples: $work/sample"
