"""jgan: classic image GANs and StyleGAN v1 in Jittor.

Importing jgan has no side effects: Jittor starts at `jgan.runtime.init()`, which the CLIs call,
or at the first use of `jgan.load_generator`.
"""
__version__ = "0.1.0"


def __getattr__(name):
    """`jgan.load_generator`, loaded on first use so that `import jgan` need not start Jittor."""
    if name != "load_generator":
        raise AttributeError(f"module 'jgan' has no attribute {name!r}")
    from jgan import runtime
    if not runtime.started():
        runtime.init()
    from jgan.generation import load_generator
    return load_generator
