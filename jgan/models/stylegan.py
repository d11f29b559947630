"""StyleGAN v1 training (Karras et al. 2019, as rosinality trains it): progressive growing with a
fade-in, style mixing, the running average latent (the centre of truncation), and the weights a
resolution never reaches taken out of the optimisers."""
import jittor as jt
import numpy as np

from jgan.models.latent import LatentGAN
from jgan.mpi import mean_over_ranks
from jgan.networks import stylegan

NO_MIXING = 10 ** 6  # a crossover beyond every layer: the first latent styles them all
W_AVG_DECAY = 0.995  # running average of the mapping output, the centre of truncation


class StyleGANModel(LatentGAN):
    """StyledGenerator against the progressive Discriminator (jgan.networks.stylegan)."""

    def __init__(self, config):
        super().__init__(config)
        self.mixing = config["progressive"]["mixing"]
        self.frozen, self.frozen_level = [], None

    @classmethod
    def build_networks(cls, model_config):
        return stylegan.build_networks(**model_config)

    def network_inputs(self, phase):
        """The resolution level and the fade-in alpha; alpha enters as a Var so that a phase
        compiles its kernels once while alpha ramps up."""
        return {"level": phase.level, "alpha": jt.array(np.float32(phase.alpha))}

    def latents(self, batch, context):
        """z, or with probability `mixing` two z's and a crossover level drawn in [1, level]."""
        if not self.mixing:
            return super().latents(batch, context)
        rng, level = context.rng, context.phase.level
        crossover = rng.randint(1, max(1, level) + 1) if rng.rand() < self.mixing else NO_MIXING
        z = [jt.randn(batch, self.latent_size), jt.randn(batch, self.latent_size)]
        return (z,), {"crossover": jt.array(np.float32(crossover))}

    def before_step(self, context, inputs):
        self.freeze_idle_weights(inputs)

    def freeze_idle_weights(self, inputs):
        """Take the weights a level never reaches out of both optimisers, as PyTorch skips
        parameters without a gradient: no zero gradients are made for them, no update is applied
        and their Adam moments are kept for when they are reached. The EMA still averages them,
        as rosinality's accumulate does."""
        if inputs["level"] == self.frozen_level:
            return
        for var in self.frozen:
            var.start_grad()
        self.frozen = [var for network in (self.generator, self.discriminator)
                       for module in network.idle_modules(**inputs)
                       for var in module.parameters() if not var.is_stop_grad()]
        for var in self.frozen:
            var.stop_grad()
        self.frozen_level = inputs["level"]

    def after_generator_step(self, context, batch):
        """Update the running average w (the truncation centre), averaged over the MPI ranks."""
        with jt.no_grad():
            self.generator.update_w_avg(self.generator.style(jt.randn(batch, self.latent_size)), W_AVG_DECAY)
            if context.world > 1:
                self.generator.w_avg.update(mean_over_ranks(self.generator.w_avg).stop_grad())
