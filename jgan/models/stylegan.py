"""StyleGAN v1 training (Karras et al. 2019, as rosinality trains it): PGGAN's progressive growing
(jgan.models.pggan) with style mixing and the running average latent (the centre of truncation)."""
import jittor as jt

from jgan.models.pggan import PGGANModel
from jgan.mpi import mean_over_ranks
from jgan.networks import stylegan
from jgan.scalar import scalar_var

NO_MIXING = 10 ** 6  # a crossover beyond every layer: the first latent styles them all
W_AVG_DECAY = 0.995  # running average of the mapping output, the centre of truncation


class StyleGANModel(PGGANModel):
    """StyledGenerator against the progressive Discriminator (jgan.networks.stylegan)."""

    def __init__(self, config):
        super().__init__(config)
        self.mixing = config["progressive"]["mixing"]

    @classmethod
    def build_networks(cls, model_config):
        return stylegan.build_networks(**model_config)

    def latents(self, batch, context):
        """z, or with probability `mixing` two z's and a crossover level drawn in [1, level]."""
        if not self.mixing:
            return super().latents(batch, context)
        rng, level = context.rng, context.phase.level
        crossover = rng.randint(1, max(1, level) + 1) if rng.rand() < self.mixing else NO_MIXING
        z = [jt.randn(batch, self.latent_size), jt.randn(batch, self.latent_size)]
        return (z,), {"crossover": scalar_var(crossover)}

    def after_generator_step(self, context, batch):
        """Update the running average w (the truncation centre), averaged over the MPI ranks, with
        the w of the generator step's first latents (as NVIDIA's mapping network tracks it), so
        that no extra pass through the mapping network is made."""
        with jt.no_grad():
            self.generator.update_w_avg(self.generator.training_w, W_AVG_DECAY)
            if context.world > 1:
                self.generator.w_avg.update(mean_over_ranks(self.generator.w_avg).stop_grad())
