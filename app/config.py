"""Service configuration, read from environment variables and validated once at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Dataset and column names that may appear in a URL. Anything else (a slash, "..", NUL,
# spaces) is rejected before any lookup, so a name can never address a file by itself.
# The pattern is the one rodata.format enforces for dataset directories.
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # \Z: "$" admits a final newline

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """An environment variable has an invalid value; the message names it and the fix."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated service settings."""

    data_root: Path
    datasets: tuple[str, ...]  # empty: every dataset under data_root with a CURRENT file
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    workers: int = 1
    reload_seconds: float = 2.0
    access_log: bool = True
    verify_checksums: bool = False
    default_limit: int = 100
    max_limit: int = 10_000
    max_scan_rows: int = 5_000_000
    max_raw_bytes: int = 64 * 1024 * 1024
    drain_seconds: float = 0.0
    grace_seconds: float = 20.0
    fast_path: bool = True


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a whole number "
                          f"from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range; allowed: {minimum} to {maximum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float,
           maximum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to seconds "
                          f"from {minimum} to {maximum}") from None
    if not minimum <= value <= maximum:  # also rejects NaN
        raise ConfigError(f"{name}={value} is out of range; allowed: {minimum} to {maximum}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Return the settings from `env` (default: os.environ); raise ConfigError on a bad value."""
    env = os.environ if env is None else env

    raw_root = env.get("RODATA_DATA_ROOT", "").strip()
    if not raw_root:
        raise ConfigError("RODATA_DATA_ROOT is not set; set it to the data root directory "
                          "that holds <dataset>/CURRENT and <dataset>/generations/")
    data_root = Path(raw_root)
    if not data_root.is_dir():
        raise ConfigError(f"RODATA_DATA_ROOT={raw_root!r} is not a directory; "
                          "point it at the data root the ETL publishes to")

    datasets: list[str] = []
    for part in env.get("RODATA_DATASETS", "").split(","):
        name = part.strip()
        if not name:
            continue
        if not NAME_PATTERN.match(name):
            raise ConfigError(f"RODATA_DATASETS contains the invalid dataset name {name!r}; "
                              "names use letters, digits, '_', '.', '-' and start with "
                              "a letter or digit")
        if name in datasets:
            raise ConfigError(f"RODATA_DATASETS names {name!r} twice")
        datasets.append(name)

    host = env.get("RODATA_HOST", "127.0.0.1").strip() or "127.0.0.1"

    log_level = env.get("RODATA_LOG_LEVEL", "info").strip().lower() or "info"
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"RODATA_LOG_LEVEL={log_level!r} is invalid; allowed: "
                          + ", ".join(LOG_LEVELS))

    default_limit = _int(env, "RODATA_DEFAULT_LIMIT", 100, minimum=1, maximum=1_000_000)
    max_limit = _int(env, "RODATA_MAX_LIMIT", 10_000, minimum=1, maximum=1_000_000)
    if default_limit > max_limit:
        raise ConfigError(f"RODATA_DEFAULT_LIMIT={default_limit} is larger than "
                          f"RODATA_MAX_LIMIT={max_limit}; lower it or raise the maximum")

    return Settings(
        data_root=data_root,
        datasets=tuple(datasets),
        host=host,
        port=_int(env, "RODATA_PORT", 8080, minimum=0, maximum=65535),
        log_level=log_level,
        workers=_int(env, "RODATA_WORKERS", 1, minimum=1, maximum=64),
        reload_seconds=_float(env, "RODATA_RELOAD_SECONDS", 2.0, minimum=0.1, maximum=86400),
        access_log=_bool(env, "RODATA_ACCESS_LOG", True),
        verify_checksums=_bool(env, "RODATA_VERIFY_CHECKSUMS", False),
        default_limit=default_limit,
        max_limit=max_limit,
        max_scan_rows=_int(env, "RODATA_MAX_SCAN_ROWS", 5_000_000, minimum=1000,
                           maximum=1_000_000_000),
        max_raw_bytes=_int(env, "RODATA_MAX_RAW_BYTES", 64 * 1024 * 1024, minimum=4096,
                           maximum=1 << 31),
        drain_seconds=_float(env, "RODATA_DRAIN_SECONDS", 0.0, minimum=0, maximum=600),
        grace_seconds=_float(env, "RODATA_GRACE_SECONDS", 20.0, minimum=0, maximum=3600),
        fast_path=_bool(env, "RODATA_FAST_PATH", True),
    )
