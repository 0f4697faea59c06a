"""rodata API service: serves published generations over HTTP from memory-mapped files."""

import os

# One process serves on one CPU and scales by replicas, so numpy's BLAS and any OpenMP pool
# must not start a thread per core. These variables are read when the libraries load, so they
# are set here, before anything in the service imports numpy or pyarrow.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
