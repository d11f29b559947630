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


def accumulate(ema, model, decay, averaged=None):
    """EMA of the weights, ema = decay * ema + (1 - decay) * model (one multi-tensor kernel op),
    over the state entries named in `averaged` (default: the model's trainable weights); the
    other entries (buffers) are copied as they are."""
    averaged = trainable_names(model) if averaged is None else averaged
    model_state = model.state_dict()
    targets, sources = [], []
    for name, var in ema.state_dict().items():
        source = model_state[name].detach()
        if name in averaged:
            targets.append(var)
            sources.append(source)
        else:
            var.update(source)
    if targets:
        hyper = jt.array([decay, 1 - decay], dtype=targets[0].dtype)
        updated, = multi_tensor_update(EMA_BODY, [targets, sources], hyper, outputs=1)
        for var, new in zip(targets, updated):
            var.update(new)


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
