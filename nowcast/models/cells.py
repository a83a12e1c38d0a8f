"""Convolutional LSTM cell (Shi et al., NeurIPS 2015), the base of every model.

All four gates come from ONE convolution over the concatenated ``[x, h]``:
a single large convolution keeps the CPU's matrix kernels busy, where eight
small ones (the textbook ``W_x * x + W_h * h`` per gate) spend most of their
time in overheads. State tensors are ``(batch, channels, height, width)``.

The transferable memory unit (:mod:`nowcast.models.tmu`) subclasses this
cell: it only adds gate channels and memory terms, so with no source it *is*
this cell, parameter for parameter.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer.

    Parameters
    ----------
    in_channels
        Channels of the input ``x`` (``p*p`` for the bottom layer of a
        patch-folded predictor, the hidden size of the layer below otherwise).
    hidden
        Hidden/memory channels ``C``.
    kernel
        Odd kernel size of the gate convolution (same-size padding).
    layer_norm
        Normalise the gate pre-activations (per sample, over channels and
        space, with a per-channel affine: ``GroupNorm(1, .)``). Unlike
        PredRNN's ``LayerNorm([C, H, W])`` it has no per-pixel parameters, so
        a trained model runs on any frame size (tiles of a region).
    forget_bias
        Added to the forget gate so a fresh cell starts by remembering.
    extra_gates
        Additional groups of ``hidden`` gate channels computed by the same
        convolution (the TMU's transfer gates); 0 for a plain ConvLSTM.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        kernel: int = 5,
        layer_norm: bool = True,
        forget_bias: float = 1.0,
        extra_gates: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.kernel = kernel
        self.forget_bias = float(forget_bias)
        gate_channels = (4 + extra_gates) * hidden
        self.conv = nn.Conv2d(in_channels + hidden, gate_channels, kernel, padding=kernel // 2)
        self.norm: nn.Module = nn.GroupNorm(1, gate_channels) if layer_norm else nn.Identity()

    def init_state(self, batch: int, height: int, width: int, like: torch.Tensor) -> State:
        """Zero ``(h, c)`` for a new sequence."""
        z = like.new_zeros((batch, self.hidden, height, width))
        return z, z

    def gates(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """All gate pre-activations from one fused convolution."""
        return self.norm(self.conv(torch.cat([x, h], dim=1)))

    def lstm_update(self, gates: torch.Tensor, c: torch.Tensor) -> State:
        """The ConvLSTM equations on the first ``4C`` gate channels; returns ``(h, c)``."""
        C = self.hidden
        i = torch.sigmoid(gates[:, 0 * C : 1 * C])
        f = torch.sigmoid(gates[:, 1 * C : 2 * C] + self.forget_bias)
        o = torch.sigmoid(gates[:, 2 * C : 3 * C])
        g = torch.tanh(gates[:, 3 * C : 4 * C])
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        return h_new, c_new

    def forward(self, x: torch.Tensor, state: State) -> State:
        """One step: ``x (B, in, H, W)``, ``state = (h, c)`` -> new ``(h, c)``."""
        h, c = state
        return self.lstm_update(self.gates(x, h), c)
