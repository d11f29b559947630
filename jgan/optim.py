"""Optimisers: `build_optimizer` from a configuration, and FusedAdam, Adam with the whole update of
a parameter group in one multi-threaded kernel op.

jt.optim.Adam's update is fused by Jittor into one loop per parameter that runs on one CPU thread,
built op by op in Python. FusedAdam computes exactly the same thing (Jittor's order of operations:
eps added to sqrt(v) before the bias-corrected step size is applied) for every parameter of a group
in one jgan.kernels.multi_tensor_update op: OpenMP on the CPU, CUDA on a GPU. The
hyper-parameters travel in a small Var, not in the kernel's source, so that neither the step count
nor a new learning rate compiles a new kernel. Gradients, their MPI all-reduce, the state kept
(`values`, `m`) and checkpoints are jt.optim.Adam's.

Both optimisers' backward passes are final (jgan.autograd): nothing differentiates the gradients
they compute, so jgan's custom gradients keep no Var alive for that.
"""
import jittor as jt

from jgan.autograd import final_backward
from jgan.errors import ConfigError
from jgan.kernels import multi_tensor_update

# in0..in3: parameter, gradient, first and second moment; h: the numbers of hyper_parameters().
_ADAM_BODY = """
    const T grad = in1[i] + h[6] * in0[i];
    const T m = h[1] * in2[i] + h[2] * grad;
    const T v = h[3] * in3[i] + h[4] * grad * grad;
    out1[i] = m;
    out2[i] = v;
    out0[i] = in0[i] - m * h[0] / (sqrt(v) + h[5]);
"""


class FinalBackward:
    """An optimiser whose backward passes that drop the graph (all but a retain_graph one) are
    final: jgan's custom gradients keep nothing alive for a second differentiation (jgan.autograd)."""

    def backward(self, loss, retain_graph=False):
        if retain_graph:
            return super().backward(loss, retain_graph)
        with final_backward():
            return super().backward(loss, retain_graph)


class FusedAdam(FinalBackward, jt.optim.Adam):
    """jt.optim.Adam whose update of a parameter group is one multi-threaded kernel op."""

    def step(self, loss=None, retain_graph=False):
        self.pre_step(loss, retain_graph)
        n = float(self.n_step)
        for group in self.param_groups:
            live = [k for k, param in enumerate(group["params"]) if not param.is_stop_grad()]
            if not live:
                continue
            roles = [[group[key][k] for k in live] for key in ("params", "grads", "m", "values")]
            hyper = jt.array(self.hyper_parameters(group, n), dtype=roles[0][0].dtype)
            updated = multi_tensor_update(_ADAM_BODY, roles, hyper, outputs=3)
            for old, new in zip(roles[0] + roles[2] + roles[3], sum(updated, [])):
                old.update(new)
        self.post_step()

    def hyper_parameters(self, group, n):
        """step size (lr with both bias corrections), beta0, 1 - beta0, beta1, 1 - beta1, eps, weight decay."""
        beta0, beta1 = group.get("betas", self.betas)
        lr = group.get("lr", self.lr)
        step_size = lr * (1 - beta1 ** n) ** 0.5 / (1 - beta0 ** n)
        return [step_size, beta0, 1 - beta0, beta1, 1 - beta1, group.get("eps", self.eps),
                group.get("weight_decay", self.weight_decay)]


class RMSprop(FinalBackward, jt.optim.RMSprop):
    """jt.optim.RMSprop (WGAN's optimiser)."""


def build_optimizer(params, optim, lr):
    """The optimiser an `optim` configuration section names, over `params` at learning rate `lr`."""
    if optim["name"] == "adam":
        return FusedAdam(params, lr, betas=tuple(optim["betas"]))
    if optim["name"] == "rmsprop":
        return RMSprop(params, lr, eps=optim.get("eps", 1e-8), alpha=optim.get("alpha", 0.99))
    raise ConfigError(f"unknown optimiser {optim['name']!r}; choose adam or rmsprop")
