#!/usr/bin/env python3
"""Writes tests/data/prelu3.safetensors: the state dict of a PyTorch `nn.PReLU(3)` (key
`act.weight`, shape (3,)) with slopes set by hand, an input `x` (2, 3, 4) and PyTorch's output
`y = act(x)`, all float32. tests/prelu.rs loads the weight into this crate's `prelu(Some(3), ..)`
and checks `y` bit for bit.

Run from the repository root wherever PyTorch and safetensors are installed:
    python3 scripts/prelu_state_dict.py
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
act = torch.nn.PReLU(3)
with torch.no_grad():
    act.weight.copy_(torch.tensor([0.1, -0.3, 1.7]))
x = torch.randn(2, 3, 4)
x[0, 0, 0] = -0.0
x[1, 2, 3] = float("-inf")
y = act(x).detach()
state = {f"act.{k}": v.contiguous() for k, v in act.state_dict().items()}
state.update(x=x.contiguous(), y=y.contiguous())
save_file(state, "tests/data/prelu3.safetensors", metadata={"torch": torch.__version__})
print("wrote tests/data/prelu3.safetensors with", sorted(state), "torch", torch.__version__)
