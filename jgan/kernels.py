"""Hand-written kernels for the operations Jittor's generated code runs slowly on the CPU.

Jittor lowers 2x2 pooling and nearest upsampling to generic index kernels and runs them, like
every kernel it generates for the CPU, on one thread; so are the per-channel sums that bias
gradients need and the leaky ReLU with its gradient. Each kernel here is a `jt.code` op with an OpenMP `cpu_src` and a CUDA `cuda_src`.
The operations are linear and wrapped in `jt.Function`s whose gradient is again such a function
or a plain Jittor op: gradients of any order (the WGAN-GP and R1 penalties differentiate twice)
stay on the fast path.
"""
import jittor as jt

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
    return jt.code([batch, channels, height // 2, width // 2], x.dtype, [x],
                   cpu_src=_with_scale(_SUM_2X2_CPU, scale),
                   cuda_header=_with_scale(_SUM_2X2_CUDA_HEADER, scale),
                   cuda_src=_LAUNCH.format(name="sum_2x2_kernel"))


def _repeat_2x(x, scale):
    """y[i, j] = scale * x[i // 2, j // 2]."""
    batch, channels, height, width = x.shape
    return jt.code([batch, channels, 2 * height, 2 * width], x.dtype, [x],
                   cpu_src=_with_scale(_REPEAT_2X_CPU, scale),
                   cuda_header=_with_scale(_REPEAT_2X_CUDA_HEADER, scale),
                   cuda_src=_LAUNCH.format(name="repeat_2x_kernel"))


class _Sum2x2(jt.Function):
    """scale * 2x2 sum pooling; its adjoint is scale * nearest upsampling."""

    def __init__(self, scale):
        self.scale = scale

    def execute(self, x):
        return _sum_2x2(x, self.scale)

    def grad(self, grad):
        return _Repeat2x(self.scale)(grad)


class _Repeat2x(jt.Function):
    """scale * nearest x2 upsampling; its adjoint is scale * 2x2 sum pooling."""

    def __init__(self, scale):
        self.scale = scale

    def execute(self, x):
        return _repeat_2x(x, self.scale)

    def grad(self, grad):
        return _Sum2x2(self.scale)(grad)


def _check_even(x):
    if len(x.shape) != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"2x2 pooling needs a (N, C, H, W) input with even H and W, got {tuple(x.shape)}.")


def average_pool_2x2(x):
    """y = 2x2 average pooling with stride 2 of a (N, C, H, W) input with even H and W."""
    _check_even(x)
    return _Sum2x2(0.25)(x)


def upsample_nearest_2x(x):
    """y[i, j] = x[i // 2, j // 2]: nearest-neighbour upsampling by 2 of a (N, C, H, W) input."""
    if len(x.shape) != 4:
        raise ValueError(f"upsampling needs a (N, C, H, W) input, got {tuple(x.shape)}.")
    return _Repeat2x(1.0)(x)


_CHANNEL_SUM_CPU = """
    const int batch = in0_shape0, channels = in0_shape1;
    const long long plane = (long long)in0_shape2 * in0_shape3;
    #pragma omp parallel for
    for (int c = 0; c < channels; c++) {
        in0_type total = 0;
        for (int n = 0; n < batch; n++) {
            const in0_type* x = in0_p + ((long long)n * channels + c) * plane;
            in0_type partial = 0;
            #pragma omp simd reduction(+:partial)
            for (long long k = 0; k < plane; k++) partial += x[k];
            total += partial;
        }
        out0_p[c] = total;
    }
"""

_CHANNEL_SUM_CUDA_HEADER = """
__global__ static void channel_sum_kernel(@ARGS_DEF) {
    @PRECALC
    __shared__ in0_type partial[256];
    const int c = blockIdx.x;
    const long long plane = (long long)in0_shape2 * in0_shape3, count = in0_shape0 * plane;
    in0_type total = 0;
    for (long long k = threadIdx.x; k < count; k += blockDim.x)
        total += in0_p[((k / plane) * in0_shape1 + c) * plane + k % plane];
    partial[threadIdx.x] = total;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out0_p[c] = partial[0];
}
"""


_ADD_BIAS_CPU = """
    const long long planes = (long long)in0_shape0 * in0_shape1, plane = (long long)in0_shape2 * in0_shape3;
    #pragma omp parallel for
    for (long long p = 0; p < planes; p++) {
        const in0_type b = in1_p[p % in0_shape1];
        const in0_type* x = in0_p + p * plane;
        out0_type* y = out0_p + p * plane;
        #pragma omp simd
        for (long long k = 0; k < plane; k++) y[k] = x[k] + b;
    }
"""

_ADD_BIAS_CUDA_HEADER = """
__global__ static void add_bias_kernel(@ARGS_DEF) {
    @PRECALC
    const long long plane = (long long)in0_shape2 * in0_shape3;
    const long long count = (long long)in0_shape0 * in0_shape1 * plane;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < count;
         k += (long long)gridDim.x * blockDim.x)
        out0_p[k] = in0_p[k] + in1_p[(k / plane) % in0_shape1];
}
"""

_ADD_BIAS_CUDA = ("add_bias_kernel<<<(int)std::min(((long long)in0_shape0 * in0_shape1 * in0_shape2 * in0_shape3"
                  " + 255) / 256, 65536LL), 256>>>(@ARGS);")


class _ChannelSum(jt.Function):
    """(N, C, H, W) -> (C,): the sum over batch and pixels; its adjoint is a broadcast."""

    def execute(self, x):
        self.shape = x.shape
        return jt.code([x.shape[1]], x.dtype, [x], cpu_src=_CHANNEL_SUM_CPU,
                       cuda_header=_CHANNEL_SUM_CUDA_HEADER,
                       cuda_src="channel_sum_kernel<<<in0_shape1, 256>>>(@ARGS);")

    def grad(self, grad):
        return grad.broadcast(self.shape, [0, 2, 3])


class _AddChannelBias(jt.Function):
    """x + b per channel; the bias gradient is a multi-threaded channel sum."""

    def execute(self, x, bias):
        return jt.code(x.shape, x.dtype, [x, bias], cpu_src=_ADD_BIAS_CPU,
                       cuda_header=_ADD_BIAS_CUDA_HEADER, cuda_src=_ADD_BIAS_CUDA)

    def grad(self, grad):
        return grad, _ChannelSum()(grad)


def channel_sum(x):
    """y[c] = sum over n, i, j of x[n, c, i, j]."""
    if len(x.shape) != 4:
        raise ValueError(f"channel_sum needs a (N, C, H, W) input, got {tuple(x.shape)}.")
    return _ChannelSum()(x)


def add_channel_bias(x, bias):
    """y[n, c, i, j] = x[n, c, i, j] + bias[c]."""
    if len(x.shape) != 4 or tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"a bias of shape ({x.shape[1]},) is added to (N, C, H, W) inputs; got "
                         f"{tuple(bias.shape)} and {tuple(x.shape)}.")
    return _AddChannelBias()(x, bias)


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
    out = jt.code(flat[0].shape, inputs[0].dtype, flat,
                  cpu_src=_ELEMENTWISE_CPU.replace("EXPRESSION", expression),
                  cuda_header=_ELEMENTWISE_CUDA_HEADER.replace("EXPRESSION", expression),
                  cuda_src=_ELEMENTWISE_CUDA)
    return out.reshape(shape)


def _leaky(value, sign, slope):
    """The C expression value * (sign > 0 ? 1 : slope)."""
    return f"({sign} > 0 ? {value} : {value} * {float(slope)!r}f)"


class _LeakyReLUGrad(jt.Function):
    """g -> g * (y > 0 ? 1 : slope) for the fixed output y of a leaky ReLU: linear and self-adjoint."""

    def __init__(self, output, slope):
        self.output, self.slope = output, slope

    def execute(self, grad):
        return _elementwise(_leaky("in0_p[i]", "in1_p[i]", self.slope), [grad, self.output])

    def grad(self, grad):
        return _LeakyReLUGrad(self.output, self.slope)(grad)


class _LeakyReLU(jt.Function):
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
