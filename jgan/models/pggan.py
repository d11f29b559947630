"""PGGAN training (Karras et al. 2018, as rosinality's progressive-gan-pytorch trains it):
progressive growing with a fade-in, and the weights a resolution never reaches taken out of the
optimisers. StyleGAN (jgan.models.stylegan) trains the same way and adds its styles."""

from jgan.errors import ConfigError
from jgan.models.latent import LatentGAN
from jgan.mpi import world_size
from jgan.networks import pggan
from jgan.scalar import scalar_var
from jgan.schedule import build_schedule


class PGGANModel(LatentGAN):
    """A progressive generator against the progressive Discriminator of jgan.networks.stylegan."""

    def __init__(self, config):
        check_stddev_groups(config, world_size())
        super().__init__(config)
        self.frozen, self.frozen_level = [], None

    @classmethod
    def build_networks(cls, model_config):
        return pggan.build_networks(**model_config)

    def network_inputs(self, phase):
        """The resolution level and the fade-in alpha; alpha enters as a Var so that a phase
        compiles its kernels once while alpha ramps up."""
        return {"level": phase.level, "alpha": scalar_var(phase.alpha)}

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


def check_stddev_groups(config, world):
    """Minibatch stddev in groups of G needs every per-rank batch divisible by min(G, batch)."""
    group = config["model"].get("stddev_group")
    if not group:
        return
    schedule = build_schedule(config)
    for phase in schedule.phases():
        batch = phase.batch // world
        if batch % min(group, batch):
            raise ConfigError(f"model.stddev_group {group} does not divide the batch of {batch} images "
                              f"per rank at {phase.size} px; use a batch divisible by {group} or set "
                              f"model.stddev_group")
