"""Adam with its update fused into one multi-threaded kernel per parameter.

jt.optim.Adam's update is fused by Jittor into one loop per parameter that runs on one CPU thread.
FusedAdam computes exactly the same thing (Jittor's order of operations: eps added to sqrt(v)
before the bias-corrected step size is applied) in a `jt.code` kernel with an OpenMP `cpu_src`
and a CUDA `cuda_src`. The hyper-parameters travel in a small Var, not in the kernel's source, so
that neither the step count nor a new learning rate compiles a new kernel. Gradients, their MPI
all-reduce, the state kept (`values`, `m`) and checkpoints are jt.optim.Adam's.
"""
import jittor as jt

_ADAM_BODY = """
        const in0_type grad = in1_p[i] + weight_decay * in0_p[i];
        const in0_type m = beta0 * in2_p[i] + one_minus_beta0 * grad;
        const in0_type v = beta1 * in3_p[i] + one_minus_beta1 * grad * grad;
        out1_p[i] = m;
        out2_p[i] = v;
        out0_p[i] = in0_p[i] - m * step_size / (sqrt(v) + eps);
"""

_HYPER = """
    const in0_type step_size = in4_p[0], beta0 = in4_p[1], one_minus_beta0 = in4_p[2];
    const in0_type beta1 = in4_p[3], one_minus_beta1 = in4_p[4], eps = in4_p[5];
    const in0_type weight_decay = in4_p[6];
"""

_ADAM_CPU = _HYPER + """
    const long long count = in0_shape0;
    #pragma omp parallel for if (count > 16384)
    for (long long i = 0; i < count; i++) {""" + _ADAM_BODY + "    }\n"

_ADAM_CUDA_HEADER = """
__global__ static void adam_kernel(@ARGS_DEF) {
    @PRECALC""" + _HYPER + """
    const long long count = in0_shape0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {""" + _ADAM_BODY + """    }
}
"""

_ADAM_CUDA = "adam_kernel<<<(int)std::min(((long long)in0_shape0 + 255) / 256, 65536LL), 256>>>(@ARGS);"


def adam_update(param, grad, m, v, hyper):
    """(param, m, v) after one Adam step; all flat float Vars of one length, `hyper` the 7 numbers
    (step_size, beta0, 1 - beta0, beta1, 1 - beta1, eps, weight_decay)."""
    shape = param.shape
    return jt.code([shape, shape, shape], [param.dtype] * 3, [param, grad, m, v, hyper],
                   cpu_src=_ADAM_CPU, cuda_header=_ADAM_CUDA_HEADER, cuda_src=_ADAM_CUDA)


class FusedAdam(jt.optim.Adam):
    """jt.optim.Adam whose per-parameter update is one multi-threaded kernel."""

    def step(self, loss=None, retain_graph=False):
        self.pre_step(loss, retain_graph)
        n = float(self.n_step)
        for group in self.param_groups:
            hyper = jt.array(self.hyper_parameters(group, n), dtype="float32")
            for param, grad, v, m in zip(group["params"], group["grads"], group["values"], group["m"]):
                if param.is_stop_grad():
                    continue
                new_param, new_m, new_v = adam_update(param.flatten(), grad.flatten(), m.flatten(),
                                                      v.flatten(), hyper)
                m.update(new_m.reshape(m.shape))
                v.update(new_v.reshape(v.shape))
                param.update(new_param.reshape(param.shape))
        self.post_step()

    def hyper_parameters(self, group, n):
        beta0, beta1 = group.get("betas", self.betas)
        lr = group.get("lr", self.lr)
        step_size = lr * (1 - beta1 ** n) ** 0.5 / (1 - beta0 ** n)
        return [step_size, beta0, 1 - beta0, beta1, 1 - beta1, group.get("eps", self.eps),
                group.get("weight_decay", self.weight_decay)]
