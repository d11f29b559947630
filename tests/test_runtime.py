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


FAKE_CUDA_13_RUNTIME = """
#pragma once
#define CUDART_VERSION 13000
enum cudaError_t { cudaSuccess = 0 };
enum cudaComputeMode { cudaComputeModeDefault = 0, cudaComputeModeProhibited = 2 };
enum cudaDeviceAttr { cudaDevAttrClockRate = 13, cudaDevAttrComputeMode = 20 };
struct cudaDeviceProp { int major, minor, multiProcessorCount; };  /* no computeMode, no clockRate */
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
    prop->major = 9; prop->minor = 0; prop->multiProcessorCount = 132; return cudaSuccess; }
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
    *value = attribute == cudaDevAttrComputeMode ? cudaComputeModeProhibited : 1980000; return cudaSuccess; }
"""

READS_REMOVED_FIELDS = """
#include <cstdio>
#include <cuda_runtime.h>
int main() {  /* what Jittor's helper_cuda.h does */
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    std::printf("%d %d %d %d", prop.major, prop.multiProcessorCount, prop.computeMode, prop.clockRate);
}
"""


def compile_and_run(tmp_path, force_include):
    (tmp_path / "cuda_runtime.h").write_text(FAKE_CUDA_13_RUNTIME)
    (tmp_path / "main.cc").write_text(READS_REMOVED_FIELDS)
    flags = ["-include", str(runtime.CUDA_COMPAT_HEADER)] if force_include else []
    built = subprocess.run(["g++", "-std=c++14", *flags, f"-I{tmp_path}", str(tmp_path / "main.cc"),
                            "-o", str(tmp_path / "main")], capture_output=True, text=True)
    if built.returncode:
        return built.stderr
    return subprocess.run([str(tmp_path / "main")], capture_output=True, text=True).stdout


def test_the_cuda_13_header_gives_back_the_two_removed_device_properties(tmp_path):
    assert "has no member named" in compile_and_run(tmp_path, force_include=False)
    assert compile_and_run(tmp_path, force_include=True) == "9 132 2 1980000"


def test_the_cuda_13_header_does_nothing_before_cuda_headers_are_on_the_path(tmp_path):
    (tmp_path / "main.cc").write_text("int main() { return 0; }\n")
    built = subprocess.run(["g++", "-std=c++14", "-include", str(runtime.CUDA_COMPAT_HEADER),
                            str(tmp_path / "main.cc"), "-o", str(tmp_path / "main")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


@pytest.fixture
def fake_nvcc(tmp_path):
    nvcc = tmp_path / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    "echo 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    nvcc.chmod(0o755)
    return str(nvcc)


def test_the_cuda_release_is_read_from_the_nvcc_jittor_will_use(fake_nvcc, monkeypatch):
    monkeypatch.setenv("nvcc_path", fake_nvcc)
    assert runtime.find_nvcc() == fake_nvcc
    assert runtime.cuda_release(fake_nvcc) == (13, 0)
    assert runtime.cuda_release("/nonexistent/nvcc") is None
    monkeypatch.setenv("nvcc_path", "")
    assert runtime.find_nvcc() is None


@pytest.mark.parametrize("release, user_conv_opt, conv_opt, warns", [
    ((13, 0), None, "1", True), ((12, 4), None, None, False), ((13, 0), "0", "0", False)])
def test_cuda_builds_force_include_the_header_once_and_cuda_13_turns_cudnn_off(
        release, user_conv_opt, conv_opt, warns, monkeypatch, recwarn):
    monkeypatch.setenv("cc_flags", "-DUSER_FLAG")
    monkeypatch.setenv("conv_opt", user_conv_opt or "unset")  # recorded, so the test leaves no conv_opt
    if user_conv_opt is None:
        monkeypatch.delenv("conv_opt")
    runtime.configure_cuda(release)
    runtime.configure_cuda(release)
    assert os.environ["cc_flags"] == f'-include "{runtime.CUDA_COMPAT_HEADER}" -DUSER_FLAG'
    assert runtime.CUDA_COMPAT_HEADER.is_file()
    assert os.environ.get("conv_opt") == conv_opt
    assert len([w for w in recwarn if "cuDNN 9" in str(w.message)]) == int(warns)


@pytest.mark.parametrize("under_mpi, expected", [(False, "0 0 0"), (True, "0 0 unset")])
def test_jittor_downloads_nothing_at_start_up_but_nccl_under_mpi(under_mpi, expected):
    env = clean_environment() | ({"OMPI_COMM_WORLD_SIZE": "2"} if under_mpi else {})
    result = run_python("import os; from jgan import runtime; runtime.configure_environment(); "
                        "print(*(os.environ.get(k, 'unset') for k in ('use_cutt', 'use_cutlass', 'use_nccl')))",
                        env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected.split()
