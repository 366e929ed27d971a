"""CMS adapters (one interface, see base.py), version ranges and vulnerability feeds."""

from .base import (
    ADAPTERS,
    CmsAdapter,
    CmsError,
    Component,
    IntegrityFinding,
    Runner,
    VerifyResult,
    adapter_class,
    adapter_for,
)

__all__ = [
    "ADAPTERS",
    "CmsAdapter",
    "CmsError",
    "Component",
    "IntegrityFinding",
    "Runner",
    "VerifyResult",
    "adapter_class",
    "adapter_for",
]
