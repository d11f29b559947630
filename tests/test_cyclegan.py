"""Specification of CycleGAN (jgan.networks.cyclegan, jgan.models.cyclegan) against the independent
PyTorch reference of tests/reference/cyclegan_torch.py, on identical weights (biases randomised
away from junyanz's zeros so that every parameter shows).

Tolerances (float32 Jittor; atol + rtol * |reference|; measured max abs diffs printed by pytest -s):
  NET_ATOL 1e-4 + NET_RTOL 1e-4: G images (tanh, |values| <= 1) and D patch scores at 64 and 128 px,
    paper widths, against float32 PyTorch.
  VALUE_ATOL 1e-5: every loss term against a float64 reference (tiny nets, 32 px).
  GRADIENT_RTOL 1e-4: every dL/dW of every term within GRADIENT_RTOL * max |dL/dW| of that term.
  WEIGHT_ATOL 1e-5: every weight of both generators and discriminators after three training steps
    (Adam lr 2e-4 moves a weight by up to ~2e-4 per step, so a wrong lr, decay, beta, loss weight or
    pool draw is ~20x over; measured worst 4.4e-6), and NET_ATOL for the trained networks' outputs.
  The image pool and the learning-rate factors are compared exactly.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import jittor as jt
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shape_image
from jgan.config import load_config
from jgan.errors import ConfigError
from jgan.models.base import StepContext
from jgan.models.cyclegan import CycleGANModel, ImagePool, decay_factor
from jgan.networks.cyclegan import PatchDiscriminator, ResidualBlock, ResnetGenerator, build_networks
from jgan.prepare import prepare_lmdb
from jgan.schedule import FixedSchedule
from parity import assert_close, copy_parameters, max_abs_diff, to_numpy
from reference import cyclegan_torch as ref
from reference.optim_torch import EpsHatAdam

REPO = Path(__file__).resolve().parent.parent
NET_ATOL, NET_RTOL = 1e-4, 1e-4
VALUE_ATOL, GRADIENT_RTOL, WEIGHT_ATOL = 1e-5, 1e-4, 1e-5
TINY = {"size": 32, "ngf": 8, "ndf": 8, "blocks": 2}
LAMBDA, IDENTITY = 10.0, 0.5


def compare(name, jt_value, th_value, atol=NET_ATOL, rtol=NET_RTOL):
    scale = float(np.abs(to_numpy(th_value)).max())
    print(f"{name}: max abs diff {max_abs_diff(jt_value, th_value):.2e} (max abs value {scale:.2e})")
    assert_close(name, jt_value, th_value, atol=atol, rtol=rtol)


def randomized(module, seed):
    """The reference's initialisation, then biases ~ N(0, 0.02) so that they matter."""
    torch.manual_seed(seed)
    ref.init_weights(module)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.02)
    return module


def reference_nets(ngf, ndf, blocks, seed=0):
    """{g_ab, g_ba, d_a, d_b} of the reference, float32."""
    return {"g_ab": randomized(ref.TorchResnetGenerator(ngf, blocks), seed),
            "g_ba": randomized(ref.TorchResnetGenerator(ngf, blocks), seed + 1),
            "d_a": randomized(ref.TorchPatchDiscriminator(ndf), seed + 2),
            "d_b": randomized(ref.TorchPatchDiscriminator(ndf), seed + 3)}


def load_model(model, nets):
    for jt_name, th_name in (("generator_ab", "g_ab"), ("generator_ba", "g_ba"),
                             ("discriminator_a", "d_a"), ("discriminator_b", "d_b")):
        copy_parameters(model.modules()[jt_name], nets[th_name])


def images(batch, size, seed):
    return ref.random_images(np.random.RandomState(seed), batch, size)


def tiny_config(**train):
    return load_config("cyclegan", False, None, [{"model": dict(TINY), "train": {"num_workers": 0, **train}}])


# ----- the networks ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", (64, 128))
def test_generator_matches_the_reference(size):
    th_g = randomized(ref.TorchResnetGenerator(64, 6), seed=size)
    jt_g, _ = build_networks(size=size)
    copy_parameters(jt_g, th_g)
    x = images(2, size, seed=1)
    with torch.no_grad():
        expected = th_g(torch.from_numpy(x))
    jt_g.eval()
    compare(f"G at {size} px", jt_g(jt.array(x)), expected)


@pytest.mark.parametrize("size, patches", ((64, 6), (128, 14)))
def test_discriminator_matches_the_reference_with_one_score_per_patch(size, patches):
    th_d = randomized(ref.TorchPatchDiscriminator(64), seed=size)
    _, jt_d = build_networks(size=size)
    copy_parameters(jt_d, th_d)
    x = images(2, size, seed=2)
    with torch.no_grad():
        expected = th_d(torch.from_numpy(x))
    assert tuple(expected.shape) == (2, 1, patches, patches)
    compare(f"D at {size} px", jt_d(jt.array(x)), expected)


def test_the_paper_generators_have_9_blocks_at_256_px_and_6_below():
    def blocks(size):
        generator, _ = build_networks(size=size, ngf=4, ndf=4)
        return sum(isinstance(layer, ResidualBlock) for layer in generator.main)
    assert (blocks(256), blocks(128), blocks(32)) == (9, 6, 6)
    assert sum(isinstance(layer, ResidualBlock) for layer in ResnetGenerator(4, 3).main) == 3
    with pytest.raises(ConfigError, match="power-of-two image size of at least 32, got 16"):
        build_networks(size=16)


def test_the_nets_compute_the_same_channels_last_as_channels_first(monkeypatch):
    """On the CPU with oneDNN they run channels-last in between; elsewhere (CUDA) (N, C, H, W)."""
    from jgan.networks import cyclegan as nets
    assert nets.channels_last(), "this machine runs the nets channels-last"
    jt.set_global_seed(0)
    generator, discriminator = build_networks(size=32, ngf=16, ndf=16, blocks=1)
    x = jt.array(images(2, 32, seed=11))
    last = [generator(x).numpy(), discriminator(x).numpy()]
    monkeypatch.setattr(nets, "channels_last", lambda: False)
    first = [generator(x).numpy(), discriminator(x).numpy()]
    for name, got, want in zip(("generator", "discriminator"), last, first):
        compare(name, got, want, atol=1e-5, rtol=0)


def test_discriminator_scores_two_batches_as_two_calls():
    discriminator = PatchDiscriminator(ndf=8)
    a, b = jt.array(images(2, 32, seed=3)), jt.array(images(2, 32, seed=4))
    both = discriminator(a, b)
    compare("D(a, b)[0] vs D(a)", both[0], discriminator(a).numpy(), atol=1e-6, rtol=0)
    compare("D(a, b)[1] vs D(b)", both[1], discriminator(b).numpy(), atol=1e-6, rtol=0)


def test_translations_take_three_generator_passes_with_the_outputs_of_separate_calls():
    """G_ab on (a, b), G_ba on (b, a, G_ab(a)), G_ab on G_ba(b): each image as its own call makes it."""
    model = CycleGANModel(tiny_config(batch=1))
    a, b = jt.array(images(1, 32, seed=7)), jt.array(images(1, 32, seed=8))
    calls = []
    for name in ("generator_ab", "generator_ba"):
        net = getattr(model, name)
        net.register_forward_hook(lambda module, inputs, output, name=name: calls.append((name, inputs[0].shape[0])))
    out = model.translations(a, b)
    for net in (model.generator_ab, model.generator_ba):
        net.remove_forward_hook()
    assert calls == [("generator_ab", 2), ("generator_ba", 3), ("generator_ab", 1)], calls
    g_ab, g_ba = model.generator_ab, model.generator_ba
    expected = {"fake_b": g_ab(a), "identity_b": g_ab(b), "fake_a": g_ba(b), "identity_a": g_ba(a),
                "cycle_a": g_ba(g_ab(a)), "cycle_b": g_ab(g_ba(b))}
    assert set(out) == set(expected)
    for name, image in expected.items():
        compare(name, out[name], image.numpy(), atol=1e-5, rtol=0)


# ----- losses and their gradients -------------------------------------------------------------
@pytest.fixture(scope="module")
def loss_setup():
    """The model and the float64 reference on the same tiny nets, and one batch of each domain."""
    model = CycleGANModel(tiny_config(batch=2))
    nets = reference_nets(TINY["ngf"], TINY["ndf"], TINY["blocks"])
    load_model(model, nets)
    nets = {name: net.double() for name, net in nets.items()}
    return model, nets, images(2, 32, seed=5), images(2, 32, seed=6)


def gradient_check(label, jt_loss, jt_net, th_loss, th_net):
    """Every dL/dW of `jt_net` against the reference's, within GRADIENT_RTOL * max |dL/dW|."""
    jt_state = jt_net.state_dict()
    th_params = dict(th_net.named_parameters())
    jt_grads = jt.grad(jt_loss, [jt_state[name] for name in th_params])
    th_grads = torch.autograd.grad(th_loss, list(th_params.values()), retain_graph=True)
    scale = max(float(g.abs().max()) for g in th_grads)
    assert scale > 0, f"{label}: the reference has no gradient"
    worst = max(max_abs_diff(g, e) for g, e in zip(jt_grads, th_grads))
    print(f"{label}: worst max abs diff {worst:.2e}, largest |dL/dW| {scale:.2e}")
    for name, g, expected in zip(th_params, jt_grads, th_grads):
        assert_close(f"{label} d/d{name}", g, expected, atol=GRADIENT_RTOL * scale)


def test_generator_loss_terms_and_their_gradients_match_the_reference(loss_setup):
    """LSGAN of both translations, cycle L1 (lambda 10), identity L1 (0.5 lambda) and their sum."""
    model, nets, a, b = loss_setup
    real_a, real_b = jt.array(a), jt.array(b)
    loss, terms = model.generator_loss(real_a, real_b, model.translations(real_a, real_b))
    expected, _, _ = ref.generator_losses(nets, torch.from_numpy(a).double(), torch.from_numpy(b).double(),
                                          LAMBDA, IDENTITY)
    pairs = {"L_G": (loss, expected["total"]),
             "adversarial": (terms["g_adversarial"], expected["gan_a2b"] + expected["gan_b2a"]),
             "cycle": (terms["cycle"], (expected["cycle_a"] + expected["cycle_b"]) / LAMBDA),
             "identity": (terms["identity"], (expected["idt_a"] + expected["idt_b"]) / (LAMBDA * IDENTITY))}
    for label, (jt_term, th_term) in pairs.items():
        compare(label, jt_term, th_term.reshape(1), atol=VALUE_ATOL, rtol=0)
        for jt_name, th_name in (("generator_ab", "g_ab"), ("generator_ba", "g_ba")):
            gradient_check(f"{label} / {jt_name}", jt_term, model.modules()[jt_name], th_term, nets[th_name])


def test_discriminator_losses_and_their_gradients_match_the_reference(loss_setup):
    """Half the LSGAN loss of each discriminator on real images and on fakes."""
    model, nets, a, b = loss_setup
    fake_a, fake_b = images(2, 32, seed=7), images(2, 32, seed=8)
    loss, terms = model.discriminator_loss(*(jt.array(x) for x in (a, b, fake_a, fake_b)))
    double = [torch.from_numpy(x).double() for x in (a, b, fake_a, fake_b)]
    expected = {"d_a": ref.discriminator_loss(nets["d_a"], double[0], double[2]),
                "d_b": ref.discriminator_loss(nets["d_b"], double[1], double[3])}
    compare("L_D", loss, (expected["d_a"] + expected["d_b"]).reshape(1), atol=VALUE_ATOL, rtol=0)
    for name, jt_name in (("d_a", "discriminator_a"), ("d_b", "discriminator_b")):
        compare(name, terms[name], expected[name].reshape(1), atol=VALUE_ATOL, rtol=0)
        gradient_check(f"{name} / {jt_name}", terms[name], model.modules()[jt_name], expected[name], nets[name])


def test_identity_weight_zero_drops_the_identity_term():
    model = CycleGANModel(load_config("cyclegan", False, None, [{"model": dict(TINY), "loss": {"identity": 0.0}}]))
    real = jt.array(images(1, 32, seed=9))
    translations = model.translations(real, real)
    assert set(translations) == {"fake_a", "fake_b", "cycle_a", "cycle_b"}, "no identity translations are computed"
    _, terms = model.generator_loss(real, real, translations)
    assert "identity" not in terms and {"g_adversarial", "cycle"} <= set(terms)


# ----- the image pool and the learning rate ----------------------------------------------------
def test_image_pool_makes_the_reference_choices_with_the_same_draws():
    batches = [images(2, 8, seed=20 + k) for k in range(12)]
    jt_pool, th_pool = ImagePool(5), ref.TorchImagePool(5)
    jt_rng, th_rng = np.random.RandomState(3), np.random.RandomState(3)
    shown = [jt_pool.query(jt.array(x), jt_rng).numpy() for x in batches]
    expected = [th_pool.query(torch.from_numpy(x), th_rng).numpy() for x in batches]
    for step, (got, want) in enumerate(zip(shown, expected)):
        np.testing.assert_array_equal(got, want, err_msg=f"pool output of batch {step}")
    assert jt_rng.randint(10 ** 6) == th_rng.randint(10 ** 6), "both pools drew as many numbers"


def test_image_pool_passes_the_first_images_then_swaps_about_half_with_stored_ones():
    pool, rng = ImagePool(4), np.random.RandomState(0)
    batches = [images(1, 4, seed=100 + k) for k in range(404)]
    shown = [pool.query(jt.array(x), rng).numpy() for x in batches]
    for k in range(4):
        np.testing.assert_array_equal(shown[k], batches[k])        # filling: every image passes
    swapped = [k for k in range(4, 404) if not np.array_equal(shown[k], batches[k])]
    assert 160 <= len(swapped) <= 240, f"{len(swapped)} of 400 swapped, expected about half"
    for k in swapped:                                               # an earlier fake, never a new one
        assert any(np.array_equal(shown[k], batches[j]) for j in range(k)), k
    x = images(3, 4, seed=1)
    np.testing.assert_array_equal(ImagePool(0).query(jt.array(x), rng).numpy(), x)   # size 0: no pool
    restored = ImagePool(4)
    restored.load_state(pool.state())
    np.testing.assert_array_equal(restored.state(), pool.state())


def test_learning_rate_is_constant_then_decays_as_the_reference_policy():
    iters = 10
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, ref.linear_policy(iters // 2, iters - iters // 2))
    expected = []
    for _ in range(iters):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    factors = [decay_factor(step, iters, 0.5) for step in range(iters)]
    assert factors == pytest.approx(expected, abs=1e-12)
    assert factors[:5] == [1.0] * 5 and np.allclose(np.diff(factors[4:]), -1 / 6) and factors[-1] > 0
    model = CycleGANModel(tiny_config(iters=iters))
    model.decay_learning_rate(7)
    assert (model.optimizer_g.lr, model.optimizer_d.lr) == pytest.approx((2e-4 * factors[7],) * 2)


# ----- three training steps ----------------------------------------------------------------------
def test_three_training_steps_match_the_reference_weight_by_weight():
    """Batch 2, a pool of 2 (so that steps 2 and 3 draw swaps), 3 steps with the lr decaying from
    step 2: every weight of G_ab, G_ba, D_a and D_b against the float64 reference."""
    model = CycleGANModel(tiny_config(batch=2, pool=2, iters=3))
    nets = reference_nets(TINY["ngf"], TINY["ndf"], TINY["blocks"], seed=30)
    load_model(model, nets)
    initial = {name: ref.numpy_state(net) for name, net in nets.items()}
    nets = {name: net.double() for name, net in nets.items()}
    phase = FixedSchedule(32, 2).phase(0)
    data = [(images(2, 32, seed=40 + k), images(2, 32, seed=50 + k)) for k in range(3)]
    for step, (a, b) in enumerate(data):
        context = StepContext(phase=phase, step=step, images=2 * step, rng=np.random.RandomState(60 + step),
                              world=1, update=lambda optimizer, loss, name: optimizer.step(loss))
        model.train_step({"a": iter([jt.array(a)]), "b": iter([jt.array(b)])}, context)
    generators = list(nets["g_ab"].parameters()) + list(nets["g_ba"].parameters())
    discriminators = list(nets["d_a"].parameters()) + list(nets["d_b"].parameters())
    optimizer_g, optimizer_d = EpsHatAdam(generators, 2e-4, (0.5, 0.999)), EpsHatAdam(discriminators, 2e-4, (0.5, 0.999))
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, ref.linear_policy(1, 2)) for o in (optimizer_g, optimizer_d)]
    pools = {"a": ref.TorchImagePool(2), "b": ref.TorchImagePool(2)}
    for step, (a, b) in enumerate(data):
        ref.training_step(nets, optimizer_g, optimizer_d, pools, torch.from_numpy(a).double(),
                          torch.from_numpy(b).double(), np.random.RandomState(60 + step))
        for scheduler in schedulers:
            scheduler.step()
    x = images(2, 32, seed=70)
    for jt_name, th_name in (("generator_ab", "g_ab"), ("generator_ba", "g_ba"),
                             ("discriminator_a", "d_a"), ("discriminator_b", "d_b")):
        jt_net, th_net = model.modules()[jt_name], nets[th_name]
        jt_state, expected = jt_net.state_dict(), ref.numpy_state(th_net)
        moved = max(max_abs_diff(expected[n], v) for n, v in initial[th_name].items())
        worst = max(max_abs_diff(jt_state[n], v) for n, v in expected.items())
        print(f"{jt_name} after 3 steps: worst max abs diff {worst:.2e}, largest change {moved:.2e}")
        assert moved > 2e-4, f"{jt_name}: three Adam steps move the weights (largest change {moved:.1e})"
        for name, value in expected.items():
            assert_close(f"{jt_name}.{name} after 3 steps", jt_state[name], value, atol=WEIGHT_ATOL)
        with torch.no_grad():
            reference_output = th_net(torch.from_numpy(x).double())
        jt_net.eval()
        compare(f"{jt_name} output after 3 steps", jt_net(jt.array(x)), reference_output)


def test_the_configuration_refuses_what_cyclegan_cannot_do_in_one_sentence():
    for override, message in (({"loss": {"name": "wgan-gp"}}, "loss.name must be one of lsgan, got 'wgan-gp'"),
                              ({"train": {"n_sample": 7}}, "train.n_sample must be an integer from 1 to 6, got 7"),
                              ({"train": {"metrics": "swd"}}, "cyclegan does not take; drop --metrics"),
                              ({"optim": {"decay_start": 1.5}}, r"optim.decay_start must be a number in \[0, 1\]"),
                              ({"model": {"size": 16}}, "model.size must be a power of two from 32 to 1024")):
        with pytest.raises(ConfigError, match=message):
            CycleGANModel(load_config("cyclegan", False, None, [{"model": dict(TINY)}, override]))


# ----- train.py and generate.py ---------------------------------------------------------------
def run_script(script, *args, cwd):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


def test_cyclegan_trains_on_two_lmdbs_resumes_and_translates_a_folder(tiny_lmdb, tmp_path, image_folder):
    """Domains of 24 and 5 images; one-sentence refusals of a missing, mismatched, repeated or absent
    second domain; train, resume, translate a folder (b2a), the SWD of translated and untranslated
    images against the target domain, refuse latent figures."""
    folder = image_folder({f"{k}.png": shape_image(k + 5).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
                           for k in range(5)} | {"notes.txt": b"not an image"})
    other, small = tmp_path / "other", tmp_path / "small"
    prepare_lmdb(folder, other, sizes=(16, 32), progress=False)
    prepare_lmdb(folder, small, sizes=(8, 16), progress=False)
    tiny = ["--arch", "cyclegan", "--size", 32, "--set", "model.ngf=8", "--set", "model.ndf=8",
            "--set", "model.blocks=1", "--workers", 0, "--no-progress", "--sample-every", 100, "--name", "t-cg"]
    for second, message in ((tmp_path / "missing", "missing does not exist"),
                            (small, "small has no 32 px images, it has sizes 8, 16; choose one of them"),
                            (tiny_lmdb, "cyclegan got the same LMDB twice")):
        refused = run_script("train.py", tiny_lmdb, second, *tiny, "--iters", 3, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr and message in last_line(refused)
    alone = run_script("train.py", tiny_lmdb, *tiny, "--iters", 3, cwd=tmp_path)
    assert alone.returncode == 2 and last_line(alone).endswith(
        "cyclegan trains on 2 LMDBs, got 1; pass `train.py LMDB_A LMDB_B --arch cyclegan`")
    trained = run_script("train.py", tiny_lmdb, other, *tiny, "--iters", 3, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    resumed = run_script("train.py", tiny_lmdb, other, "--arch", "cyclegan", "--iters", 4, "--name", "t-cg",
                         "--resume", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and "at step 3" in resumed.stderr, resumed.stderr
    with Image.open(tmp_path / "sample" / "t-cg" / "0000004.png") as grid:
        assert grid.size == (2 + 6 * 34, 2 + 6 * 34)             # 6 x 6 cells of 32 px
    translated = run_script("generate.py", "-g", "checkpoint/t-cg", "--translate", folder, "--direction", "b2a",
                            "--nrow", 2, cwd=tmp_path)
    assert translated.returncode == 0, translated.stderr
    outputs = sorted(p.name for p in (tmp_path / "results" / "t-cg-0000004-b2a").iterdir())
    assert outputs == [f"{k}.png" for k in range(5)]             # notes.txt is not an image file
    with Image.open(tmp_path / "results" / "t-cg-0000004-b2a.png") as figure:
        assert figure.size == (2 + 6 * 34, 2 + 3 * 34)          # 3 rows of 2 (input, translation, reconstruction)
    evaluated = run_script("scripts/evaluate.py", other, "-g", "checkpoint/t-cg", "--translate", tiny_lmdb, "--n", 8,
                           cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    record = json.loads((tmp_path / "checkpoint" / "t-cg" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["direction"] == "a2b" and record["step"] == 4
    for kind in ("translated", "untranslated"):                  # 8 images of A (translated or not) vs 5 of B
        assert record[kind]["n_fake"] == 8 and record[kind]["n_real"] == 5 and record[kind]["swd"] > 0
    assert record["translated"]["swd"] != record["untranslated"]["swd"]
    refused = run_script("scripts/evaluate.py", other, "-g", "checkpoint/t-cg", cwd=tmp_path)
    assert refused.returncode == 2 and "translate images instead of drawing them" in last_line(refused)
    for flags, message in ((["--walk"], "--walk is a figure of latents, which do not apply to cyclegan"),
                           ([], "is a cyclegan checkpoint, which translates images instead of drawing them")):
        refused = run_script("generate.py", "-g", "checkpoint/t-cg", *flags, cwd=tmp_path)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr and message in last_line(refused)
