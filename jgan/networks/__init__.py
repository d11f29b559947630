"""Network registry: the (generator, discriminator) pair of every architecture, from its config."""
from jgan.config import check_arch


def build_networks(arch, model):
    """(generator, discriminator) for `arch` from the `model` section of a configuration."""
    check_arch(arch)
    if arch == "stylegan":
        from jgan.networks import stylegan
        return stylegan.build_networks(**model)
    from jgan.networks import dcgan
    return dcgan.build_networks(arch, **model)


def latent_dim(arch, model):
    """Length of the latent vector z the generator takes."""
    return model["code_dim"] if arch == "stylegan" else model["nz"]
