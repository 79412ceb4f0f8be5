"""Under mpiexec -n 2: the MPI runs of pinned_runs.py; rank 0 prints their fingerprints as JSON."""
import json
import os
import sys

from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pinned_runs as R  # noqa: E402

comm = MPI.COMM_WORLD
out = {}
for dtype in ("float32", "float64"):
    out[f"mpi_blas/{dtype}"] = R.fingerprint(R.blas_mpi(dtype, comm))
    out[f"mpi_small/{dtype}"] = R.fingerprint(R.small(dtype, "momentum", comm))
if comm.Get_rank() == 0:
    print(json.dumps(out))
