"""jgan: classic image GANs and StyleGAN v1 in Jittor."""
import sys

from jgan import runtime

runtime.configure_environment()

import jittor  # noqa: E402  (must come after configure_environment)

runtime.restore_signal_handlers()
runtime.close_compile_pool()
__version__ = "0.1.0"
DEVICE = runtime.set_device("auto")
print(runtime.startup_line(), file=sys.stderr)

from jgan.generation import load_generator  # noqa: E402  (public API)
