"""Writes tests/fixtures/data/torchvision.safetensors: reference outputs of torchvision's
functional image ops, computed in float64, for the parity tests in tests/data_parity.rs.

Run with the project's venv: .venv/bin/python scripts/fixtures_data.py
(torch 2.11.0, torchvision 0.26.0).
"""

import pathlib

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from safetensors.torch import save_file
from torchvision import transforms as v1
from torchvision.transforms import InterpolationMode

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "data" / "torchvision.safetensors"


def per_image(op, images, params):
    """Applies `op(image, param)` to each image with its own parameter, as the Rust ops do."""
    return torch.stack([op(image, param) for image, param in zip(images, params)])


def main():
    rng = np.random.default_rng(20240601)
    # Two 3x12x12 images with values k/255, like decoded uint8 data, in float64.
    images = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 12, 12)).astype(np.float64) / 255.0)
    # A few exact greys and primaries make the hue tie-breaking and the grey branch matter.
    images[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    images[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    images[0, :, 0, 2] = torch.tensor([0.2, 0.7, 0.7], dtype=torch.float64)
    images[1, :, 0, 0] = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)

    out = {"input": images}
    out["brightness"] = per_image(F.adjust_brightness, images, [1.3, 0.7])
    out["contrast"] = per_image(F.adjust_contrast, images, [0.6, 1.4])
    out["saturation"] = per_image(F.adjust_saturation, images, [1.7, 0.3])
    out["hue"] = per_image(F.adjust_hue, images, [0.23, -0.4])
    out["grayscale"] = F.rgb_to_grayscale(images, num_output_channels=3)
    out["solarize"] = F.solarize(images, 0.5)
    out["blur_5"] = F.gaussian_blur(images, kernel_size=[5, 5], sigma=[1.1, 1.1])
    out["blur_3"] = F.gaussian_blur(images, kernel_size=[3, 3], sigma=[0.6, 0.6])

    # Resized crops: (name, top, left, height, width, size). The first two enlarge, the
    # third shrinks the whole image (antialiasing), the last mixes both directions.
    crops = [("up", 2, 1, 7, 9, 16), ("up_small", 4, 4, 3, 5, 9), ("down", 0, 0, 12, 12, 5), ("mixed", 3, 2, 9, 6, 8)]
    for name, top, left, height, width, size in crops:
        for mode, label in [(InterpolationMode.BILINEAR, "bilinear"), (InterpolationMode.BICUBIC, "bicubic")]:
            result = F.resized_crop(images, top, left, height, width, [size, size], interpolation=mode, antialias=True)
            out[f"crop_{name}_{label}"] = result
            out[f"crop_{name}_box"] = torch.tensor([top, left, height, width, size], dtype=torch.float64)

    # RandomResizedCrop's sampling rule. Fallback boxes are deterministic: a scale range
    # that cannot fit forces them. Rows: height, width, ratio low, ratio high, then
    # torchvision's (top, left, height, width).
    fallbacks = []
    for height, width, low, high in [(40, 60, 3 / 4, 4 / 3), (60, 40, 3 / 4, 4 / 3), (32, 32, 3 / 4, 4 / 3), (100, 37, 0.5, 0.9), (37, 100, 1.5, 2.0), (50, 50, 2.0, 3.0)]:
        image = torch.zeros(1, height, width)
        top, left, h, w = v1.RandomResizedCrop.get_params(image, scale=(2.0, 3.0), ratio=(low, high))
        fallbacks.append([height, width, low, high, top, left, h, w])
    out["crop_fallbacks"] = torch.tensor(fallbacks, dtype=torch.float64)
    # Statistics of sampled boxes: mean height, mean width, mean and standard deviation of
    # the area fraction, over many draws (the Rust test draws its own and compares).
    torch.manual_seed(7)
    for side, ratio in [(32, (3 / 4, 4 / 3)), (224, (3 / 4, 4 / 3)), (24, (0.3, 3.0))]:
        image = torch.zeros(1, side, side)
        boxes = torch.tensor([v1.RandomResizedCrop.get_params(image, scale=(0.08, 1.0), ratio=ratio) for _ in range(40000)], dtype=torch.float64)
        area = boxes[:, 2] * boxes[:, 3] / side**2
        out[f"crop_stats_{side}"] = torch.tensor([side, ratio[0], ratio[1], boxes[:, 2].mean(), boxes[:, 3].mean(), area.mean(), area.std()], dtype=torch.float64)

    out = {key: value.contiguous() for key, value in out.items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT), metadata={"torch": torch.__version__, "torchvision": torchvision.__version__})
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
