"""PyTorch optimisers with Jittor's update rules, for parity tests of training steps."""
import math

import torch


class EpsHatAdam(torch.optim.Adam):
    """torch Adam with Jittor's eps placement: eps is added to sqrt(v) BEFORE bias correction.

    torch: w -= lr m_hat / (sqrt(v_hat) + eps);
    Jittor: w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps),
    which is torch's update with eps_t = eps / sqrt(1 - b2^t) (Kingma & Ba's "epsilon hat", as in
    TensorFlow).
    A parameter group may carry its own "eps" (and "lr"), as in torch.
    """

    def __init__(self, params, lr, betas, eps=1e-8):
        super().__init__(params, lr, betas=betas, eps=eps)
        for group in self.param_groups:
            group["eps_hat"] = group["eps"]
        self.t = 0

    def step(self, closure=None):
        self.t += 1
        for group in self.param_groups:
            group["eps"] = group["eps_hat"] / math.sqrt(1 - group["betas"][1] ** self.t)
        return super().step(closure)
