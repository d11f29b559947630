"""PyTorch reference losses, written from the papers' equations (autograd.grad with create_graph)."""
import torch
import torch.nn.functional as F
from torch import autograd


def bce_d(D, real, fake, real_label=1.0):
    """Cross-entropy with the target real_label for real images (< 1: one-sided label smoothing)."""
    real_scores = D(real)
    real_loss = F.binary_cross_entropy_with_logits(real_scores, torch.full_like(real_scores, real_label))
    return real_loss + F.softplus(D(fake)).mean(), {}


def bce_g(D, fake):
    return F.softplus(-D(fake)).mean()


def wgan_d(D, real, fake):
    d_real = D(real)          # real first: BatchNorm running statistics depend on the order
    return D(fake).mean() - d_real.mean(), {}


def wgan_g(D, fake):
    return -D(fake).mean()


def lsgan_d(D, real, fake):
    return 0.5 * ((D(real) - 1) ** 2).mean() + 0.5 * (D(fake) ** 2).mean(), {}


def lsgan_g(D, fake):
    return 0.5 * ((D(fake) - 1) ** 2).mean()


def gradient_penalty(D, real, fake, eps):
    """Gulrajani et al. 2017, Algorithm 1: (||grad D(x_hat)||_2 - 1)^2 per sample, averaged."""
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def wgan_gp_d(D, real, fake, eps, gp_weight=10.0, drift=0.0):
    d_real, d_fake = D(real), D(fake)
    gp = gradient_penalty(D, real, fake, eps)
    loss = d_fake.mean() - d_real.mean() + gp_weight * gp + drift * (d_real ** 2).mean()
    return loss, {"gp": gp}


def wgan_div_d(D, real, fake, k=2.0, p=6.0):
    """Wu et al. 2018 as in their reference code: k/2 mean(||g_real||^p + ||g_fake||^p)."""
    real = real.clone().requires_grad_(True)
    fake = fake.clone().requires_grad_(True)
    d_real, d_fake = D(real), D(fake)
    g_real, = autograd.grad(d_real.sum(), real, create_graph=True)
    g_fake, = autograd.grad(d_fake.sum(), fake, create_graph=True)
    norm_real = g_real.flatten(1).norm(2, dim=1) ** p
    norm_fake = g_fake.flatten(1).norm(2, dim=1) ** p
    div = torch.mean(norm_real + norm_fake) * k / 2
    return d_fake.mean() - d_real.mean() + div, {"div": div, "real_grad": g_real}


def r1_d(D, real, fake, gamma=10.0, every=1, regularise=True):
    """Lazy R1 (StyleGAN2): the penalty only on regularising steps, then weighted `every`."""
    if not regularise:
        return bce_d(D, real, fake)
    real = real.clone().requires_grad_(True)
    d_real = D(real)
    g_real, = autograd.grad(d_real.sum(), real, create_graph=True)
    r1 = g_real.pow(2).sum(dim=[1, 2, 3]).mean()
    return F.softplus(-d_real).mean() + F.softplus(D(fake)).mean() + every * gamma / 2 * r1, {"r1": r1}


def clip_weights(D, clip):
    for param in D.parameters():
        param.data.clamp_(-clip, clip)


def discriminator_loss(name, D, real, fake, eps, regularise=True, **params):
    """(L_D, {penalty name: value}) of the loss `name`; eps is the GP interpolation draw;
    `regularise`: whether a lazy regulariser (R1's `every`) is due at this step."""
    if name == "wgan-gp":
        return wgan_gp_d(D, real, fake, eps, **params)
    if name == "wgan-div":
        return wgan_div_d(D, real, fake, **params)
    if name == "r1":
        return r1_d(D, real, fake, regularise=regularise, **params)
    if name == "bce":
        return bce_d(D, real, fake, **params)
    return {"lsgan": lsgan_d, "wgan": wgan_d}[name](D, real, fake)


def generator_loss(name, D, fake):
    return {"bce": bce_g, "r1": bce_g, "lsgan": lsgan_g}.get(name, wgan_g)(D, fake)
