"""GAN families behind one interface (jgan.models.base.GANModel); jgan.registry maps names to them."""
import copy

from jgan import registry
from jgan.config import preset_of


def build_networks(arch, model_config=None):
    """(generator, discriminator) of `arch`, its preset's `model` section overlaid by `model_config`."""
    model = copy.deepcopy(preset_of(arch)["model"])
    model.update(model_config or {})
    return registry.get(arch).model_class().build_networks(model)
