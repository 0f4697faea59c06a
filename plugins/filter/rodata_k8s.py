"""Jinja filters for the Kubernetes manifests of the rodata roles.

The roles link this file into their own ``filter_plugins`` directories so that the
filters work from ``playbooks/site.yml``, ``playbooks/render.yml`` and molecule alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ansible.errors import AnsibleFilterError

# Suffixes as resource.Quantity parses them (k8s.io/apimachinery/pkg/api/resource).
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def quantity_value(value: Any) -> Decimal:
    """Return the numeric value of a Kubernetes quantity such as ``1024Mi``, ``500m`` or ``2``."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise AnsibleFilterError(
            f"invalid Kubernetes quantity {value!r}: write a number with an optional suffix "
            "such as 500m, 2, 512Mi or 4Gi"
        )
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise AnsibleFilterError(f"invalid Kubernetes quantity {value!r}: {exc}") from exc
    suffix = match.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    return number * _DECIMAL[suffix]


def canonical_quantity(value: Any) -> str:
    """Return ``value`` in the canonical form the API server stores, so a re-apply reports no change.

    The API server keeps the suffix family (binary or decimal) and picks the largest
    suffix that leaves an integer: ``1024Mi`` becomes ``1Gi`` and ``1000m`` becomes ``1``.
    """
    text = str(value).strip()
    number = quantity_value(text)
    suffix = _QUANTITY.match(text).group(2)
    if number < 0:
        raise AnsibleFilterError(f"invalid Kubernetes quantity {value!r}: must not be negative")
    if number == 0:
        return "0"

    if suffix in _BINARY and number == number.to_integral_value():
        for name, factor in sorted(_BINARY.items(), key=lambda item: -item[1]):
            if number % factor == 0:
                return f"{int(number // factor)}{name}"
        return str(int(number))

    # Decimal family, also used for a binary quantity that is not a whole number of bytes.
    for name in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
        scaled = number / _DECIMAL[name]
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{name}"
    # Kubernetes rounds sub-nano values up to 1n.
    return "1n"


def content_hash(value: Any, length: int = 10) -> str:
    """Return the first ``length`` hex digits of the SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class FilterModule:
    """Filters: rodata_quantity, rodata_quantity_value, rodata_content_hash."""

    def filters(self) -> dict[str, Any]:
        return {
            "rodata_quantity": canonical_quantity,
            "rodata_quantity_value": lambda value: float(quantity_value(value)),
            "rodata_content_hash": content_hash,
        }
