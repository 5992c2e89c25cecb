"""Shared by the native-kernel tests: building an op (or skipping) and the parity tolerance."""

from __future__ import annotations

import pytest
import torch

from ernerf_core.model import native


def build_or_skip(op: str, variant: str):
    """The built module of ``op``'s ``variant`` (from the cache when built before); skips the test
    when it cannot be built on this machine."""
    native.reset()
    try:
        return native.build(op, variant)
    except native.NativeUnavailable as err:
        pytest.skip(f"the {variant.upper()} kernels of {op} cannot be built here: {err}")


def rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Elementwise |a - e| <= rel * (|e| + max|e|): relative error ``rel`` at the tensor's scale."""
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * max(scale, 1e-30))
