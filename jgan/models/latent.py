"""A generator of latent vectors against one discriminator: what the DCGAN family, StyleGAN and
PGGAN share. A training step is n_critic discriminator updates, then one generator update, then
the EMA of the generator's weights."""
import jittor as jt

from jgan import registry
from jgan.augment import AdaptiveProbability, Augment, probability_var
from jgan.checkpoint import load_module_state
from jgan.ema import WeightAverage, copy_weights, ramped_decay, trainable_names
from jgan.losses import Critic, build_loss
from jgan.models.base import GANModel
from jgan.mpi import mean_over_ranks
from jgan.optim import build_optimizer


class LatentGAN(GANModel):
    """G(z) against D(x) with any jgan loss; subclasses build the networks (`build_networks`) and
    may add per-family inputs (`network_inputs`, `latents`) and steps (`before_step`,
    `after_generator_step`)."""

    sampling_modules = ("generator_ema", "generator")
    state_fallbacks = {"generator_ema": "generator"}   # a run resumed with EMA newly switched on

    def __init__(self, config):
        super().__init__(config)
        self.latent_size = registry.get(config["arch"]).latent_size(config["model"])
        self.generator, self.discriminator = self.build_networks(config["model"])
        self.generator_weights = trainable_names(self.generator)
        self.ema_decay, self.ema_rampup = config["train"]["ema"], config["train"]["ema_rampup"]
        self.generator_ema = None
        if self.ema_decay > 0:
            self.generator_ema = self.build_generator(config["model"])
            copy_weights(self.generator, self.generator_ema)
            self.generator_ema.eval()
            self.weight_average = WeightAverage(self.generator_ema, self.generator, self.generator_weights)
        self.loss = build_loss(**config["loss"])
        optim = config["optim"]
        self.optimizer_g = build_optimizer(self.generator.parameters(), optim, optim["lr_g"])
        self.optimizer_d = build_optimizer(self.discriminator.parameters(), optim, optim["lr_d"])
        self.learning_rates = {self.optimizer_g: optim["lr_g"], self.optimizer_d: optim["lr_d"]}
        self.n_critic = config["train"]["n_critic"]
        self.augment, self.augment_tuning = self.build_augmentation(config["train"])

    @staticmethod
    def build_augmentation(train):
        """(Augment, AdaptiveProbability or None) of a `train` section: DiffAugment when augment_p is 1
        and not tuned, else each transform applied with a probability, tuned or fixed."""
        if train["augment_target"]:
            tuning = AdaptiveProbability(train["augment_p"], train["augment_target"], train["augment_span"])
            return Augment(train["augment"], tuning.value), tuning
        if train["augment_p"] < 1:
            return Augment(train["augment"], probability_var(train["augment_p"])), None
        return Augment(train["augment"]), None

    def state(self):
        """The tuned augmentation probability, where one is tuned."""
        return {"augment_p": self.augment_tuning.state()} if self.augment_tuning else {}

    def load_state(self, state):
        """A run resumed from a checkpoint without a tuned probability starts at train.augment_p."""
        if self.augment_tuning and "augment_p" in state:
            self.augment_tuning.load_state(state["augment_p"])

    @classmethod
    def build_networks(cls, model_config):
        """(generator, discriminator) of a `model` section."""
        raise NotImplementedError

    @classmethod
    def build_generator(cls, model_config):
        return cls.build_networks(model_config)[0]

    def modules(self):
        modules = {"generator": self.generator, "discriminator": self.discriminator}
        if self.generator_ema is not None:
            modules["generator_ema"] = self.generator_ema
        return modules

    def load_generator_state(self, state):
        """The generator takes `state` and the EMA generator becomes a copy of it."""
        load_module_state(self.generator, state, "generator")
        if self.generator_ema is not None:
            copy_weights(self.generator, self.generator_ema)

    def optimizers(self):
        return {"generator": self.optimizer_g, "discriminator": self.optimizer_d}

    def train(self, mode=True):
        """Training mode for G and D; the EMA generator always samples in evaluation mode."""
        for module in (self.generator, self.discriminator):
            module.train() if mode else module.eval()

    def sampling_generator(self):
        return self.generator_ema or self.generator

    def sample_inputs(self, n, rng):
        return rng.randn(n, self.latent_size).astype("float32")

    # ----- one training step -----------------------------------------------------------------
    def latents(self, batch, context):
        """Generator arguments and keyword arguments for one batch of fakes."""
        return (jt.randn(batch, self.latent_size),), {}

    def generate(self, generator, batch, context, inputs):
        args, kwargs = self.latents(batch, context)
        return generator(*args, **inputs, **kwargs)

    def before_step(self, context, inputs):
        """Hook run before a step's first update."""

    def after_generator_step(self, context, batch):
        """Hook run after the generator's update, before the EMA."""

    def critic(self, inputs):
        """The discriminator as the loss sees it; with an augmentation policy (DiffAugment) it
        scores augmented real and fake images alike, and gradients flow through the augmentation."""
        if not self.augment.policy:
            return Critic.of(self.discriminator, **inputs)
        discriminator, augment = self.discriminator, self.augment
        return Critic(lambda images: discriminator(augment(images), **inputs),
                      lambda real, fake: discriminator(augment(real), augment(fake), **inputs))

    def train_step(self, batches, context):
        inputs = self.network_inputs(context.phase)
        self.before_step(context, inputs)
        critic = self.critic(inputs)
        regularise = context.step % self.loss.regularise_every == 0
        terms = {}
        for _ in range(self.n_critic):
            real = next(batches["images"])
            fake = self.generate(self.generator, real.shape[0], context, inputs).detach()
            d_loss, d_terms = self.loss.discriminator_loss(critic, real, fake, regularise=regularise)
            context.update(self.optimizer_d, d_loss, "discriminator")
            self.loss.after_discriminator_step(self.discriminator)
            terms.update({"d_loss": d_loss, **d_terms})
            if self.augment_tuning:
                self.augment_tuning.adjust(mean_over_ranks(d_terms["d_real_sign"]), context.phase.batch)
                terms["augment_p"] = self.augment_tuning.value.sum()
        batch = context.phase.batch // context.world
        g_loss, g_terms = self.loss.generator_loss(critic, self.generate(self.generator, batch, context, inputs))
        context.update(self.optimizer_g, g_loss, "generator")
        self.after_generator_step(context, batch)
        if self.generator_ema is not None:
            decay = ramped_decay(self.ema_decay, self.n_critic * context.phase.batch, context.images,
                                 self.ema_rampup)
            self.weight_average.update(decay)
        return {"g_loss": g_loss, **g_terms, **terms}
