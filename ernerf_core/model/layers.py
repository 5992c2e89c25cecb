"""A linear layer applied to its input's parts, so callers need not concatenate them.

The head's and the torso's first layers read a concatenation of per-point features and a
part that is the same for every point of a call (the torso's pose and individual code, the
head's individual code). Concatenating writes and re-reads the whole [N, in] input (about a
tenth of a render on a CPU), and the shared part is multiplied once per point; applied part by
part it is multiplied once.
"""

from __future__ import annotations

import torch


def linear_on_parts(weight: torch.Tensor, parts: list[torch.Tensor],
                    shared: torch.Tensor | None = None) -> torch.Tensor:
    """``cat([*parts, shared.expand(N, -1)], -1) @ weight.T`` (bias-free) without the concatenation.

    weight [out, in]; parts [N, w_i] in column order; shared [1, w_s] (the last columns) or None.
    """
    starts = [0]
    for part in parts:
        starts.append(starts[-1] + part.shape[-1])
    # in place after the first product (mm and addmm keep their inputs for the backward pass,
    # not their outputs): no [N, out] copies
    h = parts[0] @ weight[:, :starts[1]].t()
    # autocast covers the @ above, not the in-place addmm_: its operands follow h's dtype
    # (no-op casts in float32)
    for i in range(1, len(parts)):
        h = h.addmm_(parts[i].to(h.dtype), weight[:, starts[i]:starts[i + 1]].t().to(h.dtype))
    if shared is not None:
        h = h.add_(shared @ weight[:, starts[-1]:].t())  # [1, out], once for every row
    return h
