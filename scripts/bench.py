"""Benchmark one training iteration of jgan against the PyTorch reference (tests/reference).

    python scripts/bench.py --quick                       # indicative table, < 10 min on 2 cores
    python scripts/bench.py                               # every row at the presets' batches
    python scripts/bench.py --archs wgan-gp stylegan --sizes 32 --batch 16 --json bench.json
    python scripts/bench.py --e2e --quick                 # train.py itself against a PyTorch loop

With --e2e (see e2e_main and the README's "Speed"), the unit is a whole run of train.py at a preset's
size, batch and cadence, LMDB reading, logs, sample grids and a checkpoint included, against the
PyTorch loop of tests/reference/training_torch.py; the rest of this docstring is about iterations.

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
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from jgan import registry  # noqa: E402  (imports no Jittor)

PROGRESSIVE_SIZES = (8, 16, 32, 64)
FIXED_SIZES = (32, 64)
ITERATION_ARCHS = registry.TABLE_ARCHS + registry.names(translates=True)
QUICK = {"batch": 8, "repeats": 5, "warmup": 2, "sizes": (32,), "progressive_sizes": (8, 16, 32),
         "presets": (("dcgan", 64, 64),)}   # with --quick, also DCGAN at its preset: 64 px, batch 64
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


# ----- the workers ------------------------------------------------------------------------------
def jgan_worker(setup, answer, commands):
    sys.path.insert(0, str(ROOT))
    from jgan import runtime
    device = runtime.init(setup["device"])
    import jittor as jt
    from jgan import benchmark
    config = benchmark.bench_config(setup["arch"], setup["size"], setup["batch"], setup["tiny"],
                                    has_cuda=device == "cuda")
    config["train"]["precision"] = setup["precision"]
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
    import torch
    torch.set_num_threads(setup["threads"])
    if setup["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("Jittor runs on CUDA but this PyTorch has no CUDA device; pass --device cpu")
    sys.path.insert(0, str(ROOT / "tests"))
    from reference.training_torch import TorchIteration, TorchTranslationIteration, bfloat16_convolutions
    if setup["precision"] == "bf16":
        bfloat16_convolutions()
    family = TorchTranslationIteration if registry.get(setup["config"]["arch"]).translates else TorchIteration
    images = itertools.cycle([torch.from_numpy(b).to(setup["device"])
                              for b in synthetic_images(setup["batch"], setup["image_size"])])
    bench = family(setup["config"], {name: images for name in family.streams}, setup["device"])
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
def bench_row(arch, size, batch, args):
    """Run one row with a jgan and a torch worker, alternating; returns its JSON object."""
    setup = {"arch": arch, "size": size, "batch": batch, "tiny": args.tiny,
             "device": args.device, "threads": args.threads, "precision": args.precision}
    jgan = Worker("jgan", setup, args.threads)
    ready = jgan.ready
    torch_setup = {"config": ready["config"], "device": ready["device"], "threads": args.threads,
                   "batch": ready["batch"], "image_size": size, "precision": args.precision}
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
            "tiny": args.tiny, "precision": args.precision, "data": "synthetic", "repeats": args.repeats,
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


def column_width(fmt):
    return int(fmt.strip("{}:<>").rstrip("fds").split(".")[0])


def format_row(row, columns=COLUMNS):
    """One line of the table; a missing value (None) is a dash."""
    return " ".join("-".rjust(column_width(fmt)) if row.get(key) is None else fmt.format(row[key])
                    for key, fmt, _ in columns)


def header(columns=COLUMNS):
    """Column titles, aligned as format_row aligns the values (left for text, right for numbers)."""
    titles = []
    for _, fmt, title in columns:
        width = column_width(fmt)
        titles.append(title.ljust(width) if "<" in fmt else title.rjust(width))
    return " ".join(titles)


def rows_of(args):
    """(arch, size, batch) of each row: --batch (None: the preset's) at each size, then with --quick
    (and no --sizes or --batch of the user's) the presets' rows of the archs asked for."""
    for arch in args.archs:
        progressive = registry.get(arch).progressive
        for size in (args.sizes or (args.progressive_sizes if progressive else args.fixed_sizes)):
            if not progressive and size < 16:
                print(f"bench: skipping {arch} at {size} px (DCGAN nets start at 16 px)", file=sys.stderr)
                continue
            yield arch, size, args.batch
    for arch, size, batch in args.presets:
        if arch in args.archs:
            yield arch, size, batch


# ----- end to end: train.py against the PyTorch reference loop ----------------------------------
E2E_STEPS = (10, 40)     # the two run lengths (steps) of every arch; their difference removes start-up
# --e2e --quick: a fixed-size net, a penalty with 5 critic steps, a progressive styled one, with run
# lengths whose difference is about 30 s of steps on 2 cores (shorter ones drown in start-up noise)
E2E_QUICK = {"dcgan": (5, 35), "wgan-gp": (3, 11), "stylegan": (10, 110)}
E2E_QUICK_STEPS = (5, 15)  # the run lengths of another arch with --quick
E2E_WARMUP_STEPS = 1     # an untimed run per side first: Jittor compiles its kernels into the cache on first use
E2E_COLUMNS = (("arch", "{:<8}", "arch"), ("size", "{:>4}", "px"), ("batch", "{:>5}", "batch"),
               ("steps", "{:>7}", "steps"), ("side", "{:<5}", "side"), ("images_per_s", "{:>7.1f}", "img/s"),
               ("speedup", "{:>7.2f}", "speedup"), ("fixed_s", "{:>7.1f}", "fixed s"),
               ("step_ms", "{:>8.0f}", "step ms"), ("data_wait_ms", "{:>7.1f}", "data ms"),
               ("host_syncs_per_step", "{:>5.1f}", "syncs"), ("host_sync_ms", "{:>7.0f}", "sync ms"),
               ("log_ms", "{:>6.1f}", "log ms"), ("sample_s", "{:>8.2f}", "sample s"),
               ("checkpoint_s", "{:>6.2f}", "ckpt s"))


def e2e_device(device):
    """auto: CUDA when the driver reports a device (as train.py's auto), else the CPU."""
    if device != "auto":
        return device
    from jgan import runtime   # imports no Jittor
    return "cuda" if runtime.cuda_device_count() else "cpu"


def e2e_plan(arch, args, device):
    """What both sides train for one arch: its preset at the preset's final size (a progressive arch
    as one phase at that size, so that both sides train the same networks), train.py's flags, and
    the configuration, size, batch, level and alpha the PyTorch loop takes."""
    from jgan.config import load_config
    from jgan.schedule import build_schedule
    spec = registry.get(arch)
    config = load_config(arch, device == "cuda", None, [])
    flags = ["--arch", arch, "--device", device, "--precision", args.precision]
    overrides = []
    if spec.progressive:
        size = config["progressive"]["max_size"]
        flags += ["--init-size", str(size)]
        overrides.append({"progressive": {"init_size": size}})
    if args.tiny:
        flags += [f"--set=model.{key}={json.dumps(value)}" for key, value in spec.tiny["model"].items()]
        overrides.append(spec.tiny)
    config = load_config(arch, device == "cuda", None, overrides)
    phase = build_schedule(config).phase(0)
    data = {"images": args.lmdb} if not spec.translates else {"a": args.lmdb, "b": args.lmdb_b}
    return {"arch": arch, "config": config, "flags": flags, "data": data, "size": phase.size,
            "precision": args.precision,
            "batch": phase.batch, "level": phase.level, "alpha": phase.alpha, "device": device}


def timed_run(launch, steps, clock=time.perf_counter):
    """{"steps", "seconds", "parts"} of one run: its wall time by `clock`, start-up and exit included,
    and what `launch(steps)` returns, the Stopwatch totals of the run's parts."""
    started = clock()
    parts = launch(steps)
    return {"steps": steps, "seconds": clock() - started, "parts": parts}


def median_run(runs):
    """Runs of one length -> one: the median of the seconds and of each part's seconds and count."""
    names = {name for run in runs for name in run["parts"]}
    return {"steps": runs[0]["steps"], "seconds": statistics.median(run["seconds"] for run in runs),
            "parts": {name: {key: statistics.median(run["parts"].get(name, {}).get(key, 0) for run in runs)
                             for key in ("seconds", "count")} for name in sorted(names)}}


def run_length_difference(short, long):
    """(seconds per step, fixed seconds) from two runs of different lengths, as
    seconds = fixed + steps * per_step: start-up, the first step's compilation, the last step's
    sample grid and checkpoint and the exit are in both runs and drop out of the difference."""
    if long["steps"] <= short["steps"]:
        raise ValueError(f"the long run ({long['steps']} steps) must be longer than the short one ({short['steps']})")
    per_step = (long["seconds"] - short["seconds"]) / (long["steps"] - short["steps"])
    return per_step, short["seconds"] - short["steps"] * per_step


def side_summary(short, long, batch, train):
    """One side's row: images/s and milliseconds per step of each part from the difference of the
    two runs (so at train.py's default cadence, start-up excluded); seconds per sample grid and per
    checkpoint from the long run, and those spread over their default intervals."""
    per_step, fixed = run_length_difference(short, long)
    steps = long["steps"] - short["steps"]

    def per_step_of(name, key="seconds"):
        return (long["parts"].get(name, {}).get(key, 0) - short["parts"].get(name, {}).get(key, 0)) / steps

    def per_event(name):
        part = long["parts"].get(name)
        return part["seconds"] / part["count"] if part and part["count"] else None

    sample_s, checkpoint_s = per_event("sample"), per_event("checkpoint")
    return {"step_ms": 1e3 * per_step, "images_per_s": batch / per_step if per_step > 0 else None, "fixed_s": fixed,
            "data_wait_ms": 1e3 * per_step_of("data_wait"), "host_syncs_per_step": per_step_of("host_sync", "count"),
            "host_sync_ms": 1e3 * per_step_of("host_sync"), "log_ms": 1e3 * per_step_of("log"),
            "sample_s": sample_s, "checkpoint_s": checkpoint_s,
            "sample_ms_at_default": None if sample_s is None else 1e3 * sample_s / train["sample_every"],
            "checkpoint_ms_at_default": None if checkpoint_s is None else 1e3 * checkpoint_s / train["ckpt_every"],
            "runs": [short, long]}


def e2e_summary(plan, runs, threads):
    """The JSON object of one arch from {side: {steps: [run, ...]}}."""
    row = {"arch": plan["arch"], "size": plan["size"], "batch": plan["batch"], "device": plan["device"],
           "threads": threads, "precision": plan["precision"], "data": "lmdb"}
    for side, by_steps in runs.items():
        short, long = (median_run(by_steps[steps]) for steps in sorted(by_steps))
        row[side] = side_summary(short, long, plan["batch"], plan["config"]["train"])
    row["steps"] = "/".join(str(steps) for steps in sorted(runs["jgan"]))
    measured = row["jgan"]["step_ms"] > 0 and row["torch"]["step_ms"] > 0
    row["speedup"] = row["torch"]["step_ms"] / row["jgan"]["step_ms"] if measured else None
    return row


def e2e_lines(row):
    """The table's two lines of one arch: jgan's (with the speedup) and the PyTorch loop's."""
    shared = {key: row[key] for key in ("arch", "size", "batch", "steps")}
    return [format_row({**shared, "side": "jgan", "speedup": row["speedup"], **row["jgan"]}, E2E_COLUMNS),
            format_row({**shared, "side": "torch", **row["torch"]}, E2E_COLUMNS)]


def e2e_launcher(side, plan, folder, args):
    """launch(steps) for one side: runs train.py (jgan) or the PyTorch loop in a fresh process with
    `args.threads` threads, and returns the Stopwatch totals the process wrote."""
    runs = itertools.count()

    def launch(steps):
        name = f"{plan['arch']}-{side}-{steps}-{next(runs)}"
        parts = folder / f"{name}.json"
        if side == "jgan":
            setup = {"argv": [*plan["data"].values(), *plan["flags"], "--iters", str(steps), "--name", name,
                              "--checkpoint-dir", str(folder / "checkpoint"), "--sample-dir", str(folder / "sample")]}
        else:
            setup = {key: plan[key] for key in ("config", "data", "size", "batch", "level", "alpha", "device",
                                                "precision")}
            setup.update(steps=steps, run_dir=str(folder / "torch" / name), threads=args.threads)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        with open(folder / f"{name}.log", "w+") as log:
            result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", f"e2e-{side}",
                                     "--setup", json.dumps({**setup, "parts": str(parts)})],
                                    stdout=log, stderr=log, env=env)
            if result.returncode:
                log.seek(0)
                tail = "".join(log.readlines()[-15:])
                raise RuntimeError(f"the {side} run of {steps} steps exited with {result.returncode}:\n{tail}")
        return json.loads(parts.read_text())

    return launch


def e2e_steps(arch, args):
    """(short, long) run lengths of one arch: --steps, else the --quick table's, else E2E_STEPS."""
    if args.steps:
        return tuple(args.steps)
    return E2E_QUICK.get(arch, E2E_QUICK_STEPS) if args.quick else E2E_STEPS


def e2e_steps_description(args):
    if args.steps or not args.quick:
        short, long = e2e_steps(None, args)
        return f"{short} and {long} steps"
    return "; ".join(f"{arch} {'/'.join(map(str, e2e_steps(arch, args)))} steps" for arch in args.archs)


def e2e_row(arch, args, device, folder):
    """Both sides of one arch after an untimed warm-up run each, then each run at both lengths
    `args.repeats` times, alternating which side goes first; returns the arch's JSON object."""
    plan = e2e_plan(arch, args, device)
    launchers = {side: e2e_launcher(side, plan, folder, args) for side in ("jgan", "torch")}
    for launch in launchers.values():
        launch(E2E_WARMUP_STEPS)
    runs = {"jgan": {}, "torch": {}}
    turn = 0
    for _ in range(args.repeats):
        for steps in e2e_steps(arch, args):
            for side in ("jgan", "torch") if turn % 2 == 0 else ("torch", "jgan"):
                runs[side].setdefault(steps, []).append(timed_run(launchers[side], steps))
            turn += 1
    return e2e_summary(plan, runs, args.threads)


def e2e_jgan_worker(setup):
    """train.py's main, as `python train.py ARGV` runs it, with a Stopwatch installed; its totals
    are written to setup["parts"] (also when the run fails)."""
    import importlib.util

    from jgan import stopwatch
    from jgan.cli import run
    watch = stopwatch.install(stopwatch.Stopwatch())
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    try:
        run(train.main, train.build_parser(), setup["argv"])
    finally:
        Path(setup["parts"]).write_text(json.dumps(watch.totals()))


def e2e_torch_worker(setup):
    """The PyTorch reference loop (tests/reference/training_torch.py) for setup["steps"] steps."""
    import torch
    torch.set_num_threads(setup["threads"])
    if setup["device"] == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.py runs on CUDA but this PyTorch has no CUDA device; pass --device cpu")
    sys.path.insert(0, str(ROOT / "tests"))
    from jgan.stopwatch import Stopwatch
    from reference.training_torch import TorchTrainingRun, bfloat16_convolutions
    if setup["precision"] == "bf16":
        bfloat16_convolutions()
    watch = Stopwatch()
    try:
        run = TorchTrainingRun(setup["config"], setup["data"], setup["size"], setup["batch"], setup["level"],
                               setup["alpha"], setup["run_dir"], setup["device"], watch)
        run.train(setup["steps"])
    finally:
        Path(setup["parts"]).write_text(json.dumps(watch.totals()))


def second_domain(lmdb, folder):
    """A copy of the LMDB in `folder`: CycleGAN trains on two domains, and train.py refuses one LMDB twice."""
    import shutil
    copy = folder / "domain-b"
    shutil.copytree(lmdb, copy)
    return str(copy)


def e2e_main(args):
    device = e2e_device(args.device)
    print(f"bench: --e2e: train.py and the PyTorch loop at each preset's size and batch, {args.threads} "
          f"threads each, {e2e_steps_description(args)}, {args.repeats} time(s), on {device}",
          file=sys.stderr)
    warn_if_loaded()
    print(header(E2E_COLUMNS), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jgan-e2e-") as folder:
        folder = Path(folder)
        args.lmdb_b = (second_domain(args.lmdb, folder)
                       if any(registry.get(arch).translates for arch in args.archs) else None)
        for arch in args.archs:
            try:
                row = e2e_row(arch, args, device, folder)
            except RuntimeError as error:
                print(f"bench: {arch} failed: {error}", file=sys.stderr)
                continue
            rows.append(row)
            print("\n".join(e2e_lines(row)), flush=True)
            if row["speedup"] is None:
                print(f"bench: {arch}: a long run took no longer than its short run, so the machine was too busy "
                      f"to measure a step; pass longer --steps", file=sys.stderr)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    return 0 if rows else 1


def build_parser():
    parser = argparse.ArgumentParser(description="Time one training iteration of jgan and of the "
                                     "PyTorch reference, alternating, in separate worker processes.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--archs", nargs="+", choices=registry.names(),
                        help=f"architectures (default: {' '.join(ITERATION_ARCHS)}; with --e2e every registered "
                             f"one, {' '.join(E2E_QUICK)} with --e2e --quick)")
    parser.add_argument("--sizes", nargs="+", type=int,
                        help=f"image sizes of every arch (default: progressive archs such as stylegan "
                             f"{PROGRESSIVE_SIZES}, the DCGAN family {FIXED_SIZES})")
    parser.add_argument("--batch", type=int, help="batch of every row (default: the presets', "
                        f"{QUICK['batch']} with --quick)")
    parser.add_argument("--repeats", type=int,
                        help=f"timed iterations per side (default 10, {QUICK['repeats']} with --quick); with "
                             f"--e2e: runs of each length per side (default 1)")
    parser.add_argument("--warmup", type=int, help="untimed first iterations per side (default 2)")
    parser.add_argument("--check", type=int,
                        help="jgan iterations after the timed ones that count recompiles (default 2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of both frameworks (OMP_NUM_THREADS, torch.set_num_threads)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (a smoke test of the tool)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="arithmetic of both sides' convolutions: jgan's train.precision, and in PyTorch "
                             "bfloat16 copies of each convolution's operands (bf16 needs a CPU with AMX or "
                             "AVX-512 BF16)")
    parser.add_argument("--quick", action="store_true",
                        help=f"batch {QUICK['batch']}, {QUICK['repeats']} repeats, 32 px for the DCGAN "
                             f"family and {QUICK['progressive_sizes']} px for StyleGAN, and DCGAN at its "
                             f"preset (64 px, batch 64)")
    parser.add_argument("--json", type=Path, help="write the rows to this JSON file")
    parser.add_argument("--mpi", action="store_true",
                        help="instead: train.py under mpirun with 1 and 2 ranks at the same global batch "
                             "(s/iter and efficiency; needs --lmdb)")
    parser.add_argument("--e2e", action="store_true",
                        help="instead: time train.py itself (LMDB reading, loader threads, logs, sample grids, "
                             "checkpoints) against a PyTorch loop over the same LMDB, every arch at its preset's "
                             "size and batch, and break jgan's time down (needs --lmdb)")
    parser.add_argument("--steps", nargs=2, type=int, metavar=("SHORT", "LONG"),
                        help=f"with --e2e: the two run lengths whose difference removes start-up (default "
                             f"{E2E_STEPS[0]} {E2E_STEPS[1]}; with --quick "
                             f"{', '.join(f'{arch} {short} {long}' for arch, (short, long) in E2E_QUICK.items())}, "
                             f"others {E2E_QUICK_STEPS[0]} {E2E_QUICK_STEPS[1]})")
    parser.add_argument("--lmdb", default="lmdb", help="data for --mpi and --e2e (made by prepare_data.py)")
    parser.add_argument("--worker", choices=("jgan", "torch", "e2e-jgan", "e2e-torch"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
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
    for arch, size, batch in rows_of(args):
        batch = batch or 16
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


class FlagError(Exception):
    """A flag, or a combination of flags, that bench.py cannot run: one sentence, exit code 2."""


E2E_ONLY = ("--steps",)
NOT_E2E = ("--sizes", "--batch", "--warmup", "--check", "--mpi")   # e2e trains the presets' sizes and batches


def given(args, flag):
    value = getattr(args, flag[2:].replace("-", "_"))
    return value not in (None, False)


def check_flags(args):
    """Refuses combinations that mean nothing, before any process starts."""
    if args.e2e:
        wrong = [flag for flag in NOT_E2E if given(args, flag)]
        if wrong:
            raise FlagError(f"{wrong[0]} does not apply to --e2e, which trains every arch at its preset's size "
                            f"and batch; drop {wrong[0]}")
        if args.steps and not 0 < args.steps[0] < args.steps[1]:
            raise FlagError(f"--steps takes two run lengths, the short one first and at least 1, got "
                            f"{args.steps[0]} {args.steps[1]}")
        if not Path(args.lmdb).is_dir():
            raise FlagError(f"--e2e trains on the LMDB {args.lmdb}, which does not exist; make it with "
                            f"`python prepare_data.py --out {args.lmdb} FOLDER` or pass --lmdb")
    else:
        wrong = [flag for flag in E2E_ONLY if given(args, flag)]
        if wrong:
            raise FlagError(f"{wrong[0]} sets the run lengths of --e2e; add --e2e or drop {wrong[0]}")
    if args.precision == "bf16" and args.device == "cuda":
        raise FlagError("--precision bf16 runs the convolutions in oneDNN on the CPU; drop it or pass --device cpu")
    if args.repeats is not None and args.repeats < 1 or args.threads < 1:
        raise FlagError("--repeats and --threads must be at least 1")
    if args.warmup is not None and args.warmup < 0 or args.check is not None and args.check < 0:
        raise FlagError("--warmup and --check must be at least 0")


def warn_if_loaded():
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"bench: the load average is already {load:.1f} on {os.cpu_count()} cores; other processes "
              f"slow both sides unevenly (--threads 1 suffers least), so read the times as indicative",
              file=sys.stderr)


def iteration_defaults(args):
    """Fill in what the per-iteration rows (and --mpi) use where the flags leave it open."""
    args.archs = args.archs or list(ITERATION_ARCHS)
    args.repeats = args.repeats or (QUICK["repeats"] if args.quick else 10)
    args.warmup = QUICK["warmup"] if args.warmup is None else args.warmup
    args.check = 2 if args.check is None else args.check
    args.presets = QUICK["presets"] if args.quick and not (args.sizes or args.batch) else ()
    args.batch = args.batch or (QUICK["batch"] if args.quick else None)
    args.fixed_sizes = QUICK["sizes"] if args.quick else FIXED_SIZES
    args.progressive_sizes = QUICK["progressive_sizes"] if args.quick else PROGRESSIVE_SIZES


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker in ("e2e-jgan", "e2e-torch"):
        return (e2e_jgan_worker if args.worker == "e2e-jgan" else e2e_torch_worker)(json.loads(args.setup))
    if args.worker:
        return serve(args.worker)
    try:
        check_flags(args)
    except FlagError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    if args.e2e:
        args.archs = args.archs or list(E2E_QUICK if args.quick else registry.names())
        args.repeats = args.repeats or 1
        return e2e_main(args)
    iteration_defaults(args)
    if args.mpi:
        return mpi_main(args)
    print(f"bench: {args.threads} threads per framework, synthetic images, median of "
          f"{args.repeats} iterations after {args.warmup} warm-up ones", file=sys.stderr)
    warn_if_loaded()
    print(header(), flush=True)
    rows = []
    for arch, size, batch in rows_of(args):
        try:
            row = bench_row(arch, size, batch, args)
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
