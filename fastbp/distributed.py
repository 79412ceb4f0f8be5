"""Data-parallel training over MPI: one ``Allreduce`` of the flat gradient buffer per minibatch.

    from mpi4py import MPI
    model.fit(X, y, epochs=10, batch_size=256, comm=MPI.COMM_WORLD)   # run under mpiexec -n N

Every rank (process) holds the whole model and is given the whole dataset: the same arrays, or
memmaps of the same files on a shared filesystem. Minibatch s of an epoch is the same rows as
in a single-process ``fit`` with the same seed. Rank r computes the gradient of the r-th
contiguous share of those rows, reading only them, with the compiled kernels (the small-network
ones for small nets). Each local gradient is scaled by m_local / m, one in-place ``Allreduce``
sums the buffer, and every rank then holds the mean over the global batch of m rows and applies
the same optimizer step. Shares that differ in size by one row, or are empty, change nothing.
The loss sum, the count of correct rows and two status flags ride in four extra slots of the
same buffer, so a step costs exactly one collective call; a network with batch norm adds three
small ones per batch-norm layer, whose statistics span the global minibatch (kernels.syncbn).

- Start: rank 0's params, optimizer state and random stream are broadcast, after checks that
  every rank has the same architecture, data shape and fit arguments.
- Callbacks, progress bar and checkpoints run on rank 0. Its optimizer hyperparameters (a
  learning-rate schedule may change them) and its ``stop_training`` are broadcast at every
  epoch boundary, and its params at the end (EarlyStopping may restore the best ones). Every
  rank returns a History with the same globally reduced values.
- Validation: each rank evaluates a contiguous share of the validation rows and the sums are reduced.
- Memmaps stream as in one process: each rank reads only its rows, and pages are released
  between chunks of minibatches.
- Errors: an exception on any rank (bad input on one rank, an error in a rank-0 callback,
  arguments that differ between ranks, an error inside a step) is raised on every rank as the same
  exception type and message, "rank r of N: ...". Divergence is decided on the reduced loss,
  so every rank raises the same TrainingDiverged. Ctrl-C (mpiexec forwards it to every rank)
  stops every rank after the same update. An error outside these checks on one rank alone
  calls ``MPI_Abort`` rather than leave the others waiting forever.

The loop itself is fastbp.training's, the same as for one process; the collectives are
fastbp.comm's ``MPIComm``. This module finds the launcher and the communicator.
"""
import os
import shutil
import sys
import sysconfig

from .comm import import_mpi

# Set by MPI launchers (MPICH/Intel MPI hydra, Open MPI, MVAPICH, Slurm's srun) to the world size.
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_comm():
    """mpi4py's COMM_WORLD if this process was started by an MPI launcher with more than one
    rank (mpiexec -n N, srun) and mpi4py is importable; otherwise None.

    Without a launcher, mpi4py is not imported, so MPI is never initialized for nothing.
    """
    launched = False
    for var in LAUNCHER_SIZE_VARS:
        try:
            launched |= int(os.environ.get(var, "0")) > 1
        except ValueError:
            pass
    if not launched:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def find_mpiexec():
    """The MPI launcher of the MPI library installed beside this interpreter (a venv's bin
    first, as ``pip install mpich`` puts it), else the first mpiexec/mpirun on PATH; or None."""
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        for name in ("mpiexec", "mpirun"):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which("mpiexec") or shutil.which("mpirun")


def fit_distributed(model, X, y, comm, **kwargs):
    """``model.fit(X, y, comm=comm, **kwargs)``: data-parallel fit over the ranks of ``comm``
    (every rank calls it with the same arguments and the whole dataset)."""
    import_mpi()
    return model.fit(X, y, comm=comm, **kwargs)
