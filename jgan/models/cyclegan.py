"""CycleGAN (Zhu et al. 2017), trained as junyanz/pytorch-CycleGAN-and-pix2pix trains it.

Two generators translate between unpaired image domains A and B (G_ab: A -> B, G_ba: B -> A);
the discriminator of each domain tells its real images from translations into it. The generators
minimise least-squares GAN terms, the cycle-consistency L1 |G_ba(G_ab(a)) - a| + |G_ab(G_ba(b)) - b|
(weight lambda) and the identity L1 |G_ab(b) - b| + |G_ba(a) - a| (weight identity x lambda); each
discriminator minimises half its least-squares loss on real images and on fakes drawn from a pool of
earlier translations. The learning rate stays constant, then decays linearly to 0.
"""
import jittor as jt
import numpy as np

from jgan.batching import apply_per_sample
from jgan.models.base import GANModel, evaluation_mode
from jgan.networks import cyclegan
from jgan.optim import build_optimizer

SAMPLE_ROWS = 6   # the sample grid is 6 x 6: per row, a -> G_ab(a) -> G_ba(G_ab(a)), b -> ... -> b


def least_squares(scores, target):
    """E[(D(x) - target)^2] over every patch score (LSGAN, Mao et al. 2017)."""
    return ((scores - target) ** 2).mean()


def mean_absolute_error(x, y):
    return (x - y).abs().mean()


def decay_factor(step, iters, decay_start):
    """The learning-rate factor of training step `step` (0-based): 1 for the first `decay_start`
    x `iters` steps, then down by equal amounts, reaching 1 / (steps decayed + 1) at the last step
    (junyanz's `linear` policy, counted in steps instead of epochs)."""
    start = int(iters * decay_start)
    return 1.0 - max(0, step + 1 - start) / (iters - start + 1)


class ImagePool:
    """A history of translated images shown to a discriminator (Shrivastava et al. 2017).

    While it fills, every new image is stored and passed on; once full, each new image is, with
    probability 1/2, passed on as it is, otherwise stored in place of a random stored image, which
    is passed on instead. The draws come from the step's seeded generator, so a resumed run makes
    the same choices; under MPI each rank keeps its own pool of the fakes it made."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.images = []          # (1, C, H, W) Vars

    def query(self, fakes, rng):
        """The batch to show the discriminator for the (detached) batch `fakes`."""
        if self.capacity == 0:
            return fakes.detach()
        shown = []
        for index in range(fakes.shape[0]):
            image = fakes[index:index + 1].detach()
            if len(self.images) < self.capacity:
                self.images.append(image)
                shown.append(image)
            elif rng.rand() > 0.5:
                slot = rng.randint(self.capacity)
                shown.append(self.images[slot])
                self.images[slot] = image
            else:
                shown.append(image)
        return jt.concat(shown, 0)

    def state(self):
        return stacked(self.images)

    def load_state(self, images):
        self.images = unstacked(images)


class CycleGANModel(GANModel):
    """Generators G_ab, G_ba (ResnetGenerator) and discriminators D_a, D_b (PatchDiscriminator),
    one Adam for both generators and one for both discriminators."""

    streams = ("a", "b")
    sampling_modules = ("generator_ab",)
    directions = {"a2b": ("generator_ab", "generator_ba"), "b2a": ("generator_ba", "generator_ab")}  # (there, back)

    def __init__(self, config):
        super().__init__(config)
        model, loss, optim = config["model"], config["loss"], config["optim"]
        self.generator_ab, self.discriminator_b = self.build_networks(model)
        self.generator_ba, self.discriminator_a = self.build_networks(model)
        self.cycle_weight, self.identity_weight = loss["cycle"], loss["identity"] * loss["cycle"]
        self.optimizer_g = build_optimizer(self.generator_ab.parameters() + self.generator_ba.parameters(),
                                           optim, optim["lr_g"])
        self.optimizer_d = build_optimizer(self.discriminator_a.parameters() + self.discriminator_b.parameters(),
                                           optim, optim["lr_d"])
        self.learning_rates = {self.optimizer_g: optim["lr_g"], self.optimizer_d: optim["lr_d"]}
        self.iters, self.decay_start = config["train"]["iters"], optim["decay_start"]
        self.pool_a, self.pool_b = ImagePool(config["train"]["pool"]), ImagePool(config["train"]["pool"])
        self.sample_count = config["train"]["n_sample"]
        self.sample_a, self.sample_b = [], []

    @classmethod
    def build_networks(cls, model_config):
        """(generator, discriminator) of one direction."""
        return cyclegan.build_networks(**model_config)

    @classmethod
    def build_generator(cls, model_config):
        return cls.build_networks(model_config)[0]

    def modules(self):
        return {"generator_ab": self.generator_ab, "generator_ba": self.generator_ba,
                "discriminator_a": self.discriminator_a, "discriminator_b": self.discriminator_b}

    def optimizers(self):
        return {"generator": self.optimizer_g, "discriminator": self.optimizer_d}

    def state(self):
        return {"pool_a": self.pool_a.state(), "pool_b": self.pool_b.state(),
                "sample_a": stacked(self.sample_a), "sample_b": stacked(self.sample_b)}

    def load_state(self, state):
        self.pool_a.load_state(state["pool_a"])
        self.pool_b.load_state(state["pool_b"])
        self.sample_a, self.sample_b = unstacked(state["sample_a"]), unstacked(state["sample_b"])

    # ----- one training step -----------------------------------------------------------------
    def decay_learning_rate(self, step):
        factor = decay_factor(step, self.iters, self.decay_start)
        for optimizer, lr in self.learning_rates.items():
            optimizer.lr = lr * factor

    def translations(self, real_a, real_b):
        """{name: image batch}: the translations fake_b = G_ab(a) and fake_a = G_ba(b), the round
        trips cycle_a = G_ba(G_ab(a)) and cycle_b = G_ab(G_ba(b)), and with the identity term on,
        identity_b = G_ab(b) and identity_a = G_ba(a).

        A generator's batches that are ready at the same time share a pass where that is faster
        (jgan.batching): instance norm treats each image on its own, so the outputs are those of
        separate calls. G_ba's pass waits for G_ab's to take its round trip too."""
        identity = bool(self.identity_weight)
        ab = {"fake_b": real_a, **({"identity_b": real_b} if identity else {})}
        out = dict(zip(ab, apply_per_sample(self.generator_ab, list(ab.values()))))
        ba = {"fake_a": real_b, **({"identity_a": real_a} if identity else {}), "cycle_a": out["fake_b"]}
        out.update(zip(ba, apply_per_sample(self.generator_ba, list(ba.values()))))
        out["cycle_b"] = self.generator_ab(out["fake_a"])
        return out

    def generator_loss(self, real_a, real_b, images):
        """(L_G, logged terms): LSGAN terms of both translations, cycle and identity L1."""
        adversarial = least_squares(self.discriminator_b(images["fake_b"]), 1.0) + \
            least_squares(self.discriminator_a(images["fake_a"]), 1.0)
        cycle = mean_absolute_error(images["cycle_a"], real_a) + mean_absolute_error(images["cycle_b"], real_b)
        loss = adversarial + self.cycle_weight * cycle
        terms = {"g_adversarial": adversarial, "cycle": cycle}
        if self.identity_weight:
            identity = mean_absolute_error(images["identity_b"], real_b) + \
                mean_absolute_error(images["identity_a"], real_a)
            loss = loss + self.identity_weight * identity
            terms["identity"] = identity
        return loss, terms

    def discriminator_loss(self, real_a, real_b, shown_a, shown_b):
        """(L_D, logged terms): half of each discriminator's least-squares loss, summed."""
        real_scores_b, fake_scores_b = self.discriminator_b(real_b, shown_b)
        real_scores_a, fake_scores_a = self.discriminator_a(real_a, shown_a)
        loss_b = 0.5 * (least_squares(real_scores_b, 1.0) + least_squares(fake_scores_b, 0.0))
        loss_a = 0.5 * (least_squares(real_scores_a, 1.0) + least_squares(fake_scores_a, 0.0))
        return loss_a + loss_b, {"d_a": loss_a, "d_b": loss_b}

    def train_step(self, batches, context):
        self.decay_learning_rate(context.step)
        real_a, real_b = next(batches["a"]), next(batches["b"])
        self.remember_samples(real_a, real_b)
        images = self.translations(real_a, real_b)
        fake_a, fake_b = images["fake_a"], images["fake_b"]
        g_loss, g_terms = self.generator_loss(real_a, real_b, images)
        context.update(self.optimizer_g, g_loss, "generator")
        shown_b = self.pool_b.query(fake_b, context.rng)
        shown_a = self.pool_a.query(fake_a, context.rng)
        d_loss, d_terms = self.discriminator_loss(real_a, real_b, shown_a, shown_b)
        context.update(self.optimizer_d, d_loss, "discriminator")
        return {"g_loss": g_loss, "d_loss": d_loss, **g_terms, **d_terms}

    # ----- sampling --------------------------------------------------------------------------
    def remember_samples(self, real_a, real_b):
        """Keep the first training images of each domain as the fixed images of the sample grids."""
        for images, kept in ((real_a, self.sample_a), (real_b, self.sample_b)):
            for index in range(min(images.shape[0], self.sample_count - len(kept))):
                kept.append(images[index:index + 1].detach())

    def sample_inputs(self, n, rng):
        """Which of the remembered training images the grid shows (the first n of each domain)."""
        return np.arange(n)

    def samples(self, inputs, phase):
        """Rows a, G_ab(a), G_ba(G_ab(a)), b, G_ba(b), G_ab(G_ba(b)), white rows until there are 6."""
        rows = min(len(inputs), len(self.sample_a), len(self.sample_b))
        images = np.ones((SAMPLE_ROWS, 6) + self.image_shape(), np.float32)
        if rows:
            a, b = (jt.concat(kept[:rows], 0) for kept in (self.sample_a, self.sample_b))
            for column, image in enumerate(self.round_trips(a, b)):
                images[:rows, column] = image.numpy()
        return images.reshape((-1,) + images.shape[2:])

    def image_shape(self):
        size = self.config["model"]["size"]
        return (3, size, size)

    def round_trips(self, a, b):
        """a, G_ab(a), G_ba(G_ab(a)), b, G_ba(b), G_ab(G_ba(b)) in evaluation mode."""
        with evaluation_mode(self.generator_ab), evaluation_mode(self.generator_ba), jt.no_grad():
            a_to_b, b_to_a = self.generator_ab(a), self.generator_ba(b)
            return a, a_to_b, self.generator_ba(a_to_b), b, b_to_a, self.generator_ab(b_to_a)


def stacked(images):
    """(N, C, H, W) numpy array of a list of (1, C, H, W) Vars (empty: shape (0,))."""
    return np.concatenate([image.numpy() for image in images]) if images else np.zeros(0)


def unstacked(images):
    """The list of (1, C, H, W) Vars of a `stacked` array."""
    return [jt.array(images[k:k + 1]) for k in range(len(images))]
