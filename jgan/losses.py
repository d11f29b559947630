"""GAN objectives: one class per loss, each owning its regulariser.

A loss scores images through a `Critic`: `critic(images)` scores one batch, `critic.pair(real, fake)`
scores a real and a fake batch, in one pass where the discriminator can. `fake` is already detached
for the discriminator loss. Every loss and logged term is a jt.Var (no host synchronisation).
"""
import inspect

import jittor as jt

from jgan.errors import ConfigError


def softplus(x):
    """softplus(x) = log(1 + e^x), computed as max(x, 0) + log(1 + e^-|x|) to avoid overflow."""
    return x.maximum(0.0) + jt.log(1.0 + jt.exp(-jt.abs(x)))


class Critic:
    """The discriminator as a loss sees it: scores (B,) of one batch, or of two batches."""

    def __init__(self, score, score_pair=None):
        self.score = score
        self.score_pair = score_pair

    @classmethod
    def of(cls, discriminator, **inputs):
        """A jgan discriminator called with `inputs`; it scores two batches in one call (in one pass
        when that is faster, see jgan.batching)."""
        return cls(lambda images: discriminator(images, **inputs),
                   lambda real, fake: discriminator(real, fake, **inputs))

    def __call__(self, images):
        return self.score(images)

    def pair(self, real, fake):
        """(scores of real, scores of fake)."""
        if self.score_pair is None:
            return self.score(real), self.score(fake)
        return self.score_pair(real, fake)


def sign(x):
    """-1, 0 or 1 per element, as x is negative, zero or positive."""
    return (x > 0).cast(x.dtype) - (x < 0).cast(x.dtype)


def input_gradient(critic, images):
    """(D(x), d sum_b D(x_b) / dx) with x a fresh leaf, so the gradient is never silently zero."""
    x = images.detach()
    x.start_grad()
    scores = critic(x)
    return scores, jt.grad(scores.sum(), x, retain_graph=True)


def squared_norm(gradient):
    """||g||^2 per sample, summed over all of C x H x W: shape (B,)."""
    return (gradient * gradient).reshape(gradient.shape[0], -1).sum(1)


class Loss:
    """A GAN objective split into the discriminator's and the generator's minimisation."""

    penalises_input_gradient = False   # a per-sample penalty on grad_x D(x): no batch norm in D
    regularise_every = 1               # lazy regularisation: the regulariser every k steps, weighted k

    def discriminator_loss(self, critic, real, fake, regularise=True):
        """(L_D, logged terms); `regularise`: whether this step adds the loss's regulariser."""
        raise NotImplementedError

    def generator_loss(self, critic, fake):
        raise NotImplementedError

    def after_discriminator_step(self, discriminator):
        """Hook run after every optimiser step of D (no-op by default)."""


class NonSaturatingLoss(Loss):
    """DCGAN: L_D = softplus(-D(x)) + softplus(D(G(z))), L_G = softplus(-D(G(z))) (logits).

    real_label < 1 is one-sided label smoothing (Salimans et al. 2016): real images are scored
    against the target real_label instead of 1, so that D stops pushing their logits up once
    they reach log(t / (1 - t)); fakes keep the target 0."""

    def __init__(self, real_label=1.0):
        if not 0.5 < real_label <= 1:
            raise ConfigError(f"loss.real_label must be in (0.5, 1], got {real_label}")
        self.real_label = float(real_label)

    def real_loss(self, d_real):
        """Binary cross-entropy of the real logits against the target real_label."""
        loss = softplus(-d_real).mean()
        if self.real_label < 1:
            loss = self.real_label * loss + (1 - self.real_label) * softplus(d_real).mean()
        return loss

    @staticmethod
    def logged_terms(d_real, d_fake):
        """Mean logits, and r = E[sign D(x)] over the real images (what adaptive augmentation tunes by)."""
        return {"d_real": d_real.mean(), "d_fake": d_fake.mean(), "d_real_sign": sign(d_real).mean()}

    def discriminator_loss(self, critic, real, fake, regularise=True):
        d_real, d_fake = critic.pair(real, fake)
        loss = self.real_loss(d_real) + softplus(d_fake).mean()
        return loss, self.logged_terms(d_real, d_fake)

    def generator_loss(self, critic, fake):
        d_fake = critic(fake)
        return softplus(-d_fake).mean(), {"d_fake": d_fake.mean()}


class WassersteinLoss(Loss):
    """Wasserstein critic: L_D = E[D(G(z))] - E[D(x)], L_G = -E[D(G(z))] (no Lipschitz constraint)."""

    def discriminator_loss(self, critic, real, fake, regularise=True):
        d_real, d_fake = (d.mean() for d in critic.pair(real, fake))
        return d_fake - d_real, {"d_real": d_real, "d_fake": d_fake}

    def generator_loss(self, critic, fake):
        d_fake = critic(fake).mean()
        return -d_fake, {"d_fake": d_fake}


class WeightClippedWassersteinLoss(WassersteinLoss):
    """WGAN (Arjovsky et al. 2017): the Wasserstein loss with D's weights clipped to [-clip, clip]."""

    def __init__(self, clip=0.01):
        self.clip = clip

    def after_discriminator_step(self, discriminator):
        """w <- clamp(w, -clip, clip) for every trainable parameter (BatchNorm running stats untouched)."""
        for parameter in discriminator.parameters():
            if not parameter.is_stop_grad():
                parameter.update(parameter.clamp(-self.clip, self.clip))


class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP: L_D = E[D(G(z))] - E[D(x)] + gp_weight E[(||grad D(x_hat)||_2 - 1)^2] + drift E[D(x)^2]."""

    penalises_input_gradient = True

    def __init__(self, gp_weight=10.0, drift=0.0):
        self.gp_weight = gp_weight
        self.drift = drift

    def draw_epsilon(self, batch):
        """eps ~ U(0, 1), one per sample, shape (B, 1, 1, 1); override to fix the draw."""
        return jt.rand((batch, 1, 1, 1))

    def gradient_penalty(self, critic, real, fake):
        """E[(||grad D(x_hat)||_2 - 1)^2], x_hat = eps x + (1 - eps) G(z), norm per sample over C x H x W."""
        eps = self.draw_epsilon(real.shape[0])
        _, gradient = input_gradient(critic, eps * real + (1 - eps) * fake)
        return ((jt.sqrt(squared_norm(gradient)) - 1) ** 2).mean()

    def discriminator_loss(self, critic, real, fake, regularise=True):
        d_real, d_fake = critic.pair(real, fake)
        drift = (d_real * d_real).mean()
        if not regularise:
            loss = d_fake.mean() - d_real.mean() + self.drift * drift
            return loss, {"d_real": d_real.mean(), "d_fake": d_fake.mean(), "drift": drift}
        gp = self.gradient_penalty(critic, real, fake)
        loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp + self.drift * drift
        return loss, {"d_real": d_real.mean(), "d_fake": d_fake.mean(), "gp": gp, "drift": drift}


class LeastSquaresLoss(Loss):
    """LSGAN (a=0, b=c=1): L_D = 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2], L_G = 1/2 E[(D(G(z)) - 1)^2]."""

    def discriminator_loss(self, critic, real, fake, regularise=True):
        d_real, d_fake = critic.pair(real, fake)
        loss = 0.5 * ((d_real - 1) ** 2).mean() + 0.5 * (d_fake ** 2).mean()
        return loss, {"d_real": d_real.mean(), "d_fake": d_fake.mean()}

    def generator_loss(self, critic, fake):
        d_fake = critic(fake)
        return 0.5 * ((d_fake - 1) ** 2).mean(), {"d_fake": d_fake.mean()}


class WassersteinDivLoss(WassersteinLoss):
    """WGAN-div (Wu et al. 2018): L_D = E[D(G(z))] - E[D(x)] + k E_{x_hat ~ (P_r + P_g)/2}[||grad D(x_hat)||^p].

    The penalty is evaluated at the real AND the fake samples (the reference implementation's
    choice of x_hat): div = k/2 (E[||grad D(x)||^p] + E[||grad D(G(z))||^p]), with
    ||g||^p = (sum over C x H x W of g^2)^(p/2). The gradient is taken w.r.t. the real images
    themselves (a fresh leaf), so it flows even when the caller's batch is stop_grad.
    """

    penalises_input_gradient = True

    def __init__(self, k=2.0, p=6.0):
        self.k = k
        self.p = p

    def divergence_penalty(self, real_gradient, fake_gradient):
        """k/2 (E[||g_real||^p] + E[||g_fake||^p])."""
        half_p = self.p / 2
        real_term = (squared_norm(real_gradient) ** half_p).mean()
        fake_term = (squared_norm(fake_gradient) ** half_p).mean()
        return self.k / 2 * (real_term + fake_term)

    def discriminator_loss(self, critic, real, fake, regularise=True):
        if not regularise:
            return super().discriminator_loss(critic, real, fake)
        d_real, real_gradient = input_gradient(critic, real)
        d_fake, fake_gradient = input_gradient(critic, fake)
        div = self.divergence_penalty(real_gradient, fake_gradient)
        loss = d_fake.mean() - d_real.mean() + div
        return loss, {"d_real": d_real.mean(), "d_fake": d_fake.mean(), "div": div}


class R1Loss(NonSaturatingLoss):
    """Non-saturating logistic + R1 (Mescheder 2018): L_D += gamma/2 E[||grad D(x)||^2] on real x.

    every = k > 1 is StyleGAN2's lazy R1: the penalty on every k-th step only, weighted k, which
    saves its second-order backward pass on the other steps."""

    penalises_input_gradient = True

    def __init__(self, gamma=10.0, every=1):
        if int(every) != every or every < 1:
            raise ConfigError(f"loss.every must be a whole number of steps of at least 1, got {every}")
        super().__init__()
        self.gamma, self.regularise_every = gamma, int(every)

    def discriminator_loss(self, critic, real, fake, regularise=True):
        if not regularise:
            return super().discriminator_loss(critic, real, fake)
        d_real, real_gradient = input_gradient(critic, real)
        d_fake = critic(fake)
        r1 = squared_norm(real_gradient).mean()
        loss = self.real_loss(d_real) + softplus(d_fake).mean() + self.regularise_every * self.gamma / 2 * r1
        return loss, {**self.logged_terms(d_real, d_fake), "r1": r1}


LOSSES = {"bce": NonSaturatingLoss, "wgan": WeightClippedWassersteinLoss, "wgan-gp": WassersteinGPLoss,
          "lsgan": LeastSquaresLoss, "wgan-div": WassersteinDivLoss, "r1": R1Loss}


def build_loss(name, **params):
    """The loss called `name` with its parameters (e.g. build_loss("wgan-gp", gp_weight=10))."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    accepted = set(inspect.signature(LOSSES[name].__init__).parameters) - {"self", "args", "kwargs"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"loss {name!r} does not take {', '.join(unknown)}; "
                          f"it takes {', '.join(sorted(accepted)) or 'no parameters'}")
    return LOSSES[name](**params)
