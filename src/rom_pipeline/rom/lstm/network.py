"""The LSTM network: a window of normalised latent states -> the next normalised state.

In per-mode z-scored units z (science.md §7)::

    h_T = LSTM(z_{k−w}, …, z_{k−1})            last hidden state of the top layer, (hidden_units,)
    o   = W · LayerNorm(h_T) + b                (r,)   (LayerNorm optional)
    ẑ_k = o              (direct output)
    ẑ_k = z_{k−1} + o    (``residual``: the head predicts the normalised increment)
    ẑ_k = z_{k−1} + F(Δz) − F(0)   (``differences``: F is the LSTM + head above run on the
                        w − 1 increments Δz of the window; a constant window predicts itself)
    o  += A · vec(sequence)   (``linear_skip_frames`` > 0: a linear autoregressive path beside
                        the LSTM, so the network is an MVAR-like linear map plus a nonlinear
                        correction)
"""
from __future__ import annotations

import torch
from torch import nn

from rom_pipeline.rom.lstm._checks import check_int


def count_lstm_parameters(input_size: int, hidden_units: int, num_layers: int) -> int:
    """Trainable parameters of ``torch.nn.LSTM(input_size, hidden_units, num_layers)``.

    Layer ℓ with input width d_ℓ (d_1 = input_size, d_ℓ = hidden_units above) has four gates,
    each with an input matrix (h × d_ℓ), a recurrent matrix (h × h) and PyTorch's two bias
    vectors (b_ih, b_hh)::

        n = Σ_ℓ 4 (d_ℓ h + h²) + 8 h
    """
    for key, value in (("input_size", input_size), ("hidden_units", hidden_units),
                       ("num_layers", num_layers)):
        check_int(key, value, minimum=1)
    h = int(hidden_units)
    total = 0
    for layer in range(int(num_layers)):
        d_in = int(input_size) if layer == 0 else h
        total += 4 * (d_in * h + h * h) + 8 * h
    return total


class SequenceToOneLSTM(nn.Module):
    """LSTM over a (batch, w, r) window -> next normalised state (batch, r).

    Stacked ``nn.LSTM`` (batch_first, dropout between layers) -> last hidden state of the top
    layer -> optional ``LayerNorm`` -> ``Linear`` head to r. With ``residual`` the head output is
    added to the newest input frame (an increment model). With ``differences`` the network reads
    the window's w − 1 increments and its output for an all-zero increment sequence is subtracted,
    so every constant state is an exact fixed point in eval mode: the nonlinear counterpart of the
    MVAR's error-correction rank 0 (no drift, every shape neutral unless the increments say
    otherwise). With ``linear_skip_frames`` = the length of the read sequence, a bias-free linear
    map of the flattened sequence is added to the head's output.
    """

    def __init__(self, n_modes: int, hidden_units: int, num_layers: int, dropout: float = 0.0,
                 use_layer_norm: bool = True, residual: bool = False,
                 differences: bool = False, linear_skip_frames: int = 0) -> None:
        super().__init__()
        # nn.LSTM applies dropout only between stacked layers; with one layer it would just warn.
        self.lstm = nn.LSTM(n_modes, hidden_units, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.norm = nn.LayerNorm(hidden_units) if use_layer_norm else nn.Identity()
        self.head = nn.Linear(hidden_units, n_modes)
        self.residual = residual
        self.differences = differences
        # linear_skip_frames > 0: a linear map of the flattened sequence the LSTM reads (its
        # length in frames) is added to the head output, no bias (the head has one)
        self.skip = (nn.Linear(linear_skip_frames * n_modes, n_modes, bias=False)
                     if linear_skip_frames else None)

    def _read(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM -> last hidden state of the top layer -> (LayerNorm) -> head (+ linear skip):
        (output, head output), each (batch, r)."""
        hidden, _ = self.lstm(sequence)
        head = self.head(self.norm(hidden[:, -1]))
        out = head
        if self.skip is not None:
            out = out + self.skip(sequence.flatten(1))
        return out, head

    def forward_with_correction(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """windows (batch, w, r) -> (next state, nonlinear correction), each (batch, r).

        The correction c is the part of the prediction that is not the linear path (the last
        frame, the head's bias and the skip map): c = W · LayerNorm(h_T), and for ``differences``
        c = W · LayerNorm(h_T(Δz)) − W · LayerNorm(h_T(0)). ``correction_penalty`` penalises it.
        """
        if self.differences:
            steps = windows[:, 1:] - windows[:, :-1]
            out, head = self._read(steps)
            out_0, head_0 = self._read(torch.zeros_like(steps[:1]))
            return windows[:, -1] + out - out_0, head - head_0
        out, head = self._read(windows)
        return (windows[:, -1] + out if self.residual else out), head - self.head.bias

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (batch, w, r), oldest first -> next state (batch, r), normalised units."""
        return self.forward_with_correction(windows)[0]
