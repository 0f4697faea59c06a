"""rodata ETL engine: turns source files into published dataset generations."""

import os

# pyarrow's default allocator (mimalloc) returns freed memory to the OS after a short delay, and
# every shard then faults in and zeroes fresh pages again: about 0.8 s of system time per 10M
# rows on the 1 GB benchmark. Workers reuse their memory from shard to shard instead. It must be
# set before pyarrow loads, and a value set by the user wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
