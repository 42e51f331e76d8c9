"""Loads a backbone exported by `fa export --backbone` into torchvision's ResNet and checks
that its forward pass matches the features fa computed on the same input.

usage: check_export.py BACKBONE.safetensors IO.safetensors DEPTH
IO holds `input` [N,3,H,W] and `features` [N,D] (fa's backbone in eval mode).
Exits 0 when they agree within 1e-4 (absolute and relative), 1 otherwise.
"""
import sys

import torch
import torchvision
from safetensors.torch import load_file


def main():
    backbone_path, io_path, depth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = getattr(torchvision.models, f"resnet{depth}")()
    model.fc = torch.nn.Identity()
    state = load_file(backbone_path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("fc.")]
    if missing or unexpected:
        print(f"missing {missing}, unexpected {unexpected}")
        return 1
    io = load_file(io_path)
    model.eval()
    with torch.no_grad():
        ours = model(io["input"])
    theirs = io["features"]
    close = torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    print(f"{len(state)} tensors loaded, max abs difference {float((ours - theirs).abs().max()):.3g}")
    return 0 if close else 1


if __name__ == "__main__":
    sys.exit(main())
