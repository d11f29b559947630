"""Helpers for comparing a Jittor module with an independent PyTorch reference."""
import numpy as np

CONVOLUTIONS = {   # (x shape, w shape, stride, padding): DCGAN's critic, StyleGAN's 3x3, CycleGAN's 7x7 and 1x1
    "4x4 stride 2": ((2, 3, 16, 16), (8, 3, 4, 4), 2, 1),
    "3x3 same": ((2, 4, 9, 7), (5, 4, 3, 3), 1, 1),
    "7x7 valid": ((1, 3, 12, 12), (4, 3, 7, 7), 1, 0),
    "1x1": ((3, 6, 5, 5), (2, 6, 1, 1), 1, 0),
    "3x3 stride 2 odd size": ((2, 3, 9, 9), (4, 3, 3, 3), 2, 1),
}
TRANSPOSED = {   # (x shape, w shape, stride, padding, output padding): DCGAN's, its projection, CycleGAN's
    "4x4 stride 2": ((2, 8, 5, 5), (8, 3, 4, 4), 2, 1, 0),
    "projection 1x1 to 4x4": ((3, 10, 1, 1), (10, 6, 4, 4), 1, 0, 0),
    "3x3 stride 2 output padding": ((2, 4, 6, 6), (4, 3, 3, 3), 2, 1, 1),
}


def to_numpy(value):
    """A jt.Var, torch.Tensor or array as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def max_abs_diff(a, b):
    a, b = to_numpy(a), to_numpy(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_close(name, jittor_value, torch_value, atol, rtol=0.0):
    """Fail with the name, the max abs difference and the tolerance when they disagree."""
    a, b = to_numpy(jittor_value), to_numpy(torch_value)
    assert a.shape == b.shape, f"{name}: shapes differ, jittor {a.shape} vs torch {b.shape}"
    diff = np.abs(a - b)
    limit = atol + rtol * np.abs(b)
    worst = float(np.max(diff - limit)) if a.size else 0.0
    assert worst <= 0, (f"{name}: max abs diff {float(np.max(diff)):.3e} exceeds "
                        f"atol {atol:.1e} + rtol {rtol:.1e}")


def copy_parameters(jittor_module, torch_module, rename=lambda name: name):
    """Copy every torch parameter and buffer into the Jittor module (names mapped by `rename`)."""
    import torch
    jittor_state = jittor_module.state_dict()
    torch_state = dict(torch_module.named_parameters())
    torch_state.update(dict(torch_module.named_buffers()))
    loaded = {}
    for name, tensor in torch_state.items():
        if name.endswith("num_batches_tracked"):
            continue
        target = rename(name)
        assert target in jittor_state, f"torch parameter {name} -> {target} has no Jittor counterpart"
        with torch.no_grad():
            loaded[target] = tensor.detach().cpu().numpy().copy()
    missing = set(jittor_state) - set(loaded)
    assert not missing, f"Jittor parameters without a torch counterpart: {sorted(missing)}"
    jittor_module.load_state_dict(loaded)


def report_close(name, jittor_value, torch_value, atol, rtol=0.0):
    """assert_close, after printing the max abs difference and the reference's scale (pytest -s)."""
    scale = float(np.abs(to_numpy(torch_value)).max())
    print(f"{name}: max abs diff {max_abs_diff(jittor_value, torch_value):.2e} (max abs value {scale:.2e})")
    assert_close(name, jittor_value, torch_value, atol=atol, rtol=rtol)


def gradient_pairs(jt_loss, jt_net, th_loss, th_net, convert):
    """[(Jittor name, Jittor dL/dW, reference dL/dW renamed by `convert`)] for every trainable
    parameter of `jt_net`; a reference parameter the loss does not reach has a zero gradient."""
    import jittor as jt
    import torch
    jt_state = {n: v for n, v in jt_net.state_dict().items() if not v.is_stop_grad()}
    names = sorted(jt_state)
    jt_grads = jt.grad(jt_loss, [jt_state[n] for n in names])
    th_params = dict(th_net.named_parameters())
    th_grads = torch.autograd.grad(th_loss, list(th_params.values()), allow_unused=True)
    expected = convert({name: np.zeros(p.shape) if g is None else g.numpy()
                        for (name, p), g in zip(th_params.items(), th_grads)})
    return [(name, g, expected[name]) for name, g in zip(names, jt_grads)]
