"""The custom-cell example of docs/core.md runs, and its cell keeps the contract."""

import re
from pathlib import Path

import torch

import memnets

DOC = Path(__file__).resolve().parents[1] / "docs" / "core.md"


def test_custom_cell_example_runs_and_matches_a_step_loop():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    namespace: dict = {}
    try:
        exec(compile(code, str(DOC), "exec"), namespace)
        out, state = namespace["out"], namespace["state"]
        assert out.shape == (12, 4, 16) and state.h.shape == (4, 16)
        assert torch.count_nonzero(out[1:, 3]) == 0  # the length-1 sequence is padded after t=0
        # against the cell stepped by hand over the third sequence (length 5)
        cell = namespace["layer"].cell
        x = torch.randn(5, 1, 8)
        h = cell.init_state(1)
        for t in range(5):
            y, h = cell(x[t], h)
        torch.testing.assert_close(namespace["layer"](x)[1].h, h.h)
        assert namespace["lstm_layout"](torch.randn(3, 2, 8))[0].shape == (3, 2, 16)
        assert "weight_f_l1" in namespace["lstm_layout"].state_dict()
    finally:
        memnets.cells.registry._CELLS.pop("mgu", None)
