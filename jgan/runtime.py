"""Jittor start-up for jgan: `init()` is the one explicit bootstrap; importing jgan does nothing.

Out of the box Jittor 1.3.11 crashes on a machine that has an `nvcc` binary but no CUDA driver,
and downloads oneDNN from the internet on first import. So the first `init()`, before importing it,
  * hides nvcc from Jittor when no CUDA device can be used (`nvcc_path=""`),
  * on a CUDA machine, has Jittor force-include `cuda_compat/device_prop.h` (Jittor's helper_cuda.h
    reads two device-property fields that CUDA 13 removed) and, with CUDA 13 or later, turns off
    Jittor's cuDNN (`conv_opt=1`, one warning): cuDNN 9, the only one for CUDA 13, lacks the legacy
    RNN API that Jittor's cuDNN ops are built with, and a failed cuDNN build stops Jittor's import,
  * keeps Jittor from downloading cutt, cutlass and (outside MPI) NCCL at its first CUDA import:
    jgan needs none of them there, and a machine offline could not start Jittor at all,
  * points Jittor at Debian's oneDNN (package libdnnl-dev) by laying out the folder Jittor would
    have downloaded, made of symlinks, so that its fast CPU convolutions build offline,
  * falls back to `use_mkl=0` with one warning when oneDNN is not installed,
  * compiles kernels one at a time (`use_parallel_op_compiler=0`),
  * keeps Jittor from importing PyTorch at start-up when it is installed (`FIX_TORCH_ERROR=0`):
    jgan never needs it, and it cost every process ~185 MiB of memory and ~0.9 s; code that does
    need PyTorch next to Jittor imports it with `import_torch`,
and after the import undoes Jittor's quick-exit SIGINT and SIGCHLD handlers, stops its idle
compile processes and, on CUDA without cuDNN, routes its convolutions through jgan.gemm_conv;
every `init(device)` then applies the device. Values the user set in the
environment are respected. `JITTOR_HOME` is never set. The CLIs print `startup_line()` themselves.
"""
import atexit
import ctypes
import ctypes.util
import glob
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
ONEDNN_FIX = "install Debian's oneDNN with `apt-get install libdnnl-dev` (scripts/test.sh does)"
CUDA_COMPAT_HEADER = Path(__file__).resolve().parent / "cuda_compat" / "device_prop.h"
NVCC_FOLDERS = ("/usr/local/cuda/bin", "/usr/bin", "/opt/cuda/bin")  # where Jittor looks after PATH
_started = False  # whether init() has started Jittor in this process


def cuda_device_count():
    """Number of CUDA devices the driver reports; 0 when there is no usable driver."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        libcuda = ctypes.CDLL(name)
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _onednn_folder_name():
    machine = platform.machine()
    suffix = "_aarch64" if machine == "aarch64" else ""
    return f"dnnl_lnx_2.2.0_cpu_gomp{suffix}"


def _system_onednn():
    """(include dir, libdnnl.so path) of a system oneDNN, or None."""
    for include in ("/usr/include", "/usr/local/include"):
        if not os.path.isfile(os.path.join(include, "dnnl.h")):
            continue
        patterns = ["/usr/lib/*-linux-gnu/libdnnl.so", "/usr/lib/libdnnl.so",
                    "/usr/local/lib/libdnnl.so"]
        for pattern in patterns:
            found = sorted(glob.glob(pattern))
            if found:
                return include, found[0]
    return None


def _link(target, link):
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(target, link)


def install_system_onednn():
    """Lay out Jittor's oneDNN cache folder as symlinks to the system's oneDNN. True on success."""
    system = _system_onednn()
    if system is None or platform.system() != "Linux":
        return False
    include, library = system
    home = Path.home() / ".cache" / "jittor" / "mkl" / _onednn_folder_name()
    (home / "include").mkdir(parents=True, exist_ok=True)
    (home / "lib").mkdir(parents=True, exist_ok=True)
    headers = glob.glob(os.path.join(include, "dnnl*.h")) + glob.glob(os.path.join(include, "dnnl*.hpp"))
    for header in headers:
        _link(header, str(home / "include" / os.path.basename(header)))
    if os.path.isdir(os.path.join(include, "oneapi")):
        _link(os.path.join(include, "oneapi"), str(home / "include" / "oneapi"))
    _link(library, str(home / "lib" / "libmkldnn.so"))
    _link(library, str(home / "lib" / "libdnnl.so"))
    return True


def find_nvcc():
    """The nvcc Jittor will compile CUDA with, searched in Jittor's order; None when there is none."""
    if "nvcc_path" in os.environ:
        return os.environ["nvcc_path"] or None
    candidates = [shutil.which("nvcc")] + [os.path.join(folder, "nvcc") for folder in NVCC_FOLDERS]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


def cuda_release(nvcc):
    """(major, minor) of the CUDA toolkit `nvcc` belongs to, or None when it does not say."""
    try:
        answer = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+)\.(\d+)", answer.stdout)
    return (int(match[1]), int(match[2])) if match else None


def configure_cuda(release):
    """Jittor's environment for compiling with the CUDA toolkit of this (major, minor) release."""
    include = f'-include "{CUDA_COMPAT_HEADER}" '
    if include not in os.environ.get("cc_flags", ""):  # a second call must not change Jittor's flags
        os.environ["cc_flags"] = include + os.environ.get("cc_flags", "")
    if release is not None and release >= (13, 0) and "conv_opt" not in os.environ:
        os.environ["conv_opt"] = "1"
        warnings.warn(f"jgan: CUDA {release[0]}.{release[1]} comes with cuDNN 9, which Jittor 1.3.11 "
                      "cannot build against; convolutions run on Jittor's own CUDA kernels.",
                      stacklevel=3)


def configure_environment():
    """Set Jittor's environment variables; must run before `import jittor`."""
    if "jittor" in sys.modules:
        return
    if "nvcc_path" not in os.environ and cuda_device_count() == 0:
        os.environ["nvcc_path"] = ""
    nvcc = find_nvcc()
    if nvcc:
        configure_cuda(cuda_release(nvcc))
    os.environ.setdefault("use_cutt", "0")
    os.environ.setdefault("use_cutlass", "0")
    if "OMPI_COMM_WORLD_SIZE" not in os.environ:  # Jittor's test for running under MPI
        os.environ.setdefault("use_nccl", "0")
    if os.environ.get("use_mkl", "1") == "1" and not install_system_onednn():
        os.environ["use_mkl"] = "0"
        warnings.warn(f"jgan: oneDNN not found, Jittor's CPU convolutions will be ~100x slower; "
                      f"{ONEDNN_FIX}.", stacklevel=2)
    os.environ.setdefault("log_silent", "1")
    # Jittor's parallel kernel compiler (8 threads here) segfaults now and then in a compile thread.
    os.environ.setdefault("use_parallel_op_compiler", "0")
    os.environ.setdefault("FIX_TORCH_ERROR", "0")


def import_torch():
    """PyTorch, imported the way Jittor needs it in the same process: with RTLD_DEEPBIND, so that
    PyTorch's own oneDNN and OpenMP symbols do not bind to Jittor's (Jittor's own fix, which it
    applies at import unless FIX_TORCH_ERROR=0). Raises ImportError when PyTorch is missing."""
    from jittor_utils import dirty_fix_pytorch_runtime_error
    dirty_fix_pytorch_runtime_error()
    import torch
    return torch


def restore_signal_handlers():
    """Undo two of Jittor's signal handlers, both an immediate exit: Ctrl-C raises KeyboardInterrupt
    again, so that training can save a checkpoint before it stops; and a child process that dies by
    a signal no longer ends this one (Jittor's handler was meant for its own loader workers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def close_compile_pool():
    """Stop the seven processes Jittor forks at import to compile its core, idle from then on.

    Left running, they and their three threads are inherited by every later fork; a later compile
    that needs the pool makes a new one (Jittor creates it whenever its size is 0)."""
    import jittor_utils
    if getattr(jittor_utils, "p", None) is None:
        return
    atexit.unregister(jittor_utils.pool_cleanup)
    jittor_utils.pool_cleanup()
    jittor_utils.pool_size = 0


def onednn_active():
    """True when Jittor's oneDNN (mkl) convolution ops are loaded."""
    from jittor import compile_extern
    return compile_extern.mkl_ops is not None


def check_device(device):
    if device not in DEVICES:
        from jgan.errors import ConfigError
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def set_device(choice="auto"):
    """Apply `auto|cpu|cuda` to a started Jittor (`init` does); returns the device now in use."""
    import jittor as jt
    check_device(choice)
    if choice == "cuda" and not jt.has_cuda:
        from jgan.errors import ConfigError
        raise ConfigError("--device cuda was asked for but Jittor found no CUDA device; "
                          "use --device cpu or auto")
    jt.flags.use_cuda = int(choice == "cuda" or (choice == "auto" and jt.has_cuda))
    return device()


def start_jittor():
    """Configure, import and tame Jittor; one that was imported before cannot be configured."""
    if "jittor" in sys.modules:
        warnings.warn("jgan: Jittor was imported before jgan's start-up, so its environment could not "
                      "be configured; call jgan.runtime.init() before importing jittor.", stacklevel=3)
    configure_environment()
    import jittor  # noqa: F401
    restore_signal_handlers()
    close_compile_pool()
    route_convolutions()


def route_convolutions():
    """On CUDA without cuDNN, Jittor's convolutions as matrix products (jgan.gemm_conv): its own
    kernels for them overflow their 32-bit indices at a GAN's batch sizes."""
    import jittor as jt
    from jittor import compile_extern
    if jt.has_cuda and getattr(compile_extern, "cudnn", None) is None:
        from jgan import gemm_conv
        gemm_conv.install()


def init(device="auto"):
    """Start Jittor for jgan on the first call; every call applies `device`. Returns "cpu" or "cuda"."""
    global _started
    check_device(device)
    if not _started:
        start_jittor()
        _started = True
    return set_device(device)


def started():
    """True once `init()` has started Jittor in this process."""
    return _started


def device():
    """The device Jittor computes on now, "cpu" or "cuda" (call after `init()`)."""
    import jittor as jt
    return "cuda" if jt.flags.use_cuda else "cpu"


def set_precision(precision, winograd=False):
    """Run Jittor's convolutions in float32 ("fp32"), where winograd and the CPU can, those that fit
    by Winograd's algorithm (jgan.winograd; the DCGAN family's 4x4 stride-2 ones by
    jgan.strided_winograd), or with bfloat16 products ("bf16", jgan.onednn_conv);
    refuses bf16 where it cannot run, in one sentence."""
    from jgan import onednn_conv, strided_winograd
    from jgan import winograd as winograd_conv
    problem = onednn_conv.check_supported() if precision == "bf16" else None
    if problem:
        from jgan.errors import ConfigError
        raise ConfigError(problem)
    onednn_conv.enable_bfloat16(False)   # the routes stack: the newest goes first
    winograd_conv.enable(False)
    strided_winograd.enable(precision == "fp32" and winograd and strided_winograd.supported())
    if precision == "bf16":
        onednn_conv.enable_bfloat16(True)
    elif winograd and winograd_conv.supported():
        winograd_conv.enable(True)


def startup_line():
    """The one line a CLI prints once Jittor is started: its version, the device and oneDNN."""
    import jittor as jt
    onednn = "on" if onednn_active() else "off"
    return f"jgan: jittor {jt.__version__}, device {device()}, oneDNN {onednn}"
