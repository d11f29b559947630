"""The exponential moving average of a generator's weights, the generator samples are drawn from."""
import math

import jittor as jt

from jgan.kernels import multi_tensor_update

EMA_BODY = "out0[i] = in0[i] * h[0] + in1[i] * h[1];"   # ema * decay + weight * (1 - decay)


def trainable_names(module):
    """Names of a module's trainable weights in its state dict (the rest are buffers)."""
    return {name for name, var in module.state_dict().items() if not var.is_stop_grad()}


def copy_weights(source, target):
    target.load_state_dict({k: v.clone() for k, v in source.state_dict().items()})


class WeightAverage:
    """The EMA of a model's weights in a copy of it, ema = decay * ema + (1 - decay) * model (in
    multi-tensor kernel ops), over the state entries named in `averaged` (default: the model's
    trainable weights); the other entries (buffers) are copied as they are.

    The pairs of Vars are looked up once: Jittor keeps a Var's identity through `update` and
    `load_state_dict`, and walking both module trees at every step costs more than the update."""

    def __init__(self, ema, model, averaged=None):
        averaged = trainable_names(model) if averaged is None else averaged
        model_state = model.state_dict()
        self.averaged, self.copied = [], []
        for name, var in ema.state_dict().items():
            (self.averaged if name in averaged else self.copied).append((var, model_state[name]))

    def update(self, decay):
        for target, source in self.copied:
            target.update(source.detach())
        if self.averaged:
            targets = [target for target, _ in self.averaged]
            hyper = jt.array([decay, 1 - decay], dtype=targets[0].dtype)
            updated, = multi_tensor_update(EMA_BODY, [targets, [source.detach() for _, source in self.averaged]],
                                           hyper, outputs=1)
            for target, new in zip(targets, updated):
                target.update(new)


def ramped_decay(decay, step_images, shown, rampup):
    """The EMA decay of one step that shows `step_images` images after `shown` were shown.

    Without a ramp-up (rampup 0) it is `decay`. With one (stylegan2-ada's ema_rampup), the EMA's
    half-life, counted in images, is at most `rampup * shown`, so that the average of a short run
    is not dominated by its first weights: decay = 0.5 ** (step_images / half-life), and 0 (a
    copy of the weights) at the first step."""
    if not rampup:
        return decay
    half_life = step_images * math.log(0.5) / math.log(decay)
    half_life = min(half_life, rampup * shown)
    return 0.5 ** (step_images / half_life) if half_life > 0 else 0.0
