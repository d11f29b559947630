"""The architectures jgan trains: each name mapped to its model class, preset and capabilities.

This is the one place that knows architectures by name. The training loop, the configuration,
the CLIs, figures and benchmarks ask an `Arch` what they need (is it progressive? how long is
its latent? does it take styles?) instead of comparing names. Adding a family is one model file,
one preset and one `register` line. Importing this module imports no Jittor: the model class is
imported on first use.
"""
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from jgan import schema
from jgan.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass(frozen=True)
class Arch:
    """One architecture name and what is needed to train, load and describe it."""
    name: str
    model: str                     # "module:Class" of its jgan.models.GANModel, or the class itself
    preset: str                    # a preset name in configs/, or the path of a YAML file
    cpu_preset: str = None         # the preset used without CUDA (default: `preset`)
    progressive: bool = False      # grows its resolution (`progressive` section, Phase.level)
    latent_key: str = None         # key of the `model` section holding the latent length
    styled: bool = False           # takes style mixing, per-layer noise and truncation
    translates: bool = False       # translates images between two domains instead of drawing latents
    tiny: dict = field(default_factory=dict)   # overrides for a smallest model (tests, benchmarks)
    config: type = None            # its jgan.schema class (None: the preset's `model` keys and types)

    def model_class(self):
        """The GANModel subclass of this architecture."""
        if not isinstance(self.model, str):
            return self.model
        module, _, name = self.model.partition(":")
        return getattr(importlib.import_module(module), name)

    def preset_path(self, has_cuda=False):
        """The YAML file this architecture trains with by default on this device."""
        name = self.preset if has_cuda or self.cpu_preset is None else self.cpu_preset
        path = Path(name)
        return path if path.suffix in (".yaml", ".yml") else CONFIG_DIR / f"{name}.yaml"

    def latent_size(self, model_config):
        """Length of the latent vector z the generator takes (0 for a family without one)."""
        return int(model_config[self.latent_key]) if self.latent_key else 0


_ARCHS = {}


def register(arch):
    """Make `arch` known to every tool by its name (a name registered again is replaced)."""
    _ARCHS[arch.name] = arch
    return arch


def unregister(name):
    _ARCHS.pop(name, None)


def names(**capabilities):
    """The registered names, in registration order; e.g. names(styled=True) for StyleGAN-like ones."""
    return tuple(name for name, arch in _ARCHS.items()
                 if all(getattr(arch, key) == value for key, value in capabilities.items()))


def get(name):
    """The Arch called `name`; a ConfigError naming the choices for an unknown one."""
    if name not in _ARCHS:
        raise ConfigError(f"unknown architecture {name!r}; choose one of {', '.join(_ARCHS)}")
    return _ARCHS[name]


_DCGAN_TINY = {"model": {"nz": 16, "ngf": 8, "ndf": 8}}
for _name in ("dcgan", "wgan", "wgan-gp", "wganp", "lsgan", "wgan-div"):
    register(Arch(_name, "jgan.models.dcgan:DCGANModel", preset=_name, latent_key="nz", tiny=_DCGAN_TINY,
                  config=schema.DCGANConfig))
register(Arch("stylegan", "jgan.models.stylegan:StyleGANModel", preset="stylegan",
              cpu_preset="stylegan-cpu", progressive=True, latent_key="code_dim", styled=True,
              config=schema.StyleGANConfig,
              tiny={"model": {"code_dim": 16, "n_mlp": 2, "channels": [16, 16, 16, 8, 8]}}))
register(Arch("pggan", "jgan.models.pggan:PGGANModel", preset="pggan", cpu_preset="pggan-cpu",
              progressive=True, latent_key="code_dim", config=schema.PGGANConfig,
              tiny={"model": {"code_dim": 16, "channels": [16, 16, 16, 8, 8]}}))
register(Arch("cyclegan", "jgan.models.cyclegan:CycleGANModel", preset="cyclegan", translates=True,
              config=schema.CycleGANConfig, tiny={"model": {"ngf": 8, "ndf": 8, "blocks": 1}}))
TABLE_ARCHS = ("dcgan", "wgan-gp", "wganp", "lsgan", "stylegan", "pggan")   # rows of the README's speed and quality tables
