"""The grid encoder's native kernel (``cuda_ext/gridencoder``) behind a ``torch.autograd.Function``.

:func:`try_encode` is what :func:`~ernerf_core.model.encoders.hash_grid_encode` and the torso's
:class:`~ernerf_core.model.torso.TiledGrid2D` call: it returns the kernel's output, or None when
the kernel is not enabled or built for these tensors (then the caller runs its pure-PyTorch
reference). The kernel computes exactly what the reference does (same positions, corner rows,
weights and summation order in the forward pass), see ``cuda_ext/gridencoder/grid_common.h``.
"""

from __future__ import annotations

import torch

from . import native

_NO_SLOT = torch.empty(0, dtype=torch.int32)


class GridEncodeFunction(torch.autograd.Function):
    """Grid encoding of x [P, A] with ``table`` [T, F]: [L, P, F] (levels in ``mult``'s order) or,
    ``point_major``, [P, L * F] with level l at slot ``out_slot[l]``. Gradients to the table and,
    when ``input_grad``, to x (zero where x is outside [0, 1], as a clamp's)."""

    @staticmethod
    def forward(ctx, x, table, proj, mult, offset, mask, modulo, n_xor: int, input_grad: bool, module,
                out_slot=None, point_major: bool = False):
        slot = _NO_SLOT if out_slot is None else out_slot
        out = module.forward(x, table, proj, mult, offset, mask, modulo, n_xor, slot, point_major)
        ctx.save_for_backward(x, table, proj, mult, offset, mask, modulo, slot)
        ctx.n_xor, ctx.input_grad, ctx.module, ctx.point_major = n_xor, input_grad, module, point_major
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, table, proj, mult, offset, mask, modulo, slot = ctx.saved_tensors
        need_x = ctx.input_grad and ctx.needs_input_grad[0]
        need_table = ctx.needs_input_grad[1]
        grad_table, grad_x = ctx.module.backward(grad_out.contiguous(), x, table, proj, mult, offset, mask, modulo,
                                                 ctx.n_xor, slot, ctx.point_major, need_table, need_x)
        return (grad_x if need_x else None, grad_table if need_table else None) + (None,) * 10


def kernel_for(table: torch.Tensor):
    """The built grid-encoder module for ``table``'s device, or None (reference path)."""
    if table.dtype != torch.float32:
        return None
    variant = native.variant_for(table.device)
    if variant is None:
        return None
    return native.load("gridencoder", variant)


def try_encode(x: torch.Tensor, table: torch.Tensor, proj: torch.Tensor, mult: torch.Tensor,
               offset: torch.Tensor, mask: torch.Tensor, n_xor: int, modulo: torch.Tensor | None = None,
               input_grad: bool = False, out_slot: torch.Tensor | None = None,
               point_major: bool = False) -> torch.Tensor | None:
    """Kernel encoding, [L, P, F] (levels in ``mult``'s row order) or, ``point_major``, [P, L * F]
    with level l at slot ``out_slot[l]``; None when no kernel applies."""
    module = kernel_for(table)
    if module is None or x.device != table.device:
        return None
    if modulo is None:
        modulo = torch.zeros_like(offset)
    x = x.float()
    if not input_grad:
        x = x.detach()
    return GridEncodeFunction.apply(x.contiguous(), table.contiguous(), proj.contiguous(), mult.contiguous(),
                                    offset.contiguous(), mask.contiguous(), modulo.contiguous(), int(n_xor),
                                    bool(input_grad), module, out_slot, bool(point_major))
