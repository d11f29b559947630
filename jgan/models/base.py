"""The interface every GAN family implements, and what the training loop hands it each step.

The loop (jgan.training) keeps what all families share: cadence, per-step seeding, the data
streams, MPI, the time limit, the NaN policy and exact resume. A model keeps the rest: its
networks and optimisers, its losses and regularisers, how one training step goes, and how it
samples. The loop never asks which family it trains.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import jittor as jt
import numpy as np

from jgan.schedule import Phase


@dataclass
class StepContext:
    """What the loop gives a model for one training step."""
    phase: Phase                       # resolution, fade-in alpha, global batch, learning rate
    step: int                          # training steps done before this one
    images: int                        # real images shown before this step
    rng: np.random.RandomState         # host-side random draws of this step, seeded by the loop
    world: int                         # MPI ranks; each holds batch // world images of a batch
    update: Callable                   # update(optimizer, loss, name): one step, NaN policy applied


@contextmanager
def evaluation_mode(module):
    """`module` in evaluation mode inside the block, then back in the mode it was in."""
    was_training = module.is_training()
    module.eval()
    try:
        yield module
    finally:
        if was_training:
            module.train()


class GANModel:
    """One GAN family: networks and optimisers built from a configuration, one training step,
    and samples. Subclasses implement the methods that raise NotImplementedError."""

    streams = ("images",)           # the data streams train_step draws from, one LMDB each
    sampling_modules = ("generator",)   # checkpoint entries to sample from, first present wins
    state_fallbacks = {}            # module name -> module whose state stands in when one is missing

    def __init__(self, config):
        self.config = config
        self.learning_rates = {}        # optimiser -> the learning rate its configuration gives it

    # ----- building --------------------------------------------------------------------------
    @classmethod
    def build_generator(cls, model_config):
        """The generator of a `model` section alone (generate.py, metrics, pretrained weights)."""
        raise NotImplementedError

    def modules(self):
        """The networks by name: what a checkpoint holds and restores."""
        raise NotImplementedError

    def optimizers(self):
        """The optimisers by name, each restored with its moments."""
        raise NotImplementedError

    def state(self):
        """What a checkpoint must hold beyond networks and optimisers to resume exactly (e.g. an
        image pool): {name: numpy array}, each of the same shape on every MPI rank."""
        return {}

    def load_state(self, state):
        """Restore what `state` returned."""

    def load_generator_state(self, state):
        """Start the generator (and whatever samples from it) from `state`, a generator's state
        dict (train.py --init-from)."""
        from jgan.errors import ConfigError
        raise ConfigError(f"{self.config['arch']} cannot start from a generator's weights (--init-from); "
                          f"drop the flag")

    def set_learning_rate(self, lr):
        """Every optimiser at `lr`, or each at its configured rate when `lr` is None."""
        for optimizer, configured in self.learning_rates.items():
            optimizer.lr = configured if lr is None else lr

    # ----- training --------------------------------------------------------------------------
    def train_step(self, batches, context):
        """One training step: draws `next(batches[stream])` as it needs (each a (B, C, H, W) Var,
        B = phase.batch // world) and applies its updates through `context.update`; returns the
        terms to log, as jt.Vars (reading them would make the host wait)."""
        raise NotImplementedError

    def train(self, mode=True):
        """Put every network in training (or evaluation) mode."""
        for module in self.modules().values():
            module.train() if mode else module.eval()

    # ----- sampling --------------------------------------------------------------------------
    def sample_inputs(self, n, rng):
        """The inputs of n samples (e.g. latents), drawn from the numpy generator `rng`."""
        raise NotImplementedError

    def sampling_generator(self):
        """The module that makes samples (e.g. the EMA generator)."""
        return self.modules()[self.sampling_modules[0]]

    def network_inputs(self, phase):
        """Keyword arguments every network call takes in this phase (none for fixed-size nets)."""
        return {}

    def samples(self, inputs, phase):
        """Images (N, C, H, W) in [-1, 1] for the sample inputs, in evaluation mode."""
        with evaluation_mode(self.sampling_generator()) as generator, jt.no_grad():
            return generator(jt.array(inputs), **self.network_inputs(phase))
