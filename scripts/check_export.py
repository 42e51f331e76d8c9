"""Loads backbones exported by `fa export` into torchvision's or timm's ResNet with
strict=True and checks that their forward passes match the features fa computed on the
same input.

usage: check_export.py LIBRARY DEPTH BACKBONE.safetensors IO.safetensors [LIBRARY DEPTH BACKBONE IO ...]
LIBRARY is torchvision or timm; IO holds `input` [N,3,H,W] and `features` [N,D] (fa's
backbone in eval mode). Prints one line per case; exits 0 when every case loads strictly and
agrees within 1e-4 (absolute and relative), 1 otherwise.
"""
import sys

import torch
from safetensors.torch import load_file


def build(library, depth):
    if library == "torchvision":
        import torchvision

        model = getattr(torchvision.models, f"resnet{depth}")()
        model.fc = torch.nn.Identity()
        return model
    if library == "timm":
        import timm

        # num_classes=0 leaves the classifier out: the pooled features come out.
        return timm.create_model(f"resnet{depth}", pretrained=False, num_classes=0)
    raise SystemExit(f"unknown library {library}")


def check(library, depth, backbone_path, io_path):
    model = build(library, int(depth))
    state = load_file(backbone_path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        print(f"{library} resnet{depth}: strict load failed: {error}")
        return False
    io = load_file(io_path)
    model.eval()
    with torch.no_grad():
        ours = model(io["input"])
    theirs = io["features"]
    close = ours.shape == theirs.shape and torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    difference = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else float("inf")
    print(f"{library} resnet{depth}: {len(state)} tensors loaded strictly, max abs difference {difference:.3g}")
    return close


def main():
    args = sys.argv[1:]
    if not args or len(args) % 4:
        print(__doc__)
        return 2
    results = [check(*args[i : i + 4]) for i in range(0, len(args), 4)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
