"""Helpers for comparing a Jittor module with an independent PyTorch reference."""
import numpy as np


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
