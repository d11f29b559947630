"""Several image batches through a discriminator: in one pass when that is faster, else one by one.

A discriminator step scores the real and the fake batch. Concatenated, the two go through every
convolution in one call instead of two; layers that mix samples (batch norm, minibatch stddev)
still treat each batch on its own (`parts`), so the scores, the gradients and the running
statistics are those of two separate calls. On the CPU it pays off for small batches only, where
oneDNN's fixed cost per convolution call (layout reorders, primitive set-up) dominates (README,
"Speed"); on CUDA the batches always share a pass.
"""
import jittor as jt

ONE_PASS_MAX_IMAGES = 16   # CPU: the largest combined batch scored in one pass


def one_pass(batches):
    """Whether to score these batches (equal sizes) in one pass on the current device."""
    equal = len({int(x.shape[0]) for x in batches}) == 1
    return len(batches) >= 2 and equal and len(passes(batches)) == 1


def split_parts(x, parts):
    """The `parts` equal consecutive slices of x along the batch axis."""
    size = x.shape[0] // parts
    return [x[k * size:(k + 1) * size] for k in range(parts)]


def score_batches(score, batches):
    """score(x, parts) -> (N,) scores of x holding `parts` batches, applied to `batches`: the
    scores of the only batch, or a tuple with the scores of each."""
    if len(batches) == 1:
        return score(batches[0], 1)
    if one_pass(batches):
        return tuple(split_parts(score(jt.concat(list(batches), 0), len(batches)), len(batches)))
    return tuple(score(x, 1) for x in batches)


def passes(batches):
    """`batches` in order, grouped into as few passes as the one-pass rule allows: consecutive
    batches share a pass while their images add up to at most ONE_PASS_MAX_IMAGES (any number on CUDA)."""
    limit = float("inf") if jt.flags.use_cuda else ONE_PASS_MAX_IMAGES
    groups = []
    for x in batches:
        if groups and sum(int(y.shape[0]) for y in groups[-1]) + int(x.shape[0]) <= limit:
            groups[-1].append(x)
        else:
            groups.append([x])
    return groups


def apply_per_sample(net, batches):
    """net(x) of each of `batches` for a net that treats every sample on its own (no batch
    statistics), in as few passes as pay off (`passes`): a tuple with the output of each batch."""
    outputs = []
    for group in passes(batches):
        if len(group) == 1:
            outputs.append(net(group[0]))
            continue
        y, start = net(jt.concat(group, 0)), 0
        for x in group:
            outputs.append(y[start:start + x.shape[0]])
            start += x.shape[0]
    return tuple(outputs)
