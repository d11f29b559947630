"""Batch, instance and adaptive instance normalisation on jgan's multi-threaded group kernels.

A group is a channel (batch norm: its values over the batch and the pixels) or a feature map
(instance norm). The statistics are E[x] and E[x^2] from jgan.kernels.group_sum and
group_square_sum, and the output is one group_affine pass, y = x scale + shift with
scale = weight / sqrt(var + eps), shift = bias - E[x] scale, var = max(E[x^2] - E[x]^2, 0):
Jittor's own formulas, so that BatchNorm2d and InstanceNorm2d are drop-in subclasses of Jittor's
layers (same parameters and state; Jittor keeps the biased batch variance as running variance;
under MPI the batch statistics are averaged over the ranks). Every reduction of the gradients, of
any order, runs on the group kernels too. A leaky ReLU that follows can run in the same pass. Each
takes (N, C, H, W) inputs, or (N, H, W, C) ones where channels_last.
"""
import jittor as jt
from jittor import nn

from jgan.kernels import group_affine, group_square_sum, group_sum, leaky_relu


def moments(x, per_channel, channels_last=False):
    """(E[x], E[x^2]) over each channel, (C,), or each feature map, (N, C), of x."""
    height, width = x.shape[1:3] if channels_last else x.shape[2:]
    count = (x.shape[0] if per_channel else 1) * height * width
    return (group_sum(x, per_channel, channels_last) / count,
            group_square_sum(x, per_channel, channels_last) / count)


def normalize(x, per_channel, mean, mean_square, weight, bias, eps, slope=None, channels_last=False):
    """(weight (x - mean) / sqrt(var + eps) + bias, var) per group; weight and bias are numbers,
    per-channel (C,) values or, for feature maps, (N, C) values (numpy broadcasting). With a
    `slope`, a leaky ReLU of that slope follows in the same pass."""
    var = (mean_square - mean * mean).maximum(0.0)
    scale = weight / jt.sqrt(var + eps)
    shift = bias - mean * scale
    return group_affine(x, scale, shift, per_channel, slope, channels_last), var


class BatchNorm2d(nn.BatchNorm):
    """nn.BatchNorm2d whose training-mode statistics and affine map run on the group kernels.

    With a `slope`, the leaky ReLU that follows the layer is applied in the same pass. An input
    made of `parts` equal batches (jgan.batching) is normalised with each batch's own
    statistics, and the running statistics take one update per batch, in order."""

    def execute(self, x, slope=None, parts=1, channels_last=False):
        if not self.is_train:
            return self.normalize_running(x, slope, channels_last)
        if parts > 1:
            return self.normalize_parts(x, slope, parts, channels_last)
        mean, mean_square = self.all_ranks(*moments(x, True, channels_last))
        y, var = normalize(x, True, mean, mean_square, self.weight, self.bias, self.eps, slope, channels_last)
        self.update_running(mean, var)
        return y

    def normalize_running(self, x, slope, channels_last):
        """Evaluation: Jittor's layer on (N, C, H, W), the same map from the running statistics on
        channels-last inputs."""
        if not channels_last:
            y = super().execute(x)
            return y if slope is None else leaky_relu(y, slope)
        scale = self.weight / jt.sqrt(self.running_var + self.eps)
        return group_affine(x, scale, self.bias - self.running_mean * scale, True, slope, channels_last)

    def normalize_parts(self, x, slope, parts, channels_last):
        """Each batch's statistics from the feature maps' ones, applied per feature map."""
        batch, channels = x.shape[0], x.shape[3 if channels_last else 1]
        size = batch // parts
        mean, mean_square = self.all_ranks(*(m.reshape(parts, size, channels).mean(1)
                                             for m in moments(x, False, channels_last)))

        def per_map(value):       # (parts, C) -> (N, C)
            return value.reshape(parts, 1, channels).broadcast((parts, size, channels)).reshape(batch, channels)
        y, var = normalize(x, False, per_map(mean), per_map(mean_square), self.weight, self.bias,
                           self.eps, slope, channels_last)
        for part in range(parts):
            self.update_running(mean[part], var[part * size])
        return y

    def all_ranks(self, mean, mean_square):
        """The batch statistics averaged over the MPI ranks (synchronised batch norm)."""
        if self.sync and jt.in_mpi:
            return mean.mpi_all_reduce("mean"), mean_square.mpi_all_reduce("mean")
        return mean, mean_square

    def update_running(self, mean, var):
        self.running_mean.update(self.running_mean + (mean - self.running_mean) * self.momentum)
        self.running_var.update(self.running_var + (var - self.running_var) * self.momentum)


class InstanceNorm2d(nn.InstanceNorm):
    """nn.InstanceNorm2d (affine by default, as Jittor's) on the group kernels; `parts` is accepted
    for symmetry with BatchNorm2d (instance statistics never mix samples)."""

    def execute(self, x, slope=None, parts=1, channels_last=False):
        mean, mean_square = moments(x, False, channels_last)
        return normalize(x, False, mean, mean_square, self.weight, self.bias, self.eps, slope, channels_last)[0]
