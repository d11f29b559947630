"""PyTorch reference of the DCGAN-family nets, written from the PyTorch DCGAN example (64 px),
and of their SELU variant ("Deep learning with cats": nn.SELU instead of every norm + (leaky) ReLU).

Module indices inside `main` follow the same layer order as jgan.networks.dcgan so parameter names
coincide; the widths are derived here from the image side instead of the 4x4 side.
"""
from contextlib import contextmanager

import torch
from torch import nn

BN_MOMENTUM = 0.1


def _widths(size, base):
    """Channel widths at resolutions size/2, size/4, ..., 4 (base, 2 base, 4 base, ...)."""
    widths, resolution = [], size // 2
    while resolution >= 4:
        widths.append(base * (size // 2 // resolution))
        resolution //= 2
    return widths


def _upsample(kind, cin, cout):
    if kind == "transposed":
        return nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False))


def _activation(selu, *norm_and_relu):
    return [nn.SELU()] if selu else list(norm_and_relu)


class TorchGenerator(nn.Module):
    def __init__(self, size, nz, ngf, channels=3, upsample="transposed", activation="relu"):
        super().__init__()
        selu = activation == "selu"
        widths = _widths(size, ngf)[::-1]          # e.g. 64 px: 512, 256, 128, 64
        layers = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
                  *_activation(selu, nn.BatchNorm2d(widths[0]), nn.ReLU(True))]
        for i in range(1, len(widths)):
            layers += [_upsample(upsample, widths[i - 1], widths[i]),
                       *_activation(selu, nn.BatchNorm2d(widths[i]), nn.ReLU(True))]
        layers += [_upsample(upsample, widths[-1], channels), nn.Tanh()]
        self.nz = nz
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z.view(-1, self.nz, 1, 1))


class TorchDiscriminator(nn.Module):
    def __init__(self, size, ndf, channels=3, norm="batch", activation="relu"):
        super().__init__()
        selu = activation == "selu"
        widths = _widths(size, ndf)                # e.g. 64 px: 64, 128, 256, 512
        layers = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False),
                  *_activation(selu, nn.LeakyReLU(0.2, inplace=True))]
        for i in range(1, len(widths)):
            layers.append(nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1, bias=(norm == "none" and not selu)))
            if norm == "batch" and not selu:
                layers.append(nn.BatchNorm2d(widths[i]))
            elif norm == "instance" and not selu:
                layers.append(nn.InstanceNorm2d(widths[i], affine=True))
            layers += _activation(selu, nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m):
    """The PyTorch DCGAN example's initialisation, extended to InstanceNorm's affine weights."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif "Norm" in name and m.weight is not None:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


REFERENCE_NETS = {   # arch -> (generator upsampling, critic norm)
    "dcgan": ("transposed", "batch"), "wgan": ("transposed", "batch"), "lsgan": ("transposed", "batch"),
    "wgan-gp": ("transposed", "instance"), "wgan-div": ("transposed", "instance"),
    "wganp": ("resize", "instance"),
}


def torch_networks(arch, size, nz, ngf, ndf, critic_norm="instance"):
    upsample, norm = REFERENCE_NETS[arch]
    if norm != "batch":
        norm = critic_norm
    torch.manual_seed(0)
    generator = TorchGenerator(size, nz, ngf, upsample=upsample)
    discriminator = TorchDiscriminator(size, ndf, norm=norm)
    generator.apply(weights_init)
    discriminator.apply(weights_init)
    return generator, discriminator


@contextmanager
def batch_norm_sizes(*nets):
    """Yields one dict per net, {BatchNorm name: elements per channel n = B*H*W}, filled by forwards."""
    sizes, hooks = [{} for _ in nets], []
    for net, found in zip(nets, sizes):
        for name, layer in net.named_modules():
            if isinstance(layer, nn.BatchNorm2d):
                def record(layer, args, output, name=name, found=found):
                    found[name] = args[0].numel() // args[0].shape[1]
                hooks.append(layer.register_forward_hook(record))
    try:
        yield sizes
    finally:
        for hook in hooks:
            hook.remove()


def unbiased_running_var_as_biased(jt_net, th_net, sizes):
    """{name: (jittor running_var - kept, torch's mapped to Jittor's biased estimate)} per BatchNorm.

    Both keep r <- (1 - m) r + m v from r = 1, torch with the unbiased v (n/(n-1) times Jittor's
    biased one), so after k updates jittor (r - (1-m)^k) == torch (r - (1-m)^k) (n-1)/n.
    """
    jt_state, th_state = jt_net.state_dict(), dict(th_net.named_buffers())
    pairs = {}
    for name, n in sizes.items():
        kept = (1 - BN_MOMENTUM) ** int(th_state[f"{name}.num_batches_tracked"])
        pairs[name] = (jt_state[f"{name}.running_var"].numpy() - kept,
                       (th_state[f"{name}.running_var"].detach().numpy() - kept) * (n - 1) / n)
    return pairs


def lecun_normal_init(net):
    """SELU's initialisation: every conv weight ~ N(0, 1 / n), n the number of input values that
    one output element sums (a 1x1 input meets one tap of the first transposed conv; a stride-2
    4x4 transposed conv reaches each output with 2x2 taps per input channel)."""
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    for index, conv in enumerate(convs):
        weight = conv.weight
        if isinstance(conv, nn.ConvTranspose2d):
            taps_per_channel = 1 if index == 0 and conv.stride == (1, 1) else (weight.shape[2] // conv.stride[0]) ** 2
            n = weight.shape[0] * taps_per_channel
        else:
            n = weight[0].numel()
        nn.init.normal_(weight, 0.0, n ** -0.5)


def torch_selu_networks(size, nz, ngf, ndf, upsample="transposed", seed=0):
    """The SELU variant of a DCGAN-family arch's nets, LeCun-normal initialised."""
    torch.manual_seed(seed)
    generator = TorchGenerator(size, nz, ngf, upsample=upsample, activation="selu")
    discriminator = TorchDiscriminator(size, ndf, activation="selu")
    for net in (generator, discriminator):
        lecun_normal_init(net)
    return generator, discriminator
