"""A short tour of the recurrent core, printed to the terminal (``memnets demo``)."""

from __future__ import annotations

import time

import torch

import memnets


def run_demo() -> None:
    torch.manual_seed(0)
    L, N, H_in, H = 30, 8, 16, 32
    x = torch.randn(L, N, H_in)
    lengths = torch.randint(5, L + 1, (N,))

    reference = torch.nn.LSTM(H_in, H, num_layers=2, bidirectional=True)
    ours = memnets.LSTM(H_in, H, num_layers=2, bidirectional=True, fused=False)
    ours.load_state_dict(reference.state_dict())  # same keys, loads strictly
    with torch.no_grad():
        y_ref, (h_ref, _) = reference(x)
        y, (h, _) = ours(x)
    print("memnets.LSTM (generic path) vs torch.nn.LSTM, 2 layers, bidirectional:")
    print(f"  max |output difference| = {float((y - y_ref).abs().max()):.2e}")
    print(f"  max |h_n difference|    = {float((h - h_ref).abs().max()):.2e}")

    for name in ("elman", "gru", "lstm"):
        cell = memnets.make_cell(name, input_size=H_in, hidden_size=H)
        layer = memnets.Recurrent(cell)
        start = time.perf_counter()
        with torch.no_grad():
            out, state = layer(x, lengths=lengths)
        ms = 1000 * (time.perf_counter() - start)
        padded_zero = all(
            bool((out[int(n_len):, n] == 0).all()) for n, n_len in enumerate(lengths)
        )
        print(
            f"Recurrent({type(cell).__name__}) over {N} sequences of lengths "
            f"{lengths.min().item()}..{lengths.max().item()}: output {tuple(out.shape)}, "
            f"state {type(state).__name__}, padded outputs zero: {padded_zero}, {ms:.1f} ms"
        )
    print("Cells available:", ", ".join(memnets.cell_names()))
