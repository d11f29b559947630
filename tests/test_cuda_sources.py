"""The CUDA side of every hand-written kernel compiles with nvcc.

There is no GPU here, so the CUDA kernels cannot run; this test at least compiles them. It
records the `jt.code` calls the kernels make (jt.code replaced by a recorder that returns zeros),
expands Jittor's jt.code macros (@ARGS_DEF, @ARGS, @PRECALC, in0_p, in0_shape0, in0->num, as in
Jittor's code_op.cc) into one translation unit, and compiles it with `nvcc -c`.
"""
import os
import re
import shutil
import subprocess

import jittor as jt
import pytest

from jgan import kernels
from jgan.optim import _ADAM_BODY
from jgan.ema import EMA_BODY

NVCC = shutil.which("nvcc")


class Recorder:
    """Stands in for jt.code: keeps (input dims, output dims, cuda_header, cuda_src), returns zeros."""

    def __init__(self):
        self.calls = []

    def __call__(self, shapes, dtypes, inputs, cpu_src="", cuda_header="", cuda_src="", **_):
        several = not isinstance(list(shapes)[0], int)
        out_shapes = [list(s) for s in shapes] if several else [list(shapes)]
        self.calls.append(([len(v.shape) for v in inputs], [len(s) for s in out_shapes],
                           cuda_header, cuda_src))
        outputs = [jt.zeros(tuple(s)) for s in out_shapes]
        return outputs if several else outputs[0]


def call_every_kernel():
    x, y = jt.randn(2, 3, 4, 6), jt.randn(2, 3, 4, 6)
    per_channel, per_map = jt.ones(3), jt.ones((2, 3))
    kernels.average_pool_2x2(x)
    kernels.upsample_nearest_2x(x)
    kernels.binomial_blur(x)
    for last in (False, True):
        kernels._ReflectionPad("pad", 1, last)(x)
        kernels._ReflectionPad("fold", 1, last)(x)
    kernels.leaky_relu(x, 0.2)
    kernels._LeakyReLUGrad(y, 0.2)(x)
    for last, (a, b) in ((False, (x, y)), (True, (x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)))):
        for channels, values in ((True, per_channel), (False, per_map)):
            kernels.group_sum(a, channels, last)
            kernels.group_square_sum(a, channels, last)
            kernels.group_dot(a, b, channels, last)
            kernels.group_affine(a, values, values, channels, channels_last=last)
            kernels.group_affine(a, None, values, channels, slope=0.2, channels_last=last)
            kernels.group_affine(a, values, None, channels, slope=0.0, channels_last=last)
    hyper = jt.ones(7)
    kernels.multi_tensor_update(_ADAM_BODY, [[x, jt.ones(5)]] * 4, hyper, outputs=3)
    kernels.multi_tensor_update(EMA_BODY, [[x, jt.ones(5)]] * 2, hyper, outputs=1)


def expand(source, in_dims, out_dims):
    """Jittor's jt.code macros for inputs and outputs of these ranks (float32, index_t shapes)."""
    args_def, args = [], []
    for prefix, dims in (("in", in_dims), ("out", out_dims)):
        for i, dim in enumerate(dims):
            args_def.append(f"{prefix}{i}_type* __restrict__ {prefix}{i}_p")
            args.append(f"{prefix}{i}_p")
            for j in range(dim):
                args_def.append(f"index_t {prefix}{i}_shape{j}")
                args.append(f"{prefix}{i}_shape{j}")
    source = source.replace("@ARGS_DEF", ", ".join(args_def + ["int __tmp"]))
    source = source.replace("@ARGS", ", ".join(args + ["0"]))
    return source.replace("@PRECALC", "")


def translation_unit(calls):
    """Every call laid out as Jittor lays out a code op's source: the header at file scope, where
    Jittor's type names (float32, index_t) are not visible, the launch inside namespace jittor."""
    parts = ["#include <algorithm>", "#include <cmath>",
             "namespace jittor { typedef float float32; typedef int index_t; struct Var { long long num; }; }"]
    for number, (in_dims, out_dims, header, launch) in enumerate(calls):
        types = [f"{p}{i}_type" for p, dims in (("in", in_dims), ("out", out_dims))
                 for i in range(len(dims))]
        body = []
        for prefix, dims in (("in", in_dims), ("out", out_dims)):
            for i, dim in enumerate(dims):
                body.append(f"Var* {prefix}{i} = nullptr; {prefix}{i}_type* {prefix}{i}_p = nullptr;")
                body += [f"index_t {prefix}{i}_shape{j} = 1;" for j in range(dim)]
        parts += [f"#define {t} float32" for t in types]
        # namespace opN stands for the file scope of one op's source, opN::jittor for ::jittor
        parts += [f"namespace op{number} {{", "namespace jittor { using namespace ::jittor; }",
                  expand(header, in_dims, out_dims),
                  "namespace jittor {", "void jit_run() {", *body,
                  expand(launch, in_dims, out_dims), "}", "}", "}"]
        parts += [f"#undef {t}" for t in types]
    return "\n".join(parts)


def test_every_cuda_kernel_compiles_with_nvcc(tmp_path, monkeypatch):
    if NVCC is None:
        assert not os.environ.get("CI"), "CI runs where nvcc is installed; it is not on PATH"
        pytest.skip("nvcc is not installed: the CUDA sources cannot be compiled here")
    recorder = Recorder()
    monkeypatch.setattr(jt, "code", recorder)
    call_every_kernel()
    assert len(recorder.calls) == 35          # every call of call_every_kernel reached jt.code
    assert all(re.search(r"<<<.*>>>", launch) for *_, launch in recorder.calls)
    source = tmp_path / "kernels.cu"
    source.write_text(translation_unit(recorder.calls))
    result = subprocess.run([NVCC, "-c", str(source), "-o", str(tmp_path / "kernels.o")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
