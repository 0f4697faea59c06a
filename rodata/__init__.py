"""rodata: shared code of the ETL engine and the API service."""

__version__ = "0.1.0"
