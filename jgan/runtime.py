"""Jittor start-up for jgan: `init()` is the one explicit bootstrap; importing jgan does nothing.

Out of the box Jittor 1.3.11 crashes on a machine that has an `nvcc` binary but no CUDA driver,
and downloads oneDNN from the internet on first import. So the first `init()`, before importing it,
  * hides nvcc from Jittor when no CUDA device can be used (`nvcc_path=""`),
  * points Jittor at Debian's oneDNN (package libdnnl-dev) by laying out the folder Jittor would
    have downloaded, made of symlinks, so that its fast CPU convolutions build offline,
  * falls back to `use_mkl=0` with one warning when oneDNN is not installed,
  * compiles kernels one at a time (`use_parallel_op_compiler=0`),
  * keeps Jittor from importing PyTorch at start-up when it is installed (`FIX_TORCH_ERROR=0`):
    jgan never needs it, and it cost every process ~185 MiB of memory and ~0.9 s; code that does
    need PyTorch next to Jittor imports it with `import_torch`,
and after the import undoes Jittor's quick-exit SIGINT and SIGCHLD handlers and stops its idle
compile processes; every `init(device)` then applies the device. Values the user set in the
environment are respected. `JITTOR_HOME` is never set. The CLIs print `startup_line()` themselves.
"""
import atexit
import ctypes
import ctypes.util
import glob
import os
import platform
import signal
import sys
import threading
import warnings
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
ONEDNN_FIX = "install Debian's oneDNN with `apt-get install libdnnl-dev` (scripts/test.sh does)"
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


def configure_environment():
    """Set Jittor's environment variables; must run before `import jittor`."""
    if "jittor" in sys.modules:
        return
    if "nvcc_path" not in os.environ and cuda_device_count() == 0:
        os.environ["nvcc_path"] = ""
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


def startup_line():
    """The one line a CLI prints once Jittor is started: its version, the device and oneDNN."""
    import jittor as jt
    onednn = "on" if onednn_active() else "off"
    return f"jgan: jittor {jt.__version__}, device {device()}, oneDNN {onednn}"
