"""PyTorch reference of CycleGAN, written from Zhu et al. 2017 and the design of
junyanz/pytorch-CycleGAN-and-pix2pix (ResnetGenerator, NLayerDiscriminator, GANLoss('lsgan'),
ImagePool, the 'linear' lr policy, optimize_parameters), for parity tests and scripts/bench.py.

Layer order inside each nn.Sequential follows jgan.networks.cyclegan so that parameter names
coincide; InstanceNorm has no affine parameters and no running statistics, as in the original, and
the convolutions it follows have no bias (which it would cancel; the original keeps them).
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels):
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class TorchResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False),
                                  _norm(channels), nn.ReLU(True), nn.ReflectionPad2d(1),
                                  nn.Conv2d(channels, channels, 3, bias=False), _norm(channels))

    def forward(self, x):
        return x + self.body(x)


class TorchResnetGenerator(nn.Module):
    """c7s1-ngf, d(2 ngf), d(4 ngf), R(4 ngf) x blocks, u(2 ngf), u(ngf), c7s1-3 (the paper's notation)."""

    def __init__(self, ngf=64, blocks=6, channels=3):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7, bias=False), _norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=False),
                       _norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [TorchResidualBlock(ngf * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=False), _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x)


class TorchPatchDiscriminator(nn.Module):
    """C64 (no norm) - C128 - C256 - C512 (stride 1) - 1-channel conv, 4x4 kernels, LeakyReLU 0.2."""

    def __init__(self, ndf=64, layers=3, channels=3):
        super().__init__()
        stack = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        previous = ndf
        for n in range(1, layers + 1):
            width = ndf * min(2 ** n, 8)
            stack += [nn.Conv2d(previous, width, 4, stride=2 if n < layers else 1, padding=1, bias=False),
                      _norm(width), nn.LeakyReLU(0.2, True)]
            previous = width
        stack.append(nn.Conv2d(previous, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*stack)

    def forward(self, x):
        return self.main(x)


def init_weights(module, std=0.02):
    """Conv weights ~ N(0, std), biases 0 (junyanz's init_type='normal')."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


# ----- losses -------------------------------------------------------------------------------------
def lsgan(prediction, is_real):
    """GANLoss('lsgan'): MSE against a target map of ones (real) or zeros (fake)."""
    target = torch.ones_like(prediction) if is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def generator_losses(nets, real_a, real_b, lambda_cycle=10.0, lambda_identity=0.5):
    """backward_G's terms: {'gan_a2b', 'gan_b2a', 'cycle_a', 'cycle_b', 'idt_a', 'idt_b', 'total'};
    nets holds g_ab, g_ba, d_a (judges domain A), d_b (judges domain B). Also returns the fakes."""
    fake_b, fake_a = nets["g_ab"](real_a), nets["g_ba"](real_b)
    terms = {"gan_a2b": lsgan(nets["d_b"](fake_b), True), "gan_b2a": lsgan(nets["d_a"](fake_a), True),
             "cycle_a": F.l1_loss(nets["g_ba"](fake_b), real_a) * lambda_cycle,
             "cycle_b": F.l1_loss(nets["g_ab"](fake_a), real_b) * lambda_cycle}
    if lambda_identity > 0:
        terms["idt_a"] = F.l1_loss(nets["g_ab"](real_b), real_b) * lambda_cycle * lambda_identity
        terms["idt_b"] = F.l1_loss(nets["g_ba"](real_a), real_a) * lambda_cycle * lambda_identity
    terms["total"] = sum(terms.values())
    return terms, fake_a, fake_b


def discriminator_loss(discriminator, real, fake):
    """backward_D_basic: (MSE(D(real), 1) + MSE(D(fake.detach()), 0)) / 2."""
    return (lsgan(discriminator(real), True) + lsgan(discriminator(fake.detach()), False)) * 0.5


# ----- image pool and learning rate -----------------------------------------------------------
class TorchImagePool:
    """ImagePool with its coin and slot drawn from a numpy RandomState (rand(), then randint(size))
    instead of Python's `random`, so that a test can hand both implementations the same draws."""

    def __init__(self, size):
        self.size, self.images = size, []

    def query(self, images, rng):
        if self.size == 0:
            return images
        returned = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif rng.rand() > 0.5:
                slot = rng.randint(self.size)
                returned.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                returned.append(image)
        return torch.cat(returned, 0)


def linear_policy(n_constant, n_decay):
    """The 'linear' lr policy for LambdaLR, with steps for epochs and epoch_count 1."""
    return lambda step: 1.0 - max(0, step + 1 - n_constant) / float(n_decay + 1)


# ----- one training step ----------------------------------------------------------------------
def training_step(nets, optimizer_g, optimizer_d, pools, real_a, real_b, rng, lambda_cycle=10.0,
                  lambda_identity=0.5):
    """optimize_parameters: G update with the discriminators frozen, then both discriminators on
    pooled fakes (fake_B's pool first). Returns the losses, detached (reading them syncs a device)."""
    for name in ("d_a", "d_b"):
        nets[name].requires_grad_(False)
    optimizer_g.zero_grad()
    terms, fake_a, fake_b = generator_losses(nets, real_a, real_b, lambda_cycle, lambda_identity)
    terms["total"].backward()
    optimizer_g.step()
    for name in ("d_a", "d_b"):
        nets[name].requires_grad_(True)
    optimizer_d.zero_grad()
    loss_b = discriminator_loss(nets["d_b"], real_b, pools["b"].query(fake_b, rng))
    loss_b.backward()
    loss_a = discriminator_loss(nets["d_a"], real_a, pools["a"].query(fake_a, rng))
    loss_a.backward()
    optimizer_d.step()
    return {"g": terms["total"].detach(), "d_a": loss_a.detach(), "d_b": loss_b.detach()}


def numpy_state(module):
    return {name: value.detach().cpu().numpy() for name, value in module.state_dict().items()}


def random_images(rng, batch, size):
    return rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
