"""Jittor is started by one explicit call, runtime.init(), configured offline before it is imported;
importing jgan does nothing."""
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jgan import runtime

REPO = Path(__file__).resolve().parent.parent


def clean_environment():
    """Only what a user's shell surely has: no Jittor or jgan variables at all."""
    return {"HOME": os.environ["HOME"], "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def run_python(script, env=None):
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env or clean_environment(),
                          capture_output=True, text=True, timeout=600)


def test_import_jgan_has_no_side_effects():
    result = run_python("import jgan, sys; assert 'jittor' not in sys.modules")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", ""), "import jgan must print nothing"


STARTUP = """
import sys
from jgan import runtime
device = runtime.init()
print(device)
print(runtime.startup_line(), file=sys.stderr)
"""


def test_init_with_no_environment_prints_nothing_and_the_startup_line_has_onednn_on():
    result = run_python(STARTUP)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [runtime.device()], "init returns the device it chose"
    expected = f"jgan: jittor 1.3.11.0, device {runtime.device()}, oneDNN on"
    assert result.stderr.splitlines() == [expected], "init must print nothing; the start-up line is the CLIs' to print"
    assert "Downloading" not in result.stdout + result.stderr


def test_init_after_jittor_was_imported_warns_once():
    """Jittor is imported first with this process's environment, which conftest's init configured."""
    script = "import jittor\nfrom jgan import runtime\nruntime.init()\nruntime.init('cpu')"
    result = run_python(script, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    warnings = [l for l in result.stderr.splitlines() if "call jgan.runtime.init() before importing jittor" in l]
    assert len(warnings) == 1, result.stderr


def ignore_signal(signum, frame):
    pass


def test_a_second_init_only_applies_the_device():
    import jittor as jt
    previous = signal.signal(signal.SIGINT, ignore_signal)
    try:
        assert runtime.init("cpu") == "cpu" and runtime.device() == "cpu" and jt.flags.use_cuda == 0
        assert signal.getsignal(signal.SIGINT) is ignore_signal, "a second init must leave signal handlers alone"
    finally:
        signal.signal(signal.SIGINT, previous)
        runtime.init()


def test_onednn_convolution_ops_are_loaded():
    from jittor import compile_extern
    assert runtime.onednn_active()
    assert hasattr(compile_extern.mkl_ops, "mkl_conv")


def test_onednn_folder_points_at_the_system_library():
    folder = Path.home() / ".cache" / "jittor" / "mkl" / runtime._onednn_folder_name()
    library = folder / "lib" / "libmkldnn.so"
    assert library.is_symlink() and Path(os.readlink(library)).name.startswith("libdnnl.so")
    assert (folder / "include" / "dnnl.h").exists()


def test_device_choice_follows_the_hardware():
    import jittor as jt
    assert runtime.init("cpu") == "cpu" and jt.flags.use_cuda == 0
    expected = "cuda" if jt.has_cuda else "cpu"
    assert runtime.init("auto") == expected and runtime.device() == expected


def test_cuda_on_a_machine_without_it_is_a_sentence():
    import jittor as jt
    import pytest
    from jgan.errors import ConfigError
    if jt.has_cuda:
        assert runtime.init("cuda") == "cuda"
        runtime.init("auto")
        return
    with pytest.raises(ConfigError, match="no CUDA device"):
        runtime.init("cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        runtime.init("tpu")


def test_no_cuda_driver_means_nvcc_is_hidden_from_jittor():
    if runtime.cuda_device_count() == 0:
        assert os.environ.get("nvcc_path") == ""


def test_jittor_compile_pool_is_closed_after_init():
    import jittor_utils
    assert not hasattr(jittor_utils, "p") and jittor_utils.pool_size == 0
    assert not [thread for thread in threading.enumerate() if "_handle_" in thread.name]


CHILD_DIES_BY_A_SIGNAL = """
import subprocess, sys
from jgan import runtime
runtime.init()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
child.kill()
print("exit status", child.wait())
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    print("interrupt handler", __import__("signal").getsignal(2).__name__)
"""


def test_a_child_killed_by_a_signal_does_not_end_the_process_and_ctrl_c_raises():
    result = run_python(CHILD_DIES_BY_A_SIGNAL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["exit status -9", "interrupt handler default_int_handler"]


@pytest.mark.parametrize("setting, expected", [(None, "0"), ("4", "4")])
def test_kernels_compile_one_at_a_time_unless_the_user_chose_otherwise(setting, expected):
    env = clean_environment() | ({} if setting is None else {"use_parallel_op_compiler": setting})
    result = run_python("from jgan import runtime; runtime.init(); import jittor; "
                        "print(jittor.flags.use_parallel_op_compiler)", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected]


def test_jittor_does_not_import_pytorch_but_import_torch_works_next_to_it():
    """PyTorch is installed here (the parity tests need it), yet `runtime.init()` must not load it
    (Jittor would, at ~185 MiB); import_torch gives a working PyTorch in the same process."""
    script = ("import sys; from jgan import runtime; runtime.init(); import jittor as jt; "
              "print('torch' in sys.modules); "
              "from jgan.runtime import import_torch; torch = import_torch(); "
              "x = torch.ones(2, 3, 8, 8); w = torch.ones(4, 3, 3, 3); "
              "print(float(torch.nn.functional.conv2d(x, w).sum()), float(jt.nn.conv2d(jt.ones(2, 3, 8, 8), jt.ones(4, 3, 3, 3)).sum()))")
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "7776.0", "7776.0"]
