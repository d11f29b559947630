"""One writer per run: an exclusive lock on the run folder, held for the whole training run.

The lock is flock(2) on the folder itself, so the operating system releases it when the process
ends, however it ends: a lock left by a dead process never blocks. Who holds it (PID, host and
since when) is written beside it, in `.lock`, for the sentence a second writer gets; the holder
writes it just after taking the lock, so a second writer waits a moment for it.
"""
import fcntl
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from jgan.errors import ConfigError

HOLDER = ".lock"
NOTE_WAIT_S = 2.0


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
        write_note(run_dir)
        try:
            yield
        finally:
            (run_dir / HOLDER).unlink(missing_ok=True)
    finally:
        os.close(folder)   # releases the lock


def write_note(run_dir):
    """Say who holds `run_dir`, replacing the note at once so a reader never sees half of it."""
    staged = run_dir / f"{HOLDER}.{os.getpid()}"
    staged.write_text(f"PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    os.replace(staged, run_dir / HOLDER)


def holder(run_dir):
    """Who holds the lock of `run_dir`, in words: its note, once it names a live process (a note
    left by a killed holder stays until the next holder replaces it)."""
    deadline = time.monotonic() + NOTE_WAIT_S
    while True:
        note = read_note(run_dir)
        if note and names_live_process(note):
            return note
        if time.monotonic() > deadline:
            return "another process"
        time.sleep(0.05)


def read_note(run_dir):
    try:
        return (Path(run_dir) / HOLDER).read_text().strip()
    except OSError:
        return ""


def names_live_process(note):
    """False only for a note naming a process of this host that has ended."""
    match = re.match(r"PID (\d+) on (\S+) ", note)
    if not match or match[2] != socket.gethostname():
        return True
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
