"""Benchmark one training iteration of jgan against the PyTorch reference (tests/reference).

    python scripts/bench.py --quick                       # indicative table, < 10 min on 2 cores
    python scripts/bench.py                               # every row at the presets' batches
    python scripts/bench.py --archs wgan-gp stylegan --sizes 32 --batch 16 --json bench.json

An iteration is everything one generator step costs: n_critic critic steps with their penalties,
the generator step, and for StyleGAN the average-latent update and the EMA, at a fade-in
(alpha ~ 0.5, style mixing 0.9, WGAN-GP + drift; 8 px is the grown first phase). Both frameworks
get the same synthetic images (uniform in [-1, 1], drawn once: data loading is timed on neither
side), the same shapes, batch and widths, and the same number of threads (OMP_NUM_THREADS and
torch.set_num_threads). Each framework runs in its own worker process, so that neither one's
memory or thread pool disturbs the other; the parent alternates them iteration by iteration
(jgan first on even repeats, torch first on odd ones) and takes medians.

Columns: median seconds per iteration of each side (the JSON also keeps every time and the
minimum, the better estimate when other processes share the cores), speedup = torch_s / jgan_s (> 1: jgan is
faster), jgan's warm-up (its first iterations: Jittor compiles or loads its kernels) and the kernels
it compiled into Jittor's cache meanwhile (the cache is shared with other processes of the user),
recompiles (kernels that ran in the check iterations after the timed ones but in none of the
warm-up iterations), and the peak resident set (VmHWM) of each worker process, which includes the
framework itself. The parent imports neither framework; it speaks to the workers in JSON lines.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jgan import registry  # noqa: E402  (imports no Jittor)

PROGRESSIVE_SIZES = (8, 16, 32, 64)
FIXED_SIZES = (32, 64)
QUICK = {"batch": 8, "repeats": 5, "warmup": 2, "sizes": (32,), "progressive_sizes": (8, 16, 32)}
NO_MIXING = 10 ** 6     # a style-mixing crossover beyond every layer (as jgan.models.stylegan's)
SYNTHETIC_BATCHES = 4   # distinct image batches each side cycles through
ANSWER_FD = "BENCH_ANSWER_FD"   # workers answer on this descriptor: their stdout is the frameworks'


def synthetic_images(batch, size, count=SYNTHETIC_BATCHES, seed=0):
    """`count` image batches (B, 3, size, size), float32 uniform in [-1, 1]: both sides get these."""
    import numpy as np
    rng = np.random.RandomState(seed)
    return [rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32) for _ in range(count)]


def memory_mb():
    """(resident set now, its high-water mark) of this process in MiB, from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


# ----- the PyTorch side -------------------------------------------------------------------------
class TorchIteration:
    """One training iteration of the PyTorch reference nets, laid out as jgan's training step:
    StyleGAN's reference for a styled architecture, PGGAN's for another progressive one, the
    DCGAN family's otherwise."""

    def __init__(self, config, images, device):
        import torch
        sys.path.insert(0, str(ROOT / "tests"))
        from reference import losses_torch
        self.torch, self.losses, self.device = torch, losses_torch, torch.device(device)
        self.config, self.arch = config, config["arch"]
        self.progressive = registry.get(self.arch).progressive
        self.styled = registry.get(self.arch).styled
        model, optim, train = config["model"], config["optim"], config["train"]
        self.loss = dict(config["loss"])
        self.loss_name = self.loss.pop("name")
        self.n_critic, self.ema_decay = train["n_critic"], train["ema"]
        self.images = [torch.from_numpy(b).to(self.device) for b in images]
        self.count = 0
        torch.manual_seed(0)
        if self.styled:
            from reference import stylegan_torch
            self.latent = model["code_dim"]
            self.generator = stylegan_torch.StyledGenerator(model["code_dim"], model["n_mlp"],
                                                            model["channels"], model["fused_from"])
            self.discriminator = stylegan_torch.Discriminator(model["channels"], model["fused_from"])
            self.w_avg = torch.zeros(1, self.latent, device=self.device)
            self.mixing = config["progressive"]["mixing"]
        elif self.progressive:
            from reference import pggan_torch
            self.latent = model["code_dim"]
            self.generator, self.discriminator = pggan_torch.torch_networks(model)
        else:
            from reference.dcgan_torch import torch_networks
            self.latent = model["nz"]
            self.generator, self.discriminator = torch_networks(
                self.arch, model["size"], model["nz"], model["ngf"], model["ndf"],
                model.get("critic_norm", "instance"))
        self.generator.to(self.device).train()
        self.discriminator.to(self.device).train()
        self.generator_ema = None
        if self.ema_decay > 0:
            import copy
            self.generator_ema = copy.deepcopy(self.generator).eval()
            for param in self.generator_ema.parameters():
                param.requires_grad_(False)
        self.optimizer_g = self.optimizer(self.generator_groups(optim), optim, optim["lr_g"])
        self.optimizer_d = self.optimizer(self.discriminator.parameters(), optim, optim["lr_d"])

    def generator_groups(self, optim):
        """rosinality's groups: the mapping network at lr * lr_mlp (0.01), the rest at lr."""
        if not self.styled:
            return [{"params": list(self.generator.parameters()), "lr": optim["lr_g"]}]
        lr_mlp = self.config["model"].get("lr_mlp", 0.01)
        return [{"params": list(self.generator.generator.parameters()), "lr": optim["lr_g"]},
                {"params": list(self.generator.style.parameters()), "lr": optim["lr_g"] * lr_mlp}]

    def optimizer(self, params, optim, lr):
        if optim["name"] == "rmsprop":
            return self.torch.optim.RMSprop(params, lr, eps=optim.get("eps", 1e-8),
                                            alpha=optim.get("alpha", 0.99))
        return self.torch.optim.Adam(params, lr, betas=tuple(optim["betas"]))

    def generate(self, batch, level, alpha):
        torch = self.torch
        if not self.progressive:
            return self.generator(torch.randn(batch, self.latent, device=self.device))
        if not self.styled:
            return self.generator(torch.randn(batch, self.latent, device=self.device), level, alpha)
        noise = [tuple(torch.randn(batch, 1, 4 * 2 ** i, 4 * 2 ** i, device=self.device)
                       for _ in range(2)) for i in range(level + 1)]
        z = [torch.randn(batch, self.latent, device=self.device) for _ in range(2)]
        mixes = level > 0 and float(torch.rand(())) < self.mixing
        crossover = int(torch.randint(1, level + 1, ())) if mixes else NO_MIXING
        return self.generator(z, noise, level, alpha, crossover=crossover)

    def critic(self, level, alpha):
        if not self.progressive:
            return self.discriminator
        return lambda images: self.discriminator(images, level, alpha).view(-1)

    def step(self, optimizer, loss):
        """jgan checks every loss for finiteness on the host before it steps; so does this side."""
        if not self.torch.isfinite(loss).item():
            raise FloatingPointError("the PyTorch reference diverged")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def iteration(self, level, alpha):
        torch = self.torch
        critic = self.critic(level, alpha)
        batch = self.images[0].shape[0]
        for _ in range(self.n_critic):
            real = self.images[self.count % len(self.images)]
            self.count += 1
            with torch.no_grad():
                fake = self.generate(batch, level, alpha)
            eps = torch.rand(batch, 1, 1, 1, device=self.device)
            d_loss, _ = self.losses.discriminator_loss(self.loss_name, critic, real, fake, eps,
                                                       **self.loss)
            self.step(self.optimizer_d, d_loss)
            if "clip" in self.loss:   # WGAN's weight clipping
                self.losses.clip_weights(self.discriminator, self.loss["clip"])
        self.discriminator.requires_grad_(False)
        g_loss = self.losses.generator_loss(self.loss_name, critic, self.generate(batch, level, alpha))
        self.step(self.optimizer_g, g_loss)
        self.discriminator.requires_grad_(True)
        with torch.no_grad():
            if self.styled:
                w = self.generator.style(torch.randn(batch, self.latent, device=self.device))
                self.w_avg.mul_(0.995).add_(w.mean(0, keepdim=True), alpha=0.005)
            if self.generator_ema is not None:
                for ema, param in zip(self.generator_ema.parameters(), self.generator.parameters()):
                    ema.mul_(self.ema_decay).add_(param, alpha=1 - self.ema_decay)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


class TorchTranslationIteration:
    """One training step of the PyTorch CycleGAN reference (tests/reference/cyclegan_torch.py),
    laid out as jgan.models.cyclegan's: both generators, then both discriminators on pooled fakes;
    domains a and b take the synthetic batches in turn, as jgan's streams do in jgan.benchmark."""

    def __init__(self, config, images, device):
        import numpy as np
        import torch
        sys.path.insert(0, str(ROOT / "tests"))
        from reference import cyclegan_torch
        self.torch, self.reference, self.device = torch, cyclegan_torch, torch.device(device)
        model, optim, loss = config["model"], config["optim"], config["loss"]
        blocks = model["blocks"] or (9 if model["size"] >= 256 else 6)
        torch.manual_seed(0)
        self.nets = {name: cyclegan_torch.init_weights(net).to(self.device).train() for name, net in (
            ("g_ab", cyclegan_torch.TorchResnetGenerator(model["ngf"], blocks)),
            ("g_ba", cyclegan_torch.TorchResnetGenerator(model["ngf"], blocks)),
            ("d_a", cyclegan_torch.TorchPatchDiscriminator(model["ndf"], model["d_layers"])),
            ("d_b", cyclegan_torch.TorchPatchDiscriminator(model["ndf"], model["d_layers"])))}
        parameters = {side: [p for name in names for p in self.nets[name].parameters()]
                      for side, names in (("g", ("g_ab", "g_ba")), ("d", ("d_a", "d_b")))}
        self.optimizer_g = torch.optim.Adam(parameters["g"], optim["lr_g"], betas=tuple(optim["betas"]))
        self.optimizer_d = torch.optim.Adam(parameters["d"], optim["lr_d"], betas=tuple(optim["betas"]))
        self.pools = {side: cyclegan_torch.TorchImagePool(config["train"]["pool"]) for side in ("a", "b")}
        self.weights = (loss["cycle"], loss["identity"])
        self.images = [torch.from_numpy(b).to(self.device) for b in images]
        self.rng, self.count = np.random.RandomState(0), 0

    def iteration(self, level, alpha):
        real_a, real_b = (self.images[(self.count + k) % len(self.images)] for k in (0, 1))
        self.count += 2
        self.reference.training_step(self.nets, self.optimizer_g, self.optimizer_d, self.pools, real_a, real_b,
                                     self.rng, *self.weights)
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


# ----- the workers ------------------------------------------------------------------------------
def jgan_worker(setup, answer, commands):
    sys.path.insert(0, str(ROOT))
    from jgan import runtime
    device = runtime.init(setup["device"])
    import jittor as jt
    from jgan import benchmark
    config = benchmark.bench_config(setup["arch"], setup["size"], setup["batch"], setup["tiny"],
                                    has_cuda=device == "cuda")
    bench = benchmark.IterationBench(config, synthetic_images)
    phase = bench.phase()
    answer({"config": config, "device": device, "level": phase.level, "alpha": phase.alpha,
            "batch": phase.batch, "n_critic": config["train"]["n_critic"],
            "setup_mb": memory_mb()[0], "jittor": jt.__version__})
    for command in commands:
        if command["cmd"] == "iter":
            seconds, phase = bench.iteration(command.get("log"))
            answer({"seconds": seconds, "level": phase.level, "alpha": phase.alpha})
        elif command["cmd"] == "finish":
            answer({"peak_mb": memory_mb()[1], "recompiled": bench.recompiled(),
                    "compiled": bench.compiled})
            return


def torch_worker(setup, answer, commands):
    import time

    import torch
    torch.set_num_threads(setup["threads"])
    if setup["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("Jittor runs on CUDA but this PyTorch has no CUDA device; pass --device cpu")
    images = synthetic_images(setup["batch"], setup["image_size"])
    iteration = TorchTranslationIteration if registry.get(setup["config"]["arch"]).translates else TorchIteration
    bench = iteration(setup["config"], images, setup["device"])
    answer({"setup_mb": memory_mb()[0], "threads": torch.get_num_threads(), "torch": torch.__version__})
    for command in commands:
        if command["cmd"] == "iter":
            started = time.perf_counter()
            bench.iteration(command["level"], command["alpha"])
            answer({"seconds": time.perf_counter() - started})
        elif command["cmd"] == "finish":
            peak = memory_mb()[1]
            device_peak = (torch.cuda.max_memory_allocated() / 2 ** 20
                           if setup["device"] == "cuda" else None)
            answer({"peak_mb": peak, "device_peak_mb": device_peak})
            return


def serve(side):
    """Worker main loop: JSON commands on stdin, JSON answers on the descriptor named by ANSWER_FD."""
    channel = os.fdopen(int(os.environ[ANSWER_FD]), "w", buffering=1)

    def answer(message):
        channel.write(json.dumps(message) + "\n")

    lines = (json.loads(line) for line in sys.stdin)
    setup = next(lines)
    try:
        (jgan_worker if side == "jgan" else torch_worker)(setup, answer, lines)
    except Exception as error:   # the parent prints it as the row's failure
        answer({"error": f"{type(error).__name__}: {error}"})
        raise


class Worker:
    """A worker process of one framework for one row."""

    def __init__(self, side, setup, threads):
        read, write = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   **{ANSWER_FD: str(write)})
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", side],
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, text=True, env=env,
            pass_fds=(write,))
        os.close(write)
        self.answers = os.fdopen(read)
        self.side = side
        self.ready = self.ask(setup)

    def ask(self, message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.answers.readline()
        reply = json.loads(line) if line else {"error": "the worker exited"}
        if "error" in reply:
            self.log.seek(0)
            tail = "".join(self.log.readlines()[-15:])
            self.close()
            raise RuntimeError(f"{self.side} worker failed: {reply['error']}\n{tail}")
        return reply

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.answers.close()
        self.log.close()


# ----- the parent -------------------------------------------------------------------------------
def bench_row(arch, size, args):
    """Run one row with a jgan and a torch worker, alternating; returns its JSON object."""
    setup = {"arch": arch, "size": size, "batch": args.batch, "tiny": args.tiny,
             "device": args.device, "threads": args.threads}
    jgan = Worker("jgan", setup, args.threads)
    ready = jgan.ready
    torch_setup = {"config": ready["config"], "device": ready["device"], "threads": args.threads,
                   "batch": ready["batch"], "image_size": size}
    torch = Worker("torch", torch_setup, args.threads)
    times = {"jgan": [], "torch": [], "jgan_warmup": [], "torch_warmup": []}
    phase = {"level": ready["level"], "alpha": ready["alpha"]}

    def run(side, log=None):
        if side == "jgan":
            reply = jgan.ask({"cmd": "iter", **({"log": log} if log else {})})
            phase.update(level=reply["level"], alpha=reply["alpha"])
        else:
            reply = torch.ask({"cmd": "iter", **phase})
        return reply["seconds"]

    try:
        for _ in range(args.warmup):
            times["jgan_warmup"].append(run("jgan", "warmup"))
            times["torch_warmup"].append(run("torch"))
        for repeat in range(args.repeats):
            for side in (("jgan", "torch") if repeat % 2 == 0 else ("torch", "jgan")):
                times[side].append(run(side))
        for _ in range(args.check):
            run("jgan", "check")
        jgan_end, torch_end = jgan.ask({"cmd": "finish"}), torch.ask({"cmd": "finish"})
    finally:
        jgan.close()
        torch.close()
    jgan_s, torch_s = statistics.median(times["jgan"]), statistics.median(times["torch"])
    return {"arch": arch, "size": size, "batch": ready["batch"], "n_critic": ready["n_critic"],
            "alpha": round(ready["alpha"], 4), "device": ready["device"], "threads": args.threads,
            "tiny": args.tiny, "data": "synthetic", "repeats": args.repeats,
            "load_average": os.getloadavg()[0],
            "jgan_s": jgan_s, "torch_s": torch_s, "speedup": torch_s / jgan_s,
            "jgan_min_s": min(times["jgan"]), "torch_min_s": min(times["torch"]),
            "jgan_times": times["jgan"], "torch_times": times["torch"],
            "jgan_warmup_s": sum(times["jgan_warmup"]), "torch_warmup_s": sum(times["torch_warmup"]),
            "jgan_first_iter_s": times["jgan_warmup"][0] if times["jgan_warmup"] else None,
            "kernels_compiled": jgan_end["compiled"], "recompiles": len(jgan_end["recompiled"]),
            "recompiled_kernels": jgan_end["recompiled"][:5], "check_iterations": args.check,
            "jgan_peak_mb": jgan_end["peak_mb"], "torch_peak_mb": torch_end["peak_mb"],
            "jgan_setup_mb": ready["setup_mb"], "torch_setup_mb": torch.ready["setup_mb"],
            "torch_device_peak_mb": torch_end["device_peak_mb"],
            "versions": {"jittor": ready["jittor"], "torch": torch.ready["torch"]}}


COLUMNS = (("arch", "{:<8}", "arch"), ("size", "{:>4}", "px"), ("batch", "{:>5}", "batch"),
           ("n_critic", "{:>2}", "nc"), ("jgan_s", "{:>8.3f}", "jgan s"), ("torch_s", "{:>8.3f}", "torch s"),
           ("speedup", "{:>7.2f}", "speedup"), ("jgan_warmup_s", "{:>8.1f}", "warmup s"),
           ("kernels_compiled", "{:>8}", "compiled"), ("recompiles", "{:>6}", "recomp"),
           ("jgan_peak_mb", "{:>9.0f}", "jgan MiB"), ("torch_peak_mb", "{:>9.0f}", "torch MiB"))


def format_row(row):
    return " ".join(fmt.format(row[key]) for key, fmt, _ in COLUMNS)


def header():
    """Column titles, aligned as format_row aligns the values (left for text, right for numbers)."""
    titles = []
    for _, fmt, title in COLUMNS:
        width = int(fmt.strip("{}:<>").rstrip("fd").split(".")[0])
        titles.append(title.ljust(width) if "<" in fmt else title.rjust(width))
    return " ".join(titles)


def rows_of(args):
    for arch in args.archs:
        progressive = registry.get(arch).progressive
        for size in (args.sizes or (args.progressive_sizes if progressive else args.fixed_sizes)):
            if not progressive and size < 16:
                print(f"bench: skipping {arch} at {size} px (DCGAN nets start at 16 px)", file=sys.stderr)
                continue
            yield arch, size


def build_parser():
    parser = argparse.ArgumentParser(description="Time one training iteration of jgan and of the "
                                     "PyTorch reference, alternating, in separate worker processes.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--archs", nargs="+", choices=registry.names(),
                        default=list(registry.TABLE_ARCHS) + list(registry.names(translates=True)))
    parser.add_argument("--sizes", nargs="+", type=int,
                        help=f"image sizes of every arch (default: progressive archs such as stylegan "
                             f"{PROGRESSIVE_SIZES}, the DCGAN family {FIXED_SIZES})")
    parser.add_argument("--batch", type=int, help="batch of every row (default: the presets', "
                        f"{QUICK['batch']} with --quick)")
    parser.add_argument("--repeats", type=int,
                        help=f"timed iterations per side (default 10, {QUICK['repeats']} with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed first iterations per side (default 2)")
    parser.add_argument("--check", type=int, default=2,
                        help="jgan iterations after the timed ones that count recompiles")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of both frameworks (OMP_NUM_THREADS, torch.set_num_threads)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (a smoke test of the tool)")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch {QUICK['batch']}, {QUICK['repeats']} repeats, 32 px for the DCGAN "
                             f"family and {QUICK['progressive_sizes']} px for StyleGAN")
    parser.add_argument("--json", type=Path, help="write the rows to this JSON file")
    parser.add_argument("--mpi", action="store_true",
                        help="instead: train.py under mpirun with 1 and 2 ranks at the same global batch "
                             "(s/iter and efficiency; needs --lmdb)")
    parser.add_argument("--lmdb", default="lmdb", help="data for --mpi (made by prepare_data.py)")
    parser.add_argument("--worker", choices=("jgan", "torch"), help=argparse.SUPPRESS)
    return parser


def mpi_seconds_per_iteration(arch, size, batch, ranks, args, folder):
    """Median seconds per step of train.py under `mpirun -np ranks`, after the warm-up steps."""
    iters = args.warmup + args.repeats
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    progressive = registry.get(arch).progressive
    size_flag = "--max-size" if progressive else "--size"
    extra = ["--phase", "1000000", "--init-size", str(size)] if progressive else []
    command = ["mpirun", *root, "--oversubscribe", "-np", str(ranks), "-x", f"OMP_NUM_THREADS={max(1, args.threads // ranks)}",
               sys.executable, str(ROOT / "train.py"), args.lmdb, "--arch", arch, size_flag, str(size), *extra,
               "--batch", str(batch), "--iters", str(iters), "--name", f"mpi{ranks}", "--log-every", "1",
               "--sample-every", str(10 ** 6), "--ckpt-every", str(10 ** 6), "--workers", "0", "--no-progress",
               "--checkpoint-dir", str(folder / "checkpoint"), "--sample-dir", str(folder / "sample")]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "mpirun failed")
    log = [json.loads(line) for line in (folder / "checkpoint" / f"mpi{ranks}" / "log.jsonl").read_text().splitlines()]
    times = [b["seconds"] - a["seconds"] for a, b in zip(log, log[1:])][args.warmup - 1:]
    return statistics.median(times)


def mpi_main(args):
    """1 vs 2 MPI ranks at the same global batch: seconds per iteration and parallel efficiency."""
    rows = []
    print("arch       px batch  1 rank s  2 ranks s  speedup  efficiency")
    for arch, size in rows_of(args):
        batch = args.batch or 16
        with tempfile.TemporaryDirectory() as folder:
            one = mpi_seconds_per_iteration(arch, size, batch, 1, args, Path(folder))
            two = mpi_seconds_per_iteration(arch, size, batch, 2, args, Path(folder))
        row = {"arch": arch, "size": size, "batch": batch, "one_rank_s": one, "two_ranks_s": two,
               "speedup": one / two, "efficiency": one / two / 2, "threads": args.threads}
        rows.append(row)
        print(f"{arch:10s} {size:3d} {batch:5d} {one:9.3f} {two:10.3f} {row['speedup']:8.2f} {row['efficiency']:11.2f}",
              flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    return 0 if rows else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        return serve(args.worker)
    args.repeats = args.repeats or (QUICK["repeats"] if args.quick else 10)
    args.warmup = QUICK["warmup"] if args.warmup is None else args.warmup
    args.batch = args.batch or (QUICK["batch"] if args.quick else None)
    args.fixed_sizes = QUICK["sizes"] if args.quick else FIXED_SIZES
    args.progressive_sizes = QUICK["progressive_sizes"] if args.quick else PROGRESSIVE_SIZES
    if min(args.repeats, args.threads) < 1 or args.warmup < 0 or args.check < 0:
        sys.exit("bench: --repeats and --threads must be at least 1, --warmup and --check at least 0")
    if args.mpi:
        return mpi_main(args)
    print(f"bench: {args.threads} threads per framework, synthetic images, median of "
          f"{args.repeats} iterations after {args.warmup} warm-up ones", file=sys.stderr)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"bench: the load average is already {load:.1f} on {os.cpu_count()} cores; other processes "
              f"slow both sides unevenly (--threads 1 suffers least), so read the times as indicative",
              file=sys.stderr)
    print(header(), flush=True)
    rows = []
    for arch, size in rows_of(args):
        try:
            row = bench_row(arch, size, args)
        except RuntimeError as error:
            print(f"bench: {arch} at {size} px failed: {error}", file=sys.stderr)
            continue
        rows.append(row)
        print(format_row(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
