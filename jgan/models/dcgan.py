"""The DCGAN family: DCGAN, WGAN, WGAN-GP, WGANP, LSGAN and WGAN-div differ only by their
configuration (upsampling, critic normalisation, loss, optimiser), not by code."""
from jgan.errors import ConfigError
from jgan.losses import LOSSES
from jgan.models.latent import LatentGAN
from jgan.networks import dcgan


class DCGANModel(LatentGAN):
    """A fixed-size DCGAN-style generator and discriminator (jgan.networks.dcgan)."""

    def __init__(self, config):
        check_critic_norm(config)
        super().__init__(config)

    @classmethod
    def build_networks(cls, model_config):
        return dcgan.build_networks(**model_config)


def check_critic_norm(config):
    """A per-sample gradient penalty is meaningless through batch norm, which mixes the samples
    (SELU nets have no norm)."""
    loss, norm = config["loss"]["name"], config["model"].get("critic_norm", "batch")
    if config["model"].get("activation") == "selu":
        return
    if norm == "batch" and LOSSES.get(loss) and LOSSES[loss].penalises_input_gradient:
        raise ConfigError(f"critic_norm batch cannot be used with the {loss} loss, whose penalty "
                          f"treats every sample apart; use model.critic_norm=instance or none")
