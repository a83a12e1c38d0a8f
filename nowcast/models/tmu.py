"""The Transferable Memory Unit and the memory bank of frozen sources.

Method: Yao et al., ICML 2020; restated in the project's TMU.md. The TMU is
the target's bottom layer: a ConvLSTM cell whose one gate convolution also
produces a transfer gate per source, plus one *distiller* per source that
learns to reproduce that source's memory from the target's own memory. At
training time the :class:`MemoryBank` runs the frozen sources to provide the
memories the distillers imitate; at forecast time the distillers stand in for
the sources, so no source checkpoint is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nowcast.models.cells import ConvLSTMCell, State

if TYPE_CHECKING:  # pragma: no cover
    from nowcast.models.predictor import Predictor

Variant = Literal["sum", "normalized_sum", "convex", "competitive"]
#: The memory updates a TMU cell knows (see :class:`TMUCell`).
VARIANTS = ("sum", "normalized_sum", "convex", "competitive")
#: Where a TMU can sit, and whose memory it distils: the paper's bottom layer, or the top (``tmu.layer``).
LAYERS = {"bottom": 0, "top": -1}


def layer_index(layer: str) -> int:
    """The index into a stack of cells of ``layer`` (``"bottom"``: 0, ``"top"``: -1).

    Raises
    ------
    ValueError
        For any other name.
    """
    if layer not in LAYERS:
        raise ValueError(f"TMU layer {layer!r}: expected one of {', '.join(LAYERS)}")
    return LAYERS[layer]


class Distiller(nn.Module):
    """``D_n``: 1x1 convolution ``C -> C_n`` then a layer norm.

    The norm is ``GroupNorm(1, C_n)`` (per sample, over channels and space,
    per-channel affine), which works on any frame size.
    """

    def __init__(self, hidden: int, source_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(hidden, source_channels, 1)
        self.norm = nn.GroupNorm(1, source_channels)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(memory))


class TMUCell(ConvLSTMCell):
    """ConvLSTM cell with transferable memory from ``N = len(source_channels)`` sources.

    Parameters
    ----------
    in_channels, hidden, kernel, layer_norm, forget_bias
        As :class:`~nowcast.models.cells.ConvLSTMCell`.
    source_channels
        Memory channels ``C_n`` of each source's bottom layer. With none, the
        cell has exactly the parameters of a ConvLSTM cell and computes the
        same outputs (tested by copying weights).
    variant
        ``"sum"``: the memory update as written in the paper,
        ``C_t = C'_t + sum_n [T_n * D_n + (1 - T_n) * C'_t]``, which can scale
        the memory by up to ``N + 1`` per step; ``"normalized_sum"`` divides
        the sum by ``N`` (still ``C' + mean_n[...]``, which multiplies ``C'``
        by ~1.5 per step at ``T = 0.5``: measured, the memory explodes over a
        closed-loop rollout); ``"convex"`` **[project]** mixes instead of
        adding, ``C_t = (1 - mean_n T_n) * C'_t + mean_n T_n * P_n(D_n)``, a
        convex combination of the cell's own memory and the distilled ones,
        so ``|C|`` stays bounded by the larger of the two whatever the number
        of steps (tested over 24 closed-loop steps); ``"competitive"``
        **[project]** takes the same share ``s = mean_n T_n`` of distilled
        memory but lets the sources compete for it, ``C_t = (1 - s) * C'_t +
        s * sum_n softmax_n(tau_n) * P_n(D_n)`` (``tau_n`` the gate
        pre-activations, the softmax over sources per cell): where one
        source's gate is far the largest its memory alone is let in, where
        the convex mean dilutes every source by ``1/N`` (the thirty-fourth
        round measured the convex gates half open for every source on every
        test set). Bounded as the convex variant.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        kernel: int = 5,
        source_channels: Sequence[int] = (),
        variant: Variant = "sum",
        layer_norm: bool = True,
        forget_bias: float = 1.0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"TMU variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        super().__init__(in_channels, hidden, kernel, layer_norm, forget_bias, extra_gates=len(source_channels))
        self.source_channels = [int(c) for c in source_channels]
        self.variant = variant
        self.distillers = nn.ModuleList(Distiller(hidden, c) for c in self.source_channels)
        # Where C_n != C the distilled memory is projected back to C channels.
        self.projections = nn.ModuleList(
            nn.Identity() if c == hidden else nn.Conv2d(c, hidden, 1) for c in self.source_channels
        )

    @property
    def n_sources(self) -> int:
        return len(self.source_channels)

    @property
    def _fused(self) -> bool:
        """All sources have the same memory channels: distillers, projections and the mix run once for all."""
        return len(set(self.source_channels)) == 1

    def distill(self, c_prime: torch.Tensor) -> torch.Tensor:
        """``(B, N*C_s, H, W)``: every ``Ĉ_n = D_n(C'_t)`` at once, source ``n`` in channels ``n C_s .. (n+1) C_s``.

        For sources with equal memory channels ``C_s``: one 1x1 convolution
        with the distillers' weights stacked and one group norm with a group
        per source, the same numbers as running :class:`Distiller` ``N``
        times (each norm's one group is one group here), at a quarter of the
        calls (on 512x512 forecasts the four small calls per step cost more
        than their arithmetic).
        """
        weight = torch.cat([d.conv.weight for d in self.distillers])
        bias = torch.cat([d.conv.bias for d in self.distillers])
        return F.group_norm(F.conv2d(c_prime, weight, bias), self.n_sources,
                            torch.cat([d.norm.weight for d in self.distillers]),
                            torch.cat([d.norm.bias for d in self.distillers]), self.distillers[0].norm.eps)

    def project(self, distilled: torch.Tensor) -> torch.Tensor:
        """``(B, N*C, H, W)``: every ``P_n(Ĉ_n)`` of :meth:`distill`'s output (one grouped 1x1 convolution)."""
        if self.source_channels[0] == self.hidden:  # every P_n is the identity
            return distilled
        weight = torch.cat([p.weight for p in self.projections])
        bias = torch.cat([p.bias for p in self.projections])
        return F.conv2d(distilled, weight, bias, groups=self.n_sources)

    def step(self, x: torch.Tensor, state: State) -> tuple[State, list[torch.Tensor]]:
        """One step; returns the new ``(h, c)`` and the distilled memories ``[Ĉ_n]``."""
        h, c = state
        gates = self.gates(x, h)  # [i, f, o, g, tau_1 .. tau_N], one conv
        h_new, c_prime = self.lstm_update(gates, c)  # C'_t and H_t = o * tanh(C'_t)
        if not self.n_sources:
            return (h_new, c_prime), []
        C, N = self.hidden, self.n_sources
        if self.variant == "convex" and self._fused:  # the zoo's case: each term once for all sources
            flat = self.distill(c_prime)
            t = torch.sigmoid(gates[:, 4 * C : (4 + N) * C])  # every T_n
            weighted = t * self.project(flat)
            share, mixed = t[:, :C], weighted[:, :C]
            for n in range(1, N):  # the sums of the general form below, in its order
                share = share + t[:, n * C : (n + 1) * C]
                mixed = mixed + weighted[:, n * C : (n + 1) * C]
            c_new = (1.0 - share / N) * c_prime + mixed / N
            Cs = self.source_channels[0]
            return (h_new, c_new), [flat[:, n * Cs : (n + 1) * Cs] for n in range(N)]
        distilled = [d(c_prime) for d in self.distillers]  # Ĉ_n = D_n(C'_t)
        if self.variant == "competitive":
            tau = torch.stack([gates[:, (4 + n) * C : (5 + n) * C] for n in range(N)])
            share = torch.sigmoid(tau).mean(dim=0)
            choice = torch.softmax(tau, dim=0)
            mixed = torch.zeros_like(c_prime)
            for w_n, d_n, project in zip(choice, distilled, self.projections):
                mixed = mixed + w_n * project(d_n)
            c_new = (1.0 - share) * c_prime + share * mixed
            return (h_new, c_new), distilled
        gates_t = [torch.sigmoid(gates[:, (4 + n) * C : (5 + n) * C]) for n in range(N)]  # T_n
        if self.variant == "convex":
            share = torch.zeros_like(c_prime)
            mixed = torch.zeros_like(c_prime)
            for t_n, d_n, project in zip(gates_t, distilled, self.projections):
                share = share + t_n
                mixed = mixed + t_n * project(d_n)
            c_new = (1.0 - share / N) * c_prime + mixed / N
            return (h_new, c_new), distilled
        transfer = torch.zeros_like(c_prime)
        for t_n, d_n, project in zip(gates_t, distilled, self.projections):
            transfer = transfer + t_n * project(d_n) + (1.0 - t_n) * c_prime
        if self.variant == "normalized_sum":
            transfer = transfer / N
        c_new = c_prime + transfer  # memory carried to step t+1
        return (h_new, c_new), distilled

    def forward(self, x: torch.Tensor, state: State) -> State:  # type: ignore[override]
        """Like a ConvLSTM cell: ``(h, c)`` only (see :meth:`step` for the distilled memories)."""
        return self.step(x, state)[0]


class MemoryBank(nn.Module):
    """Runs the frozen sources on the target's input frames; returns their memories.

    Only each source's *bottom* layer matters: in a stacked ConvLSTM the
    bottom memory depends on the input frames and its own state alone, so the
    upper layers and output heads of the sources are never run. The sources
    see the true frames (teacher forcing), under ``no_grad`` and in eval mode.

    When all sources share input channels, hidden size, kernel and norm (the
    usual zoo), they are advanced *together*: the input part of every gate
    convolution is computed for all steps and all sources in one convolution
    (the frames are known in advance), and the recurrent part for all sources
    in one grouped convolution per step. Otherwise each source is stepped in
    turn. Both give the sources' own memories up to float rounding (tested).

    With ``layer="top"`` **[project]** the memory collected is each source's
    *top* layer's: every layer of every source is run (teacher forcing as
    above), each source in turn. The thirty-fifth round measured the bottom
    memory to be, to 97-99 %, what any ConvLSTM reading the same frames
    holds; a source's top memory is where it keeps what it makes of them.

    Parameters
    ----------
    sources
        Frozen :class:`~nowcast.models.predictor.Predictor` instances; their
        patch size must equal the target's (memories must align in space).
    layer
        ``"bottom"`` (the paper's) or ``"top"``.
    """

    def __init__(self, sources: Sequence["Predictor"], layer: str = "bottom") -> None:
        super().__init__()
        index = layer_index(layer)
        self.layer = layer
        self.sources = nn.ModuleList(sources)
        for s in self.sources:
            s.requires_grad_(False)
            s.eval()
        for s in self.sources:
            if any(isinstance(cell, TMUCell) and cell.n_sources for cell in s.cells):
                raise ValueError("a source must be a plain ConvLSTM predictor, not a TMU target")
        cells = [s.cells[index] for s in self.sources]
        self.source_channels = [c.hidden for c in cells]
        self.fused = layer == "bottom" and len(cells) > 0 and self._compatible(cells)
        if self.fused:
            self._build_fused(cells)

    @staticmethod
    def _compatible(cells: list[ConvLSTMCell]) -> bool:
        first = cells[0]
        return all(
            c.in_channels == first.in_channels
            and c.hidden == first.hidden
            and c.kernel == first.kernel
            and c.forget_bias == first.forget_bias
            and type(c.norm) is type(first.norm)
            for c in cells
        )

    def _build_fused(self, cells: list[ConvLSTMCell]) -> None:
        k_in = cells[0].in_channels
        weights = [c.conv.weight.detach() for c in cells]
        self.register_buffer("w_x", torch.cat([w[:, :k_in] for w in weights]).contiguous(), persistent=False)
        self.register_buffer("w_h", torch.cat([w[:, k_in:] for w in weights]).contiguous(), persistent=False)
        self.register_buffer("b", torch.cat([c.conv.bias.detach() for c in cells]), persistent=False)
        self.layer_norm = isinstance(cells[0].norm, nn.GroupNorm)
        if self.layer_norm:
            self.register_buffer("gn_w", torch.cat([c.norm.weight.detach() for c in cells]), persistent=False)
            self.register_buffer("gn_b", torch.cat([c.norm.bias.detach() for c in cells]), persistent=False)
            self.gn_eps = cells[0].norm.eps
        self.hidden = cells[0].hidden
        self.kernel = cells[0].kernel
        self.forget_bias = cells[0].forget_bias

    def train(self, mode: bool = True) -> "MemoryBank":
        """Sources stay in eval mode whatever the target does."""
        super().train(mode)
        for s in self.sources:
            s.eval()
        return self

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    @torch.no_grad()
    def forward(self, folded: torch.Tensor) -> list[torch.Tensor]:
        """Memories of every source at every step.

        Parameters
        ----------
        folded
            ``(B, S, p*p, h, w)``: the patch-folded frames fed at steps
            ``0 .. S-1`` (the target's inputs, true frames).

        Returns
        -------
        list of torch.Tensor
            One ``(B, S, C_n, h, w)`` tensor per source: the memory ``C^n_t``
            of its bottom (``layer="top"``: top) layer after step ``t``.
        """
        if self.fused:
            return self._forward_fused(folded)
        out = []
        B, S, _, hh, ww = folded.shape
        for source in self.sources:
            cells = source.cells[:1] if self.layer == "bottom" else source.cells  # the top needs every layer below it
            states = [cell.init_state(B, hh, ww, folded) for cell in cells]
            mems = []
            for t in range(S):
                inp = folded[:, t]
                for k, cell in enumerate(cells):
                    states[k] = cell(inp, states[k])
                    inp = states[k][0]
                mems.append(states[-1][1])
            out.append(torch.stack(mems, dim=1))
        return out

    def _forward_fused(self, folded: torch.Tensor) -> list[torch.Tensor]:
        B, S, K, hh, ww = folded.shape
        N, C = self.n_sources, self.hidden
        pad = self.kernel // 2
        # Input part of the gates of all sources at all steps: one convolution.
        gx = F.conv2d(folded.reshape(B * S, K, hh, ww), self.w_x, self.b, padding=pad)
        gx = gx.view(B, S, N * 4 * C, hh, ww)
        h = folded.new_zeros((B, N * C, hh, ww))
        c = folded.new_zeros((B, N, C, hh, ww))
        mems = []
        for t in range(S):
            gates = gx[:, t] + F.conv2d(h, self.w_h, None, padding=pad, groups=N)
            if self.layer_norm:
                gates = F.group_norm(gates, N, self.gn_w, self.gn_b, self.gn_eps)
            gates = gates.view(B, N, 4 * C, hh, ww)
            i = torch.sigmoid(gates[:, :, 0 * C : 1 * C])
            f = torch.sigmoid(gates[:, :, 1 * C : 2 * C] + self.forget_bias)
            o = torch.sigmoid(gates[:, :, 2 * C : 3 * C])
            g = torch.tanh(gates[:, :, 3 * C : 4 * C])
            c = f * c + i * g
            h = (o * torch.tanh(c)).reshape(B, N * C, hh, ww)
            mems.append(c)
        stacked = torch.stack(mems, dim=1)  # (B, S, N, C, h, w)
        return [stacked[:, :, n] for n in range(N)]
