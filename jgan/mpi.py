"""Data-parallel training under mpirun: which process writes, and values agreed on by every rank."""
import jittor as jt


def world_size():
    """Number of MPI ranks sharing each global batch (1 without MPI)."""
    return jt.world_size if jt.in_mpi else 1


def rank():
    return jt.rank if jt.in_mpi else 0


def is_main_process():
    """True except on the MPI ranks other than 0, which train but write nothing."""
    return rank() == 0


def mean_over_ranks(var):
    """The mean of a Var over the MPI ranks (the Var itself without MPI)."""
    return var.mpi_all_reduce("mean") if jt.in_mpi else var


def any_rank(flag):
    """Whether `flag` is true on any rank (every rank gets the same answer)."""
    if not jt.in_mpi:
        return bool(flag)
    return bool(jt.array([float(bool(flag))]).mpi_all_reduce("add").item() > 0)
