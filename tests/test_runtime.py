"""The Jittor runtime is configured in one place, offline, before Jittor is imported."""
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import jgan
from jgan import runtime

REPO = Path(__file__).resolve().parent.parent


def clean_environment():
    """Only what a user's shell surely has: no Jittor or jgan variables at all."""
    return {"HOME": os.environ["HOME"], "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def test_import_with_no_environment_prints_the_startup_line_with_onednn_on():
    result = subprocess.run([sys.executable, "-c", "import jgan"], cwd=REPO, env=clean_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    line = [l for l in result.stderr.splitlines() if l.startswith("jgan:")]
    assert line == [f"jgan: jittor 1.3.11.0, device {jgan.DEVICE}, oneDNN on"], result.stderr
    assert "Downloading" not in result.stdout + result.stderr


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
    assert runtime.set_device("cpu") == "cpu" and jt.flags.use_cuda == 0
    expected = "cuda" if jt.has_cuda else "cpu"
    assert runtime.set_device("auto") == expected


def test_cuda_on_a_machine_without_it_is_a_sentence():
    import jittor as jt
    import pytest
    from jgan.errors import ConfigError
    if jt.has_cuda:
        assert runtime.set_device("cuda") == "cuda"
        runtime.set_device("auto")
        return
    with pytest.raises(ConfigError, match="no CUDA device"):
        runtime.set_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        runtime.set_device("tpu")


def test_no_cuda_driver_means_nvcc_is_hidden_from_jittor():
    if runtime.cuda_device_count() == 0:
        assert os.environ.get("nvcc_path") == ""


def test_jittor_compile_pool_is_closed_after_import():
    import jittor_utils
    assert not hasattr(jittor_utils, "p") and jittor_utils.pool_size == 0
    assert not [thread for thread in threading.enumerate() if "_handle_" in thread.name]


CHILD_DIES_BY_A_SIGNAL = """
import subprocess, sys
import jgan
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
child.kill()
print("exit status", child.wait())
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    print("interrupt handler", __import__("signal").getsignal(2).__name__)
"""


def test_a_child_killed_by_a_signal_does_not_end_the_process_and_ctrl_c_raises():
    result = subprocess.run([sys.executable, "-c", CHILD_DIES_BY_A_SIGNAL], cwd=REPO, env=clean_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["exit status -9", "interrupt handler default_int_handler"]


@pytest.mark.parametrize("setting, expected", [(None, "0"), ("4", "4")])
def test_kernels_compile_one_at_a_time_unless_the_user_chose_otherwise(setting, expected):
    env = clean_environment() | ({} if setting is None else {"use_parallel_op_compiler": setting})
    result = subprocess.run([sys.executable, "-c", "import jgan, jittor; print(jittor.flags.use_parallel_op_compiler)"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected]


def test_jittor_does_not_import_pytorch_but_import_torch_works_next_to_it():
    """PyTorch is installed here (the parity tests need it), yet `import jgan` must not load it
    (Jittor would, at ~185 MiB); import_torch gives a working PyTorch in the same process."""
    script = ("import sys, jgan, jittor as jt; print('torch' in sys.modules); "
              "from jgan.runtime import import_torch; torch = import_torch(); "
              "x = torch.ones(2, 3, 8, 8); w = torch.ones(4, 3, 3, 3); "
              "print(float(torch.nn.functional.conv2d(x, w).sum()), float(jt.nn.conv2d(jt.ones(2, 3, 8, 8), jt.ones(4, 3, 3, 3)).sum()))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=clean_environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "7776.0", "7776.0"]
