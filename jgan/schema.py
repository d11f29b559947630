"""What every configuration value is: its type, its range or choices and a one-line meaning.

One pydantic class per section (`train`, `optim`, `loss`, `progressive`, a family's `model`), and
one class per GAN family that names its sections; jgan.registry gives each architecture its
family's class. The presets, `--config`, `--set` and the flags are all checked against it, and
`--help` and the README's tables are written from it. No Jittor is imported here.

A new family declares its `model` section (and any section it changes) as a subclass of `Config`
or `ProgressiveConfig`, with the rules between its keys as `model_validator`s.
"""
from typing import Annotated, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

MAX_SEED = 2 ** 31 - 1


def key(meaning, default=..., allowed=None, **constraints):
    """A configuration key: its meaning, its default (none: required) and its range; `allowed`
    words the range where it is not a plain bound (e.g. a power of two)."""
    extra = {"allowed": allowed} if allowed else None
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


def _power_of_two(size):
    if size & (size - 1):
        raise ValueError("not a power of two")
    return size


Size = Annotated[int, Field(ge=4, le=1024), AfterValidator(_power_of_two)]
SIZE_WORDS = "a power of two from 4 to 1024"
Rate = Annotated[float, Field(gt=0, le=1)]
Decay = Annotated[float, Field(ge=0, lt=1)]


class Section(BaseModel):
    """A configuration section: unknown keys and wrong types are refused, and nothing is
    converted but an int where a number is expected."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# ----- the sections every family shares ----------------------------------------------------------
class Stage(Section):
    """A stage of a run's schedule: from `images` shown on, another learning rate and/or batch
    (in a progressive run, whatever the resolution)."""
    images: int = key("images shown when the stage begins", ge=1)
    lr: Optional[Rate] = key("learning rate of both networks from then on (null: as before)", None)
    batch: Optional[int] = key("images per batch from then on (null: as before)", None, ge=1)


class Train(Section):
    batch: Optional[int] = key("images per batch (null: progressive.batch, per resolution)", ge=1)
    iters: int = key("total generator steps", ge=1)
    n_critic: int = key("discriminator steps per generator step", 1, ge=1)
    ema: float = key("EMA decay of the sample generator (0 = off)", 0.0, ge=0, lt=1)
    ema_rampup: float = key("EMA ramp-up: half-life at most ema_rampup x images shown (0 = off)", 0.0, ge=0)
    seed: int = key("random seed of the weights, the data order and every draw", 0, ge=0, le=MAX_SEED)
    flip: bool = key("mirror half of the training images", True)
    augment: str = key("DiffAugment policy of D, e.g. color,translation,cutout ('' = off)", "")
    augment_p: float = key("probability that each transform of the policy is applied to an image (1 = "
                           "DiffAugment); with augment_target, where the tuning starts", 1.0, ge=0, le=1)
    augment_target: float = key("adaptive augmentation (stylegan2-ada): tune augment_p so that the mean sign of D's "
                                "logits on real images stays at this value, e.g. 0.6 (0 = fixed augment_p)",
                                0.0, ge=0, lt=1)
    augment_span: int = key("images shown over which the tuning can move augment_p from 0 to 1", 500000, ge=1)
    precision: Literal["fp32", "bf16"] = key("arithmetic of the convolutions: fp32, or bf16 = bfloat16 products "
                                             "with float32 sums and results (CPUs with AMX or AVX-512 BF16 only)",
                                             "fp32")
    winograd: bool = key("with precision fp32 on the CPU, run convolutions by Winograd's algorithm: 3x3 stride-1 "
                         "ones (oneDNN, AVX-512 only) and the DCGAN family's 4x4 stride-2 ones and their transposes: "
                         "the same sums in another order, in fewer products", True)
    num_workers: int = key("data-loader threads that decode the next batches while the model trains", 2,
                           ge=0, le=64)
    sample_every: int = key("steps between fixed-noise sample grids", 500, ge=1)
    ckpt_every: int = key("steps between checkpoints", 2000, ge=1)
    log_every: int = key("steps between logged losses", 10, ge=1)
    keep: int = key("checkpoints kept: the newest N, plus one per progressive phase (0 = all)", 10, ge=0)
    n_sample: int = key("images in each sample grid", 64, ge=1, le=1024)
    metrics: str = key("metrics evaluated during training, e.g. swd or swd,fid ('' = none)", "")
    metrics_every: int = key("steps between metric evaluations (0 = never)", 0, ge=0)
    metrics_n: int = key("images per metric evaluation", 2048, ge=1)
    stages: list[Stage] = key("the run's schedule: stages, each from some images shown on, with another "
                              "lr and/or batch ([] = none)", [],
                              allowed="a list of {images, lr, batch} in increasing images")


class Adam(Section):
    name: Literal["adam"] = key("optimiser of both networks")
    lr_g: float = key("generator learning rate", gt=0, le=1)
    lr_d: float = key("discriminator learning rate", gt=0, le=1)
    betas: list[Decay] = key("Adam's decay rates of the first and second moments", [0.9, 0.999],
                             allowed="two numbers in [0, 1)", min_length=2, max_length=2)


class RMSprop(Section):
    name: Literal["rmsprop"] = key("optimiser of both networks")
    lr_g: float = key("generator learning rate", gt=0, le=1)
    lr_d: float = key("discriminator learning rate", gt=0, le=1)
    alpha: float = key("RMSprop's decay of the squared gradients", 0.99, ge=0, lt=1)
    eps: float = key("RMSprop's term added to the denominator", 1e-8, gt=0)


class BCELoss(Section):
    name: Literal["bce"] = key("non-saturating logistic loss (DCGAN)")
    real_label: float = key("target of real images; below 1 is one-sided label smoothing", 1.0, gt=0.5, le=1)


class WGANLoss(Section):
    name: Literal["wgan"] = key("Wasserstein loss with weight clipping")
    clip: float = key("critic weights clipped to [-clip, clip]", 0.01, gt=0)


class WGANGPLoss(Section):
    name: Literal["wgan-gp"] = key("Wasserstein loss with a gradient penalty")
    gp_weight: float = key("weight of the gradient penalty", 10.0, ge=0)
    drift: float = key("weight of E[D(x)^2] (PGGAN's drift term)", 0.0, ge=0)


class LSGANLoss(Section):
    name: Literal["lsgan"] = key("least-squares loss")


class WGANDivLoss(Section):
    name: Literal["wgan-div"] = key("Wasserstein loss with a divergence penalty")
    k: float = key("weight of the divergence penalty", 2.0, ge=0)
    p: float = key("power of the gradient norm in the penalty", 6.0, gt=0)


class R1Loss(Section):
    name: Literal["r1"] = key("non-saturating logistic loss with R1 on real images")
    gamma: float = key("R1 weight gamma (the penalty is gamma/2 E||grad D(x)||^2)", 10.0, ge=0)
    every: int = key("lazy R1: the penalty every k steps, weighted k", 1, ge=1)


Loss = Annotated[Union[BCELoss, WGANLoss, WGANGPLoss, LSGANLoss, WGANDivLoss, R1Loss], Field(discriminator="name")]
Optim = Annotated[Union[Adam, RMSprop], Field(discriminator="name")]


class Progressive(Section):
    init_size: Size = key("first resolution of progressive growing", allowed=SIZE_WORDS)
    max_size: Size = key("final resolution of progressive growing", allowed=SIZE_WORDS)
    phase: int = key("images shown per fade-in, and again per hold", ge=1)
    batch: dict[Size, Annotated[int, Field(ge=1)]] = key(
        "batch size per resolution", allowed="a map of power-of-two sizes to batch sizes of at least 1")
    lr: dict[Size, Rate] = key("learning rate of both networks per resolution (default: optim.lr_g for G, "
                               "lr_d for D)", {},
                               allowed="a map of power-of-two sizes to learning rates in (0, 1]")


class Config(Section):
    """The sections of every family; a family adds its `model` section."""
    stages_refused: ClassVar[Optional[str]] = None   # why a family takes no train.stages (None: it takes them)
    arch: str = key("architecture (jgan.registry)")
    loss: Loss
    optim: Optim
    train: Train

    @model_validator(mode="after")
    def batch_given_without_a_schedule(self):
        if self.train.batch is None and not hasattr(self, "progressive"):
            raise ValueError(f"config key train.batch is null, which only a progressive architecture "
                             f"takes; {self.arch} needs a batch size: pass --batch")
        return self

    @model_validator(mode="after")
    def adaptive_augmentation_has_what_it_tunes(self):
        if not self.train.augment_target:
            return self
        if not self.train.augment.strip():
            raise ValueError("train.augment_target tunes how often the augmentation policy applies, and "
                             "train.augment is empty; set a policy, e.g. --set train.augment=translation,cutout")
        if self.loss.name not in ("bce", "r1"):
            raise ValueError(f"train.augment_target reads the sign of D's logits, which the {self.loss.name} "
                             f"loss does not have; use loss bce or r1, or set train.augment_target=0")
        return self

    @model_validator(mode="after")
    def stages_well_formed(self):
        if self.train.stages and self.stages_refused:
            raise ValueError(self.stages_refused)
        starts = [stage.images for stage in self.train.stages]
        if starts != sorted(set(starts)):
            raise ValueError(f"train.stages begin at {starts} images; list them in increasing order, "
                             f"each at its own count")
        idle = [stage.images for stage in self.train.stages if stage.lr is None and stage.batch is None]
        if idle:
            raise ValueError(f"the stage at {idle[0]} images changes nothing; give it an lr or a batch")
        return self


class ProgressiveConfig(Config):
    progressive: Progressive

    @model_validator(mode="after")
    def growing_not_shrinking(self):
        grow = self.progressive
        if grow.init_size > grow.max_size:
            raise ValueError(f"progressive.init_size {grow.init_size} is larger than progressive.max_size "
                             f"{grow.max_size}; lower --init-size or raise --max-size")
        return self


# ----- the families ------------------------------------------------------------------------------
class DCGANModel(Section):
    size: Annotated[int, Field(ge=16, le=1024), AfterValidator(_power_of_two)] = key(
        "image size", allowed="a power of two from 16 to 1024")
    nz: int = key("length of the latent z", ge=1)
    ngf: int = key("width of the generator's last hidden layer", ge=1)
    ndf: int = key("width of the critic's first hidden layer", ge=1)
    upsample: Literal["transposed", "resize"] = key(
        "generator upsampling: fractionally-strided convs or nearest + conv", "transposed")
    critic_norm: Literal["batch", "instance", "none"] = key("normalisation of the critic's hidden layers", "batch")
    activation: Literal["relu", "selu"] = key("norms + (leaky) ReLU, or SELU without norms", "relu")


class DCGANConfig(Config):
    model: DCGANModel


class GrowingModel(Section):
    code_dim: int = key("length of the latent z", ge=1)
    channels: list[Annotated[int, Field(ge=1)]] = key(
        "width of each resolution's blocks, from 4 px up", allowed="a list of 1 to 9 widths of at least 1",
        min_length=1, max_length=9)
    critic_channels: Optional[list[Annotated[int, Field(ge=1)]]] = key(
        "width of each resolution's discriminator blocks, from 4 px up (null: model.channels)", None,
        allowed="null or as many widths of at least 1 as model.channels")


class PGGANModel(GrowingModel):
    stddev_group: Optional[int] = key("minibatch-stddev group size (null: the whole batch)", 4, ge=1)
    from_rgb_activate: bool = key("LeakyReLU after each from-RGB conv", True)


class StyleGANModel(GrowingModel):
    n_mlp: int = key("layers of the mapping network", ge=1)
    fused_from: Size = key("first resolution with fused upsampling and downsampling convs", allowed=SIZE_WORDS)
    style_gain: float = key("initial scale of the style weights: how far styles spread AdaIN's gamma and "
                            "beta, or the modulations, at the start (1 = rosinality's)", 1.0, ge=0)
    demodulate: bool = key("StyleGAN2's modulated, demodulated convolutions in place of AdaIN (false: "
                           "rosinality's v1 layout)", False)


class StyledProgressive(Progressive):
    mixing: float = key("style-mixing probability (0 = off)", 0.0, ge=0, le=1)


class GrowingConfig(ProgressiveConfig):
    model: GrowingModel

    @model_validator(mode="after")
    def enough_channels(self):
        largest = 4 * 2 ** (len(self.model.channels) - 1)
        if self.progressive.max_size > largest:
            raise ValueError(f"model.channels has {len(self.model.channels)} widths, enough to grow to "
                             f"{largest} px, not to progressive.max_size {self.progressive.max_size}; "
                             f"lower --max-size or add widths")
        return self

    @model_validator(mode="after")
    def critic_widths_match(self):
        critic, channels = self.model.critic_channels, self.model.channels
        if critic is not None and len(critic) != len(channels):
            raise ValueError(f"model.critic_channels has {len(critic)} widths and model.channels {len(channels)}; "
                             f"give one discriminator width per resolution, or null")
        return self


class PGGANConfig(GrowingConfig):
    model: PGGANModel


class StyleGANConfig(GrowingConfig):
    model: StyleGANModel
    progressive: StyledProgressive



class CycleGANModel(Section):
    size: Annotated[int, Field(ge=32, le=1024), AfterValidator(_power_of_two)] = key(
        "image size", allowed="a power of two from 32 to 1024")
    ngf: int = key("width of the generators' first layer", 64, ge=1)
    ndf: int = key("width of the discriminators' first layer", 64, ge=1)
    blocks: int = key("residual blocks of each generator (0: 9 at 256 px and above, 6 below)", 0, ge=0)
    d_layers: int = key("stride-2 and stride-1 layers of the PatchGAN (3: 70x70 patches)", 3, ge=1)


class CycleGANLoss(LSGANLoss):
    """The least-squares loss (the only one of cyclegan) with the weights of the L1 terms."""
    cycle: float = key("lambda: weight of the cycle-consistency L1", 10.0, ge=0)
    identity: float = key("weight of the identity L1, as a fraction of lambda (0 = off)", 0.5, ge=0)


class DecayingAdam(Adam):
    decay_start: float = key("fraction of train.iters after which the learning rate decays linearly to 0",
                             0.5, ge=0, le=1)


class CycleGANTrain(Train):
    pool: int = key("translated images kept per direction for the discriminators (0 = none)", 50, ge=0)
    n_sample: int = key("rows of the 6x6 sample grid (images per direction)", 6, ge=1, le=6)


class CycleGANConfig(Config):
    model: CycleGANModel
    loss: CycleGANLoss
    optim: DecayingAdam
    train: CycleGANTrain

    stages_refused: ClassVar[str] = "cyclegan schedules its own learning rate (optim.decay_start); drop train.stages"

    @model_validator(mode="after")
    def no_training_metrics(self):
        if self.train.metrics:
            raise ValueError("training-time metrics draw images from latents, which cyclegan does not take; "
                             "drop --metrics")
        return self

# ----- a configuration from a preset alone -------------------------------------------------------
def _typed_by(values, name):
    """A section of `values`' keys with their types (what a family that declares none is held to)."""
    fields = {k: (object if v is None else type(v), key("(as in the preset)", v)) for k, v in values.items()}
    return create_model(name, __base__=Section, **fields)


def _declares(section, values):
    """Whether a shared section (for loss and optim: its class of `values`' name) declares every
    key of the preset's `values`."""
    if section in (Loss, Optim):
        by_name = {get_args(cls.model_fields["name"].annotation)[0]: cls for cls in get_args(get_args(section)[0])}
        section = by_name.get(values.get("name"))
    return section is not None and set(values) <= set(section.model_fields)


def from_preset(preset, progressive=False):
    """The schema of a family that declares none: the shared sections where they hold every key of
    its preset, the preset's keys and types elsewhere (always for `model`)."""
    shared = {"loss": Loss, "optim": Optim, "train": Train, **({"progressive": Progressive} if progressive else {})}
    fields = {name: (shared[name] if name in shared and _declares(shared[name], values)
                     else _typed_by(values, f"Preset_{name}"), ...)
              for name, values in preset.items() if isinstance(values, dict)}
    return create_model("PresetConfig", __base__=ProgressiveConfig if progressive else Config, **fields)


# ----- words for a key ---------------------------------------------------------------------------
def _bounds(metadata):
    found = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(item, name, None) is not None:
                found[name] = getattr(item, name)
    return found


def _number(kind, bounds):
    low, high = (bounds.get(a, bounds.get(b)) for a, b in (("ge", "gt"), ("le", "lt")))
    low, high = (f"{x:g}" if isinstance(x, float) else x for x in (low, high))
    if low is not None and high is not None and kind == "a number":
        return f"{kind} in {'[' if 'ge' in bounds else '('}{low}, {high}{']' if 'le' in bounds else ')'}"
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} {'of at least' if 'ge' in bounds else 'above'} {low}"
    return kind


def allowed_values(field):
    """The range of a key in words, e.g. 'an integer of at least 1' or 'one of batch, instance, none'."""
    extra = field.json_schema_extra or {}
    if "allowed" in extra:
        return extra["allowed"]
    return _words(field.annotation, field.metadata)


def words(annotation):
    """The values a type allows, in words (e.g. Annotated[int, Field(ge=1)])."""
    return _words(annotation)


def _words(annotation, metadata=()):
    args = get_args(annotation)
    if get_origin(annotation) is Union and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"{_words(inner, metadata)} or null"
    if get_origin(annotation) is Annotated:
        inner = [item for arg in args[1:] for item in getattr(arg, "metadata", [arg])]
        return _words(args[0], [*metadata, *inner])
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, args))
    if annotation in (int, float):
        return _number("an integer" if annotation is int else "a number", _bounds(metadata))
    return {bool: "true or false", str: "a string"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def value_type(field):
    """The Python type a flag for this key parses (int, float or str) and its choices, if any."""
    annotation = field.annotation
    args = get_args(annotation)
    if get_origin(annotation) is Union:
        annotation = [a for a in args if a is not type(None)][0]
    if get_origin(annotation) is Literal:
        return str, get_args(annotation)
    return annotation, None


def variants(field):
    """{name: section class} of a section chosen by its `name` (loss, optim); {} for the others."""
    if field.discriminator is None:
        return {}
    return {get_args(cls.model_fields["name"].annotation)[0]: cls for cls in get_args(field.annotation)}


LOSS_NAMES = tuple(variants(Config.model_fields["loss"]))


class LossChoice(Section):
    name: Literal[LOSS_NAMES] = key("the loss, e.g. wgan-gp (+ drift) or r1")


FLAG_SECTIONS = {"train": Train, "optim": Adam, "progressive": StyledProgressive, "model": DCGANModel,
                 "loss": LossChoice}


def flag_field(dotted):
    """The field of `section.key` as the flags of train.py describe it (e.g. 'train.batch')."""
    section, name = dotted.split(".")
    return FLAG_SECTIONS[section].model_fields[name]

