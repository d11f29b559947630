"""Routing of Jittor's 2-d convolutions through another implementation of them.

A backend is a module with `conv2d(x, weight, bias, stride, padding)`,
`conv_transpose2d(x, weight, bias, stride, padding, output_padding)` and `routed(...)`, which says
for one call whether it takes it. `Route(backend).install()` puts it in front of Jittor's
convolution functions and modules (`nn.conv2d`, `nn.conv_transpose2d`, `nn.Conv`,
`nn.ConvTranspose`); grouped and dilated convolutions, and those the backend declines, fall through
to whatever was there before, so routes stack. jgan.gemm_conv (CUDA without cuDNN) and
jgan.onednn_conv (bfloat16 products on the CPU) are the backends.
"""
from jittor import nn


def pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _plain(groups, dilation):
    return groups == 1 and pair(dilation) == (1, 1)


class Route:
    """Jittor's convolution entry points, redirected to `backend` while installed."""

    def __init__(self, backend):
        self.backend = backend
        self.originals = {}

    def takes(self, kind, x, weight, stride, padding, output_padding, groups, dilation):
        return _plain(groups, dilation) and self.backend.routed(kind, x, weight, stride, padding, output_padding)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if self.takes("conv2d", x, weight, stride, padding, 0, groups, dilation):
            return self.backend.conv2d(x, weight, bias, stride, padding)
        return self.originals[nn, "conv2d"](x, weight, bias, stride, padding, dilation, groups)

    def conv_transpose(self, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        if self.takes("conv_transpose2d", x, weight, stride, padding, output_padding, groups, dilation):
            return self.backend.conv_transpose2d(x, weight, bias, stride, padding, output_padding)
        return self.originals[nn, "conv_transpose"](x, weight, bias, stride, padding, output_padding, groups,
                                                    dilation)

    def replacements(self):
        """(owner, attribute, replacement) of every convolution entry point of Jittor."""
        route = self

        def conv_module(module, x):
            if not hasattr(module, "depthwise_conv") and route.takes(
                    "conv2d", x, module.weight, module.stride, module.padding, 0, module.groups, module.dilation):
                return route.backend.conv2d(x, module.weight, module.bias, module.stride, module.padding)
            return route.originals[nn.Conv, "execute"](module, x)

        def conv_transpose_module(module, x):
            if route.takes("conv_transpose2d", x, module.weight, module.stride, module.padding,
                           module.output_padding, module.groups, module.dilation):
                return route.backend.conv_transpose2d(x, module.weight, module.bias, module.stride, module.padding,
                                                      module.output_padding)
            return route.originals[nn.ConvTranspose, "execute"](module, x)

        return [(nn, "conv2d", self.conv2d), (nn, "conv_transpose", self.conv_transpose),
                (nn, "conv_transpose2d", self.conv_transpose), (nn.Conv, "execute", conv_module),
                (nn.ConvTranspose, "execute", conv_transpose_module)]

    def install(self):
        """Put the backend in front of Jittor's convolutions (idempotent)."""
        if self.originals:
            return
        for owner, attribute, replacement in self.replacements():
            self.originals[owner, attribute] = getattr(owner, attribute)
            setattr(owner, attribute, replacement)

    def uninstall(self):
        """Give back what was there before."""
        for (owner, attribute), original in self.originals.items():
            setattr(owner, attribute, original)
        self.originals.clear()

    def switch(self, on):
        """Install (True) or uninstall (False)."""
        if on:
            self.install()
        else:
            self.uninstall()

    @property
    def installed(self):
        return bool(self.originals)
