"""Specification of augmentation applied with a probability, and of its tuning as stylegan2-ada tunes
it (Karras et al. 2020, "Training generative adversarial networks with limited data"): each transform
reaches an image with probability p, and after each discriminator step p moves by the step's images /
augment_span towards keeping r = E[sign D(x)] on real images at augment_target, within [0, 1]."""
import json

import jittor as jt
import numpy as np
import pytest

from jgan import augment
from jgan import checkpoint as ckpt
from jgan.config import load_config
from jgan.errors import ConfigError
from jgan.losses import Critic, NonSaturatingLoss, R1Loss
from jgan.training import Trainer

IMAGES = 4000


def cut_share(probability, seed=0):
    """Share of IMAGES all-ones images that the cutout policy applied with `probability` changed."""
    jt.set_seed(seed)
    applied = augment.Augment("cutout", jt.array(np.array([probability], np.float32)))
    out = applied(jt.ones((IMAGES, 3, 8, 8))).numpy().reshape(IMAGES, -1)
    unchanged = (out == 1).all(1)
    assert ((out == 1) | (out == 0)).all(), "an image is either cut or left as it was"
    return 1 - unchanged.mean()


@pytest.mark.parametrize("probability", [0.0, 0.3, 1.0])
def test_each_transform_reaches_the_given_share_of_images(probability):
    # a binomial share of 4000 draws has a standard deviation <= 0.008
    assert cut_share(probability) == pytest.approx(probability, abs=0.03)


def test_probability_one_is_diffaugment_and_zero_the_identity():
    images = jt.array(np.random.RandomState(0).uniform(-1, 1, (6, 3, 16, 16)).astype(np.float32))
    jt.set_seed(5)
    always = augment.Augment("color,translation,cutout")(images).numpy()
    jt.set_seed(5)
    one = augment.Augment("color,translation,cutout", jt.array(np.array([1.0], np.float32)))(images).numpy()
    np.testing.assert_allclose(one, always, atol=1e-6)
    never = augment.Augment("color,translation,cutout", jt.array(np.array([0.0], np.float32)))(images)
    np.testing.assert_array_equal(never.numpy(), images.numpy())


def test_tuning_moves_p_by_a_step_s_images_over_the_span_towards_the_target_within_0_and_1():
    tuning = augment.AdaptiveProbability(start=0.85, target=0.6, span=1000)
    seen = []
    for r in [0.9, 1.0, 0.7, 0.2, 0.6, -1.0]:
        tuning.adjust(jt.array(np.float32(r)), images=100)
        seen.append(float(tuning.state()[0]))
    np.testing.assert_allclose(seen, [0.95, 1.0, 1.0, 0.9, 0.9, 0.8], atol=1e-6)
    low = augment.AdaptiveProbability(start=0.05, target=0.6, span=1000)
    low.adjust(jt.array(np.float32(-0.5)), images=100)
    assert float(low.state()[0]) == 0.0
    low.load_state(np.array([0.45], np.float32))
    assert float(low.state()[0]) == pytest.approx(0.45)


@pytest.mark.parametrize("loss", [NonSaturatingLoss(), R1Loss(gamma=1.0)])
def test_logit_losses_log_the_mean_sign_of_the_real_logits(loss):
    def images(logits):   # images whose first pixel is the logit the critic gives them
        batch = np.zeros((4, 1, 2, 2), np.float32)
        batch[:, 0, 0, 0] = logits
        return jt.array(batch)
    critic = Critic(lambda x: x[:, 0, 0, 0])
    _, terms = loss.discriminator_loss(critic, images([2.0, -1.0, 0.0, 3.0]), images([-1.0, -2.0, 1.0, 0.5]))
    assert terms["d_real_sign"].item() == pytest.approx(0.25)   # (1 - 1 + 0 + 1) / 4


ADAPTIVE = {"model": {"size": 32, "ngf": 8, "ndf": 8},
            "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "log_every": 1, "ckpt_every": 3,
                      "sample_every": 100, "augment": "translation,cutout", "augment_p": 0.5,
                      "augment_target": 0.6, "augment_span": 40}}   # p moves 0.1 per step of 4 images


def train(folder, until, resume=False):
    trainer = Trainer(load_config("dcgan", False, None, [ADAPTIVE]), folder / "lmdb", folder / "run",
                      folder / "sample", progress=False)
    if resume:
        trainer.restore(ckpt.load_checkpoint(folder / "run"))
    trainer.train(until)
    records = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    return trainer, {r["step"]: r for r in records}


def test_a_training_run_tunes_p_from_its_logits_and_resumes_it_exactly(tiny_lmdb, tmp_path):
    for name in ("straight", "split"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "lmdb").symlink_to(tiny_lmdb)
    straight, log = train(tmp_path / "straight", 6)
    previous = 0.5
    for step in range(1, 7):
        move = 0.1 * np.sign(log[step]["d_real_sign"] - 0.6)
        assert log[step]["augment_p"] == pytest.approx(min(1.0, max(0.0, previous + move)), abs=1e-6), step
        previous = log[step]["augment_p"]
    train(tmp_path / "split", 3)
    resumed, split_log = train(tmp_path / "split", 6, resume=True)
    for step in range(4, 7):
        assert split_log[step]["augment_p"] == pytest.approx(log[step]["augment_p"], abs=1e-6), step
        assert split_log[step]["d_loss"] == pytest.approx(log[step]["d_loss"], rel=1e-5), step
    assert resumed.model.state()["augment_p"] == pytest.approx(straight.model.state()["augment_p"])


@pytest.mark.parametrize("overrides, words", [
    ({"train": {"augment_target": 0.6}}, "train.augment is empty"),
    ({"loss": {"name": "wgan-gp"}, "train": {"augment": "cutout", "augment_target": 0.6}}, "use loss bce or r1"),
])
def test_tuning_without_a_policy_or_without_logits_is_refused_in_one_sentence(overrides, words):
    with pytest.raises(ConfigError) as error:
        load_config("dcgan", False, None, [overrides])
    assert words in str(error.value)
