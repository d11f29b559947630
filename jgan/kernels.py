"""Hand-written kernels for the operations Jittor's generated code runs slowly on the CPU.

Jittor lowers 2x2 pooling, nearest upsampling and the blur to generic index kernels and runs them,
like every kernel it generates for the CPU, on one thread; so are the per-channel and
per-feature-map sums, products and affine maps of bias gradients and of batch, instance and
adaptive instance normalisation, the leaky ReLU with its gradient, and the optimiser's updates.
Each kernel here is a `jt.code` op with an OpenMP `cpu_src` and a CUDA `cuda_src`. The
differentiable ones are wrapped in `jt.Function`s (jgan.autograd.Function) whose gradient is again
such a function or a plain Jittor op: gradients of any order (the WGAN-GP and R1 penalties
differentiate twice) stay on the fast path.
"""
import functools

import jittor as jt

from jgan.autograd import Function


def _code(shape, dtype, inputs, cuda_header, **sources):
    """`jt.code` with the CUDA header inside namespace jittor: Jittor pastes a header at file scope,
    where the type names that @ARGS_DEF expands to (float32, index_t) are not defined."""
    return jt.code(shape, dtype, inputs, cuda_header=f"namespace jittor {{\n{cuda_header}\n}}\n", **sources)


_SUM_2X2_CPU = """
    const long long rows = (long long)out0_shape0 * out0_shape1 * out0_shape2;
    const int width = out0_shape3, in_width = in0_shape3;
    #pragma omp parallel for
    for (long long r = 0; r < rows; r++) {
        const in0_type* top = in0_p + r * 2 * in_width;
        const in0_type* bottom = top + in_width;
        out0_type* y = out0_p + r * width;
        for (int j = 0; j < width; j++)
            y[j] = (top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1]) * (SCALE);
    }
"""

_SUM_2X2_CUDA_HEADER = """
__global__ static void sum_2x2_kernel(@ARGS_DEF) {
    @PRECALC
    const long long count = (long long)out0_shape0 * out0_shape1 * out0_shape2 * out0_shape3;
    const int width = out0_shape3, in_width = in0_shape3;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x) {
        const long long r = k / width, j = k % width;
        const in0_type* top = in0_p + r * 2 * in_width + 2 * j;
        out0_p[k] = (top[0] + top[1] + top[in_width] + top[in_width + 1]) * (SCALE);
    }
}
"""

_REPEAT_2X_CPU = """
    const long long rows = (long long)in0_shape0 * in0_shape1 * in0_shape2;
    const int width = in0_shape3, out_width = out0_shape3;
    #pragma omp parallel for
    for (long long r = 0; r < rows; r++) {
        const in0_type* x = in0_p + r * width;
        out0_type* top = out0_p + r * 2 * out_width;
        out0_type* bottom = top + out_width;
        for (int j = 0; j < width; j++) {
            const out0_type v = x[j] * (SCALE);
            top[2 * j] = v; top[2 * j + 1] = v; bottom[2 * j] = v; bottom[2 * j + 1] = v;
        }
    }
"""

_REPEAT_2X_CUDA_HEADER = """
__global__ static void repeat_2x_kernel(@ARGS_DEF) {
    @PRECALC
    const long long count = (long long)out0_shape0 * out0_shape1 * out0_shape2 * out0_shape3;
    const int out_width = out0_shape3, out_height = out0_shape2, width = in0_shape3;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x) {
        const long long plane = k / ((long long)out_height * out_width);
        const int i = (k / out_width) % out_height, j = k % out_width;
        out0_p[k] = in0_p[(plane * (out_height / 2) + i / 2) * width + j / 2] * (SCALE);
    }
}
"""

_LAUNCH = ("{name}<<<(int)std::min(((long long)out0_shape0 * out0_shape1 * out0_shape2 * out0_shape3 + 255) / 256,"
           " 65536LL), 256>>>(@ARGS);")


def _with_scale(source, scale):
    return source.replace("SCALE", repr(float(scale)) + "f")


def _sum_2x2(x, scale):
    """y[i, j] = scale * (x[2i, 2j] + x[2i, 2j+1] + x[2i+1, 2j] + x[2i+1, 2j+1])."""
    batch, channels, height, width = x.shape
    return _code([batch, channels, height // 2, width // 2], x.dtype, [x],
                 cpu_src=_with_scale(_SUM_2X2_CPU, scale),
                 cuda_header=_with_scale(_SUM_2X2_CUDA_HEADER, scale),
                 cuda_src=_LAUNCH.format(name="sum_2x2_kernel"))


def _repeat_2x(x, scale):
    """y[i, j] = scale * x[i // 2, j // 2]."""
    batch, channels, height, width = x.shape
    return _code([batch, channels, 2 * height, 2 * width], x.dtype, [x],
                 cpu_src=_with_scale(_REPEAT_2X_CPU, scale),
                 cuda_header=_with_scale(_REPEAT_2X_CUDA_HEADER, scale),
                 cuda_src=_LAUNCH.format(name="repeat_2x_kernel"))


class _Resample2x(Function):
    """scale * 2x2 sum pooling ("sum") or scale * nearest x2 upsampling ("repeat"): each one's
    adjoint is the other with the same scale."""

    KERNELS = {"sum": _sum_2x2, "repeat": _repeat_2x}
    ADJOINT = {"sum": "repeat", "repeat": "sum"}

    def __init__(self, kind, scale):
        self.kind, self.scale = kind, scale

    def execute(self, x):
        return self.KERNELS[self.kind](x, self.scale)

    def grad(self, grad):
        return _Resample2x(self.ADJOINT[self.kind], self.scale)(grad)


def _check_even(x):
    if len(x.shape) != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"2x2 pooling needs a (N, C, H, W) input with even H and W, got {tuple(x.shape)}.")


def average_pool_2x2(x):
    """y = 2x2 average pooling with stride 2 of a (N, C, H, W) input with even H and W."""
    _check_even(x)
    return _Resample2x("sum", 0.25)(x)


def upsample_nearest_2x(x):
    """y[i, j] = x[i // 2, j // 2]: nearest-neighbour upsampling by 2 of a (N, C, H, W) input."""
    if len(x.shape) != 4:
        raise ValueError(f"upsampling needs a (N, C, H, W) input, got {tuple(x.shape)}.")
    return _Resample2x("repeat", 1.0)(x)


# A group is a channel (PER_CHANNEL: its values over the batch and the pixels) or a feature map. In
# (N, C, H, W) tensors a group's values lie in `reps` runs of `plane` values, `stride` planes apart;
# CHANNELS_LAST tensors (N, H, W, C) have a group's values C apart.
_GROUP_LAYOUT = """
    const long long plane = CHANNELS_LAST ? (long long)in0_shape1 * in0_shape2 : (long long)in0_shape2 * in0_shape3;
    const long long channels = CHANNELS_LAST ? in0_shape3 : in0_shape1;
    const long long groups = PER_CHANNEL ? channels : (long long)in0_shape0 * channels;
    const long long reps = PER_CHANNEL ? in0_shape0 : 1, stride = PER_CHANNEL ? channels : 0;
"""

# the index of the i-th value of group g, and the group of index k
_GROUP_INDEX = """
#define GROUP_ELEMENT(g, i) (CHANNELS_LAST ? (PER_CHANNEL ? (i) * channels + (g) \
    : (((g) / channels) * plane + (i)) * channels + (g) % channels) \
    : (((i) / plane) * stride + (g)) * plane + (i) % plane)
#define GROUP_OF(k) (CHANNELS_LAST ? (PER_CHANNEL ? (k) % channels : ((k) / (plane * channels)) * channels + (k) % channels) \
    : (PER_CHANNEL ? ((k) / plane) % channels : (k) / plane))
"""

_GROUP_REDUCE_CPU = _GROUP_LAYOUT + """
    #pragma omp parallel for
    for (long long g = 0; g < groups; g++) {
        in0_type total = 0;
        for (long long j = 0; j < reps; j++) {
            const long long offset = (j * stride + g) * plane;
            in0_type partial = 0;
            #pragma omp simd reduction(+:partial)
            for (long long k = offset; k < offset + plane; k++) partial += TERM;
            total += partial;
        }
        out0_p[g] = total;
    }
"""

# Channels-last: each thread sums its share of the pixels (rows of C values) into a row of partial
# sums per image (or one for all, PER_CHANNEL), 64 pixels at a time; the threads' rows are added last.
_GROUP_REDUCE_CHANNELS_LAST_CPU = _GROUP_LAYOUT + """
    const long long images = PER_CHANNEL ? 1 : in0_shape0, rows = PER_CHANNEL ? reps * plane : plane;
    const int threads = omp_get_max_threads();
    std::vector<in0_type> partial((size_t)threads * groups, 0);
    #pragma omp parallel
    {
        in0_type* total = partial.data() + (size_t)omp_get_thread_num() * groups;
        std::vector<in0_type> block(channels);
        in0_type* sum = block.data();
        #pragma omp for collapse(2)
        for (long long n = 0; n < images; n++)
            for (long long first = 0; first < rows; first += 64) {
                std::fill(block.begin(), block.end(), (in0_type)0);
                for (long long r = first; r < std::min(rows, first + 64); r++) {
                    const long long row = (n * rows + r) * channels;
                    #pragma omp simd
                    for (long long c = 0; c < channels; c++) { const long long k = row + c; sum[c] += TERM; }
                }
                for (long long c = 0; c < channels; c++) total[n * channels + c] += sum[c];
            }
    }
    for (long long g = 0; g < groups; g++) {
        in0_type total = 0;
        for (int t = 0; t < threads; t++) total += partial[(size_t)t * groups + g];
        out0_p[g] = total;
    }
"""

_CHANNELS_LAST_CPU_HEADER = "#include <omp.h>\n#include <vector>\n#include <algorithm>\n"

_GROUP_REDUCE_CUDA_HEADER = _GROUP_INDEX + """
__global__ static void group_reduce_kernel(@ARGS_DEF) {
    @PRECALC""" + _GROUP_LAYOUT + """
    __shared__ in0_type partial[256];
    const long long g = blockIdx.x;
    in0_type total = 0;
    for (long long i = threadIdx.x; i < reps * plane; i += blockDim.x) {
        const long long k = GROUP_ELEMENT(g, i);
        total += TERM;
    }
    partial[threadIdx.x] = total;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out0_p[g] = partial[0];
}
"""

_GROUP_REDUCE_CUDA = ("group_reduce_kernel<<<PER_CHANNEL ? CHANNELS : in0_shape0 * CHANNELS, 256>>>"
                      "(@ARGS);")

_GROUP_AFFINE_CPU = _GROUP_LAYOUT + """
    #pragma omp parallel for collapse(2)
    for (long long j = 0; j < reps; j++) {
        for (long long g = 0; g < groups; g++) {
            const long long offset = (j * stride + g) * plane;
            const in0_type scale = SCALE, shift = SHIFT;
            #pragma omp simd
            for (long long k = offset; k < offset + plane; k++) out0_p[k] = ACTIVATION(in0_p[k] * scale + shift);
        }
    }
"""

_GROUP_AFFINE_CHANNELS_LAST_CPU = _GROUP_LAYOUT + """
    const long long rows = (long long)in0_shape0 * plane;
    #pragma omp parallel for
    for (long long r = 0; r < rows; r++) {
        const long long first = PER_CHANNEL ? 0 : (r / plane) * channels;
        #pragma omp simd
        for (long long c = 0; c < channels; c++) {
            const long long k = r * channels + c, g = first + c;
            out0_p[k] = ACTIVATION(in0_p[k] * (SCALE) + (SHIFT));
        }
    }
"""

_GROUP_AFFINE_CUDA_HEADER = _GROUP_INDEX + """
__global__ static void group_affine_kernel(@ARGS_DEF) {
    @PRECALC""" + _GROUP_LAYOUT + """
    const long long count = (long long)in0_shape0 * channels * plane;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x) {
        const long long g = GROUP_OF(k);
        out0_p[k] = ACTIVATION(in0_p[k] * (SCALE) + (SHIFT));
    }
}
"""

_GROUP_AFFINE_CUDA = ("group_affine_kernel<<<(int)std::min(((long long)in0_shape0 * in0_shape1 * in0_shape2"
                      " * in0_shape3 + 255) / 256, 65536LL), 256>>>(@ARGS);")


@functools.lru_cache(maxsize=None)
def _layout(source, per_channel, channels_last, *terms):
    """`source` for a layout, then with each (NAME, text) of `terms` put in; made once per call shape."""
    source = (source.replace("PER_CHANNEL", "1" if per_channel else "0")
              .replace("CHANNELS_LAST", "1" if channels_last else "0")
              .replace("CHANNELS", "in0_shape3" if channels_last else "in0_shape1"))
    for name, text in terms:
        source = source.replace(name, text)
    return source


def _channel_axis(channels_last):
    return 3 if channels_last else 1


def _group_shape(x, per_channel, channels_last):
    """Channel statistics are (C,), feature-map statistics (N, C)."""
    channels = x.shape[_channel_axis(channels_last)]
    return (channels,) if per_channel else (x.shape[0], channels)


def _spread_axes(per_channel, channels_last):
    """The axes along which a group's value is broadcast over x."""
    axes = [0, 1, 2] if channels_last else [0, 2, 3]
    return axes if per_channel else axes[1:]


def _group_reduce(inputs, term, per_channel, channels_last):
    """out[g] = the sum of `term` (a C expression of in0_p[k], in1_p[k]) over group g."""
    x = inputs[0]
    cpu = _GROUP_REDUCE_CHANNELS_LAST_CPU if channels_last else _GROUP_REDUCE_CPU
    return _code(_group_shape(x, per_channel, channels_last), x.dtype, inputs,
                 cpu_header=_CHANNELS_LAST_CPU_HEADER if channels_last else "",
                 cpu_src=_layout(cpu, per_channel, channels_last, ("TERM", term)),
                 cuda_header=_layout(_GROUP_REDUCE_CUDA_HEADER, per_channel, channels_last, ("TERM", term)),
                 cuda_src=_layout(_GROUP_REDUCE_CUDA, per_channel, channels_last))


class _GroupSum(Function):
    """Sum over each group; its adjoint is a broadcast."""

    def __init__(self, per_channel, channels_last):
        self.per_channel, self.channels_last = per_channel, channels_last

    def execute(self, x):
        self.shape = x.shape
        return _group_reduce([x], "in0_p[k]", self.per_channel, self.channels_last)

    def grad(self, grad):
        return grad.broadcast(self.shape, _spread_axes(self.per_channel, self.channels_last))


class _GroupDot(Function):
    """Sum over each group of a b; its adjoint scales b and a by the group's gradient.

    The gradient uses the caller's a and b (not the taped copies execute receives), so that a
    second differentiation reaches them."""

    def __init__(self, per_channel, channels_last, a, b):
        self.per_channel, self.channels_last, self.a, self.b = per_channel, channels_last, a, b

    def execute(self, a, b):
        return _group_reduce([a, b], "in0_p[k] * in1_p[k]", self.per_channel, self.channels_last)

    def grad(self, grad):
        return (group_affine(self.b, grad, None, self.per_channel, channels_last=self.channels_last),
                group_affine(self.a, grad, None, self.per_channel, channels_last=self.channels_last))


class _GroupSquareSum(Function):
    """Sum over each group of x^2; its adjoint scales 2 x by the group's gradient."""

    def __init__(self, per_channel, channels_last, x):
        self.per_channel, self.channels_last, self.x = per_channel, channels_last, x

    def execute(self, x):
        self.shape = x.shape
        return _group_reduce([x], "in0_p[k] * in0_p[k]", self.per_channel, self.channels_last)

    def grad(self, grad):
        return self.x * (2 * grad).broadcast(self.shape, _spread_axes(self.per_channel, self.channels_last))


class _GroupAffine(Function):
    """act(x scale[g] + shift[g]); scale or shift may be None (1 or 0), act a leaky ReLU of the
    given slope or none. Like _GroupDot, the gradient uses the caller's x and scale."""

    def __init__(self, per_channel, channels_last, x, scale, slope):
        self.per_channel, self.channels_last, self.x, self.scale, self.slope = (per_channel, channels_last, x, scale,
                                                                                slope)

    def execute(self, x, scale, shift):
        self.has_shift = shift is not None
        inputs = [x] + [v for v in (scale, shift) if v is not None]
        terms = {"SCALE": "in1_p[g]" if scale is not None else "1",
                 "SHIFT": f"in{len(inputs) - 1}_p[g]" if shift is not None else "0"}
        helper = ("" if self.slope is None else
                  f"template <class T> inline HOST_DEVICE T leaky(T v) {{ return {_leaky('v', 'v', self.slope)}; }}")

        def fill(source):
            return _layout(source, self.per_channel, self.channels_last,
                           ("ACTIVATION", "" if self.slope is None else "leaky"), *terms.items())
        cpu = _GROUP_AFFINE_CHANNELS_LAST_CPU if self.channels_last else _GROUP_AFFINE_CPU
        y = _code(x.shape, x.dtype, inputs, cpu_header=helper.replace("HOST_DEVICE ", ""), cpu_src=fill(cpu),
                  cuda_header=helper.replace("HOST_DEVICE", "__device__") + fill(_GROUP_AFFINE_CUDA_HEADER),
                  cuda_src=_GROUP_AFFINE_CUDA)
        if self.slope is not None:
            self.output = y.detach()
        return y

    def grad(self, grad):
        if self.slope is not None:
            grad = _LeakyReLUGrad(self.output, self.slope)(grad)
        shift_grad = group_sum(grad, self.per_channel, self.channels_last) if self.has_shift else None
        if self.scale is None:
            return grad, None, shift_grad
        axes = _spread_axes(self.per_channel, self.channels_last)
        return (grad * self.scale.broadcast(grad.shape, axes),
                group_dot(grad, self.x, self.per_channel, self.channels_last), shift_grad)


def _check_group_input(name, x, per_channel, channels_last, *stats):
    if len(x.shape) != 4:
        layout = "(N, H, W, C)" if channels_last else "(N, C, H, W)"
        raise ValueError(f"{name} needs a {layout} input, got {tuple(x.shape)}.")
    expected = _group_shape(x, per_channel, channels_last)
    for value in stats:
        if value is not None and tuple(value.shape) != expected:
            raise ValueError(f"{name} of a {tuple(x.shape)} input takes {expected} per-group "
                             f"values, got {tuple(value.shape)}.")


# Each group function takes x (N, C, H, W), or (N, H, W, C) where channels_last.

def group_sum(x, per_channel, channels_last=False):
    """The sums of x over each channel, (C,), or over each feature map, (N, C)."""
    _check_group_input("group_sum", x, per_channel, channels_last)
    return _GroupSum(per_channel, channels_last)(x)


def group_dot(a, b, per_channel, channels_last=False):
    """The sums of a b over each channel (C,) or each feature map (N, C)."""
    _check_group_input("group_dot", a, per_channel, channels_last)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"group_dot takes two inputs of one shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return _GroupDot(per_channel, channels_last, a, b)(a, b)


def group_square_sum(x, per_channel, channels_last=False):
    """The sums of x^2 over each channel (C,) or each feature map (N, C)."""
    _check_group_input("group_square_sum", x, per_channel, channels_last)
    return _GroupSquareSum(per_channel, channels_last, x)(x)


def group_affine(x, scale, shift, per_channel, slope=None, channels_last=False):
    """y = x scale + shift with one scale and shift per channel, (C,), or per feature map, (N, C);
    None stands for 1 (scale) or 0 (shift). With a `slope`, y is followed by a leaky ReLU of that
    slope in the same pass (0: ReLU), and the value before it is never stored."""
    _check_group_input("group_affine", x, per_channel, channels_last, scale, shift)
    return _GroupAffine(per_channel, channels_last, x, scale, slope)(x, scale, shift)


def add_channel_bias(x, bias, slope=None):
    """y[n, c, i, j] = x[n, c, i, j] + bias[c], followed by a leaky ReLU when a `slope` is given."""
    return group_affine(x, None, bias, per_channel=True, slope=slope)


_ELEMENTWISE_CPU = """
    const long long count = out0_shape0;
    #pragma omp parallel for simd if (count > 16384)
    for (long long i = 0; i < count; i++) out0_p[i] = EXPRESSION;
"""

_ELEMENTWISE_CUDA_HEADER = """
__global__ static void elementwise_kernel(@ARGS_DEF) {
    @PRECALC
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < out0_shape0;
         i += (long long)gridDim.x * blockDim.x) out0_p[i] = EXPRESSION;
}
"""

_ELEMENTWISE_CUDA = ("elementwise_kernel<<<(int)std::min(((long long)out0_shape0 + 255) / 256, 65536LL),"
                     " 256>>>(@ARGS);")


def _elementwise(expression, inputs):
    """out[i] = expression of in0_p[i], in1_p[i], ... over inputs of one shape, flattened."""
    shape = inputs[0].shape
    flat = [x.flatten() for x in inputs]
    out = _code(flat[0].shape, inputs[0].dtype, flat,
                cpu_src=_ELEMENTWISE_CPU.replace("EXPRESSION", expression),
                cuda_header=_ELEMENTWISE_CUDA_HEADER.replace("EXPRESSION", expression),
                cuda_src=_ELEMENTWISE_CUDA)
    return out.reshape(shape)


def _leaky(value, sign, slope):
    """The C expression value * (sign > 0 ? 1 : slope)."""
    return f"({sign} > 0 ? {value} : {value} * {float(slope)!r}f)"


class _LeakyReLUGrad(Function):
    """g -> g * (y > 0 ? 1 : slope) for the fixed output y of a leaky ReLU: linear and self-adjoint."""

    def __init__(self, output, slope):
        self.output, self.slope = output, slope

    def execute(self, grad):
        return _elementwise(_leaky("in0_p[i]", "in1_p[i]", self.slope), [grad, self.output])

    def grad(self, grad):
        return _LeakyReLUGrad(self.output, self.slope)(grad)


class _LeakyReLU(Function):
    def __init__(self, slope):
        self.slope = slope

    def execute(self, x):
        y = _elementwise(_leaky("in0_p[i]", "in0_p[i]", self.slope), [x])
        self.output = y.detach()
        return y

    def grad(self, grad):
        return _LeakyReLUGrad(self.output, self.slope)(grad)


def leaky_relu(x, slope):
    """y = x if x > 0 else slope * x (slope > 0), element-wise."""
    return _LeakyReLU(slope)(x)


_MULTI_TENSOR_CPU_HEADER = """
template <class T>
static void multi_tensor_ARITY(PARAMETERS, long long count, const T* h) {
    #pragma omp parallel for simd if (count > 16384)
    for (long long i = 0; i < count; i++) { BODY }
}
"""

_MULTI_TENSOR_CUDA_HEADER = """
template <class T>
__global__ static void multi_tensor_ARITY(PARAMETERS, long long count, const T* h) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) { BODY }
}
"""


MULTI_TENSOR_CHUNK = 1 << 20  # elements of one role per kernel op: bounds the outputs held with their inputs


def _chunks(tensors, limit):
    """Consecutive index ranges of `tensors` of at most `limit` elements each (one larger tensor alone)."""
    start, size = 0, 0
    for j, var in enumerate(tensors):
        if size and size + var.numel() > limit:
            yield range(start, j)
            start, size = j, 0
        size += var.numel()
    yield range(start, len(tensors))


def multi_tensor_update(body, roles, hyper, outputs):
    """Apply `body` element-wise to k tensors at once, in kernel ops (one launch per tensor) of at
    most MULTI_TENSOR_CHUNK elements a role: each op's new values are allocated while its inputs
    are alive, so a single op over a large model would hold two copies of its state at once.

    `roles` is a list of r lists of k Vars (e.g. parameters, gradients, moments): tensor j of every
    role has one shape. `body` is C code over element i that reads in0[i] .. in{r-1}[i] and the
    float32 Var `hyper` as h[0], h[1], ... and writes out0[i] .. out{outputs-1}[i]. Returns
    `outputs` lists of k new Vars. The hyper-parameters are data, so changing them compiles
    nothing.
    """
    count = len(roles[0])
    if any(len(role) != count for role in roles) or count == 0:
        raise ValueError("multi_tensor_update needs the same positive number of tensors in every role.")
    dtype = roles[0][0].dtype
    if any(var.dtype != dtype for role in roles for var in role):
        raise ValueError(f"multi_tensor_update needs tensors of one dtype ({dtype}).")
    new = [[] for _ in range(outputs)]
    for chunk in _chunks(roles[0], MULTI_TENSOR_CHUNK):
        for role, part in zip(new, _multi_tensor_op(body, [[role[j] for j in chunk] for role in roles],
                                                    hyper, outputs)):
            role.extend(part)
    return new


def _multi_tensor_op(body, roles, hyper, outputs):
    """One kernel op of multi_tensor_update."""
    count, dtype = len(roles[0]), roles[0][0].dtype
    shapes = [var.shape for var in roles[0]] * outputs
    new = _code(shapes, [dtype] * len(shapes), [var for role in roles for var in role] + [hyper],
                **_multi_tensor_sources(body, len(roles), outputs, count))
    return [list(new[o * count:(o + 1) * count]) for o in range(outputs)]


@functools.lru_cache(maxsize=256)
def _multi_tensor_sources(body, arity_in, outputs, count):
    """The jt.code sources of a multi-tensor op; made once per shape of call (they are long strings)."""
    arity = f"{arity_in}_{outputs}"
    parameters = ", ".join([f"const T* __restrict__ in{r}" for r in range(arity_in)]
                           + [f"T* __restrict__ out{o}" for o in range(outputs)])
    first_output = arity_in * count

    def arguments(j):
        return ", ".join([f"in{r * count + j}_p" for r in range(arity_in)]
                         + [f"out{o * count + j}_p" for o in range(outputs)]
                         + [f"in{j}->num", f"in{first_output}_p"])

    def header(template):
        return (template.replace("ARITY", arity).replace("PARAMETERS", parameters)
                .replace("BODY", body))
    return {"cpu_header": header(_MULTI_TENSOR_CPU_HEADER),
            "cpu_src": "\n".join(f"multi_tensor_{arity}({arguments(j)});" for j in range(count)),
            "cuda_header": header(_MULTI_TENSOR_CUDA_HEADER),
            "cuda_src": "\n".join(f"multi_tensor_{arity}<<<(int)std::min<long long>((in{j}->num + 255) / 256, "
                                   f"65536), 256>>>({arguments(j)});" for j in range(count))}


# Separable: the [1 2 1] sums along each row into a per-thread buffer, then [1 2 1] down the
# columns, with the borders outside the loops so that every inner loop over a row vectorises
# (faster than the direct 3x3 stencil, README "Speed"; equal to it up to rounding).
_BINOMIAL_BLUR_CPU_HEADER = "#include <vector>"
_BINOMIAL_BLUR_CPU = """
    const long long planes = (long long)in0_shape0 * in0_shape1;
    const int height = in0_shape2, width = in0_shape3;
    #pragma omp parallel
    {
        std::vector<in0_type> lines((size_t)height * width);
        #pragma omp for
        for (long long p = 0; p < planes; p++) {
            const in0_type* x = in0_p + p * height * width;
            out0_type* y = out0_p + p * height * width;
            for (int i = 0; i < height; i++) {
                const in0_type* row = x + i * width;
                in0_type* line = lines.data() + i * width;
                if (width == 1) { line[0] = 2 * row[0]; continue; }
                line[0] = 2 * row[0] + row[1];
                #pragma omp simd
                for (int j = 1; j < width - 1; j++) line[j] = 2 * row[j] + row[j - 1] + row[j + 1];
                line[width - 1] = 2 * row[width - 1] + row[width - 2];
            }
            for (int i = 0; i < height; i++) {
                const in0_type* mid = lines.data() + i * width;
                const in0_type* up = mid - width;
                const in0_type* down = mid + width;
                out0_type* out = y + i * width;
                const bool has_up = i > 0, has_down = i + 1 < height;
                if (has_up && has_down) {
                    #pragma omp simd
                    for (int j = 0; j < width; j++) out[j] = (up[j] + 2 * mid[j] + down[j]) * (in0_type)0.0625;
                } else if (has_up) {
                    #pragma omp simd
                    for (int j = 0; j < width; j++) out[j] = (up[j] + 2 * mid[j]) * (in0_type)0.0625;
                } else if (has_down) {
                    #pragma omp simd
                    for (int j = 0; j < width; j++) out[j] = (2 * mid[j] + down[j]) * (in0_type)0.0625;
                } else {
                    #pragma omp simd
                    for (int j = 0; j < width; j++) out[j] = 2 * mid[j] * (in0_type)0.0625;
                }
            }
        }
    }
"""

_BINOMIAL_BLUR_CUDA_HEADER = """
__global__ static void binomial_blur_kernel(@ARGS_DEF) {
    @PRECALC
    const int height = in0_shape2, width = in0_shape3;
    const long long count = (long long)in0_shape0 * in0_shape1 * height * width;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x) {
        const int j = k % width, i = (k / width) % height;
        const in0_type* x = in0_p + (k / ((long long)height * width)) * height * width;
        in0_type total = 0;
        for (int a = -1; a <= 1; a++) {
            if (i + a < 0 || i + a >= height) continue;
            const in0_type* row = x + (i + a) * width;
            in0_type line = 2 * row[j];
            if (j > 0) line += row[j - 1];
            if (j + 1 < width) line += row[j + 1];
            total += (a == 0 ? 2 : 1) * line;
        }
        out0_p[k] = total * (in0_type)0.0625;
    }
}
"""


class _BinomialBlur(Function):
    """The 3x3 binomial filter with zero padding: symmetric, so it is its own adjoint."""

    def execute(self, x):
        return _code(x.shape, x.dtype, [x], cpu_header=_BINOMIAL_BLUR_CPU_HEADER,
                     cpu_src=_BINOMIAL_BLUR_CPU, cuda_header=_BINOMIAL_BLUR_CUDA_HEADER,
                     cuda_src=_LAUNCH.format(name="binomial_blur_kernel"))

    def grad(self, grad):
        return _BinomialBlur()(grad)


def binomial_blur(x):
    """y = x * k per feature map, k = [1 2 1]^T [1 2 1] / 16, zero padding 1."""
    if len(x.shape) != 4:
        raise ValueError(f"binomial_blur needs a (N, C, H, W) input, got {tuple(x.shape)}.")
    return _BinomialBlur()(x)


# Reflection padding by PAD pixels and its adjoint. Padded row i shows input row reflect(i - PAD)
# (-1 -> 1, H -> H - 2); an input row r is shown at padded rows r + PAD, PAD - r (1 <= r <= PAD)
# and PAD + 2 (H - 1) - r (H - 1 - PAD <= r <= H - 2), so the adjoint sums those (same for columns).
# A tensor is PLANES maps of HEIGHT x WIDTH pixels of INNER values: (N C, H, W, 1) for (N, C, H, W),
# (N, H, W, C) channels-last; the CPU threads share out the planes' rows (one plane at batch 1).
_REFLECTION_HEADER = """
inline __host__ __device__ int reflected(int i, int size) {
    i = i < 0 ? -i : i;
    return i >= size ? 2 * (size - 1) - i : i;
}
inline __host__ __device__ int shown_at(int r, int size, int* at) {
    int n = 0;
    at[n++] = r + PAD;
    if (r >= 1 && r <= PAD) at[n++] = PAD - r;
    if (r >= size - 1 - PAD && r <= size - 2) at[n++] = PAD + 2 * (size - 1) - r;
    return n;
}
"""

_REFLECTION_SHAPES = """
    const long long planes = PLANES(out0);
    const int height = HEIGHT(in0), width = WIDTH(in0), out_height = HEIGHT(out0), out_width = WIDTH(out0);
    const int inner = INNER(in0);
"""

_REFLECTION_PAD_CPU = _REFLECTION_SHAPES + """
    #pragma omp parallel for collapse(2)
    for (long long plane = 0; plane < planes; plane++)
        for (int i = 0; i < out_height; i++) {
            const in0_type* row = in0_p + (plane * height + reflected(i - PAD, height)) * width * inner;
            out0_type* out_row = out0_p + (plane * out_height + i) * out_width * inner;
            for (int j = 0; j < out_width; j++) {
                const in0_type* from = row + reflected(j - PAD, width) * inner;
                for (int c = 0; c < inner; c++) out_row[j * inner + c] = from[c];
            }
        }
"""

_REFLECTION_FOLD_CPU = _REFLECTION_SHAPES + """
    #pragma omp parallel for collapse(2)
    for (long long plane = 0; plane < planes; plane++)
        for (int r = 0; r < out_height; r++) {
            const in0_type* g = in0_p + plane * height * width * inner;
            int rows[3], cols[3];
            const int row_count = shown_at(r, out_height, rows);
            for (int s = 0; s < out_width; s++) {
                const int col_count = shown_at(s, out_width, cols);
                out0_type* out = out0_p + ((plane * out_height + r) * out_width + s) * inner;
                for (int c = 0; c < inner; c++) out[c] = 0;
                for (int a = 0; a < row_count; a++)
                    for (int b = 0; b < col_count; b++) {
                        const in0_type* from = g + ((long long)rows[a] * width + cols[b]) * inner;
                        for (int c = 0; c < inner; c++) out[c] += from[c];
                    }
            }
        }
"""

# one CUDA thread per output element (c, j, i) of a plane
_REFLECTION_CUDA_KERNEL = """
__global__ static void reflection_NAME_kernel(@ARGS_DEF) {
    @PRECALC
    SHAPES
    const long long count = planes * out_height * out_width * inner;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x) {
        const int c = k % inner, j = (k / inner) % out_width, i = (k / inner / out_width) % out_height;
        const long long plane = k / ((long long)inner * out_width * out_height);
        BODY
    }
}
""".replace("SHAPES", _REFLECTION_SHAPES)

_REFLECTION_CUDA_BODIES = {
    "pad": """out0_p[k] = in0_p[((plane * height + reflected(i - PAD, height)) * width + reflected(j - PAD, width))
                          * inner + c];""",
    "fold": """int rows[3], cols[3];
        const int row_count = shown_at(i, out_height, rows), col_count = shown_at(j, out_width, cols);
        const in0_type* g = in0_p + plane * height * width * inner + c;
        out0_type total = 0;
        for (int a = 0; a < row_count; a++)
            for (int b = 0; b < col_count; b++) total += g[((long long)rows[a] * width + cols[b]) * inner];
        out0_p[k] = total;""",
}
_REFLECTION_CUDA = "".join(_REFLECTION_CUDA_KERNEL.replace("NAME", name).replace("BODY", body)
                           for name, body in _REFLECTION_CUDA_BODIES.items())

# (PLANES, HEIGHT, WIDTH, INNER) of a tensor t in each layout
_REFLECTION_LAYOUTS = {False: ("(long long)t_shape0 * t_shape1", "t_shape2", "t_shape3", "1"),
                       True: ("(long long)t_shape0", "t_shape1", "t_shape2", "t_shape3")}


def _reflection_source(source, padding, channels_last):
    """The source with PAD and the layout's PLANES(t), HEIGHT(t), WIDTH(t), INNER(t) filled in."""
    for name, expression in zip(("PLANES", "HEIGHT", "WIDTH", "INNER"), _REFLECTION_LAYOUTS[channels_last]):
        for tensor in ("in0", "out0"):
            source = source.replace(f"{name}({tensor})", expression.replace("t_", f"{tensor}_"))
    return source.replace("PAD", str(padding))


class _ReflectionPad(Function):
    """Reflection padding ("pad") and its adjoint ("fold": each padded pixel's value summed back onto
    the pixel it shows); each one's gradient is the other."""

    CPU = {"pad": _REFLECTION_PAD_CPU, "fold": _REFLECTION_FOLD_CPU}
    ADJOINT = {"pad": "fold", "fold": "pad"}

    def __init__(self, kind, padding, channels_last):
        self.kind, self.padding, self.channels_last = kind, padding, channels_last

    def execute(self, x):
        grow = 2 * self.padding if self.kind == "pad" else -2 * self.padding
        shape = list(x.shape)
        for axis in (1, 2) if self.channels_last else (2, 3):
            shape[axis] += grow
        source = functools.partial(_reflection_source, padding=self.padding, channels_last=self.channels_last)
        return _code(shape, x.dtype, [x], cpu_header=source(_REFLECTION_HEADER.replace("__host__ __device__ ", "")),
                     cpu_src=source(self.CPU[self.kind]), cuda_header=source(_REFLECTION_HEADER + _REFLECTION_CUDA),
                     cuda_src=_LAUNCH.format(name=f"reflection_{self.kind}_kernel"))

    def grad(self, grad):
        return _ReflectionPad(self.ADJOINT[self.kind], self.padding, self.channels_last)(grad)


def reflection_pad(x, padding, channels_last=False):
    """x padded by p pixels on each side with its reflection about the border pixels
    (nn.ReflectionPad2d(p)), p < H and p < W; x is (N, C, H, W), or (N, H, W, C) where channels_last."""
    height, width = x.shape[1:3] if channels_last else x.shape[2:]
    if len(x.shape) != 4 or not 0 <= padding < min(height, width):
        layout = "(N, H, W, C)" if channels_last else "(N, C, H, W)"
        raise ValueError(f"reflection padding by {padding} needs a {layout} input with H and W above "
                         f"{padding}, got {tuple(x.shape)}.")
    return _ReflectionPad("pad", padding, channels_last)(x)
