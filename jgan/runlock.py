"""One writer per run: an exclusive lock on the run folder, held for the whole training run.

The lock is flock(2) on the folder itself, so the operating system releases it when the process
ends, however it ends: a lock left by a dead process never blocks. Who holds it (PID, host and
since when) is written beside it, in `.lock`, for the sentence a second writer gets.
"""
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from jgan.errors import ConfigError

HOLDER = ".lock"


@contextmanager
def hold(run_dir):
    """Hold the run folder `run_dir` (which exists) for the block; a ConfigError naming the holder
    if another process holds it."""
    run_dir = Path(run_dir)
    folder = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run {run_dir} is being trained by {holder(run_dir)}; wait for it to end, "
                              f"or pass another --name") from None
        (run_dir / HOLDER).write_text(f"PID {os.getpid()} on {socket.gethostname()} since "
                                      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        try:
            yield
        finally:
            (run_dir / HOLDER).unlink(missing_ok=True)
    finally:
        os.close(folder)   # releases the lock


def holder(run_dir):
    """Who holds the lock of `run_dir`, in words."""
    try:
        return (Path(run_dir) / HOLDER).read_text().strip() or "another process"
    except OSError:
        return "another process"
