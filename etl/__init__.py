"""rodata ETL engine: turns source files into published dataset generations."""

import os

# pyarrow's default allocator (mimalloc) returns freed memory to the OS after a short delay, and
# every shard then faults in and zeroes fresh pages: about 10% of a run's CPU time on the
# 1 GB benchmark. Workers reuse their memory from shard to shard instead. The variable must be
# set before pyarrow loads, and a value set by the user wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
