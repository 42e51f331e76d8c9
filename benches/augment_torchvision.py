"""torchvision's BYOL augmentation on the same images as benches/augment.rs, for comparison.

Called by the Rust benchmark: python augment_torchvision.py RAW N C H W SIZE SECONDS.
RAW holds N*C*H*W uint8 bytes (NCHW). Prints one JSON line with images per second (two
views per image, one of each BYOL pipeline) for two usual set-ups, one image at a time as a
DataLoader worker does: PIL images through transforms v1, and uint8 tensors through v2.
"""

import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as v1
from torchvision.transforms import v2

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def kernel_size(side):
    size = int(round(side * 0.1))
    size = size + 1 if size % 2 == 0 else size
    return max(size, 3)


def pipelines_v1(size):
    def build(blur, solarize):
        return v1.Compose([
            v1.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=v1.InterpolationMode.BICUBIC),
            v1.RandomHorizontalFlip(),
            v1.RandomApply([v1.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v1.RandomGrayscale(p=0.2),
            v1.RandomApply([v1.GaussianBlur(kernel_size(size), sigma=(0.1, 2.0))], p=blur),
            v1.RandomSolarize(128, p=solarize),
            v1.ToTensor(),
            v1.Normalize(MEAN, STD),
        ])
    return build(1.0, 0.0), build(0.1, 0.2)


def pipelines_v2(size):
    def build(blur, solarize):
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size(size), sigma=(0.1, 2.0))], p=blur),
            v2.RandomSolarize(128, p=solarize),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ])
    return build(1.0, 0.0), build(0.1, 0.2)


def rate(images, pipelines, seconds):
    """Images per second over whole passes, at least `seconds` long after one warm-up image."""
    first, second = pipelines
    first(images[0]), second(images[0])
    done, start = 0, time.perf_counter()
    while True:
        for image in images:
            first(image)
            second(image)
        done += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main():
    raw, n, c, h, w, size, seconds = sys.argv[1], *map(int, sys.argv[2:7]), float(sys.argv[7])
    data = np.fromfile(raw, dtype=np.uint8).reshape(n, c, h, w)
    torch.manual_seed(0)
    if os.environ.get("FA_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["FA_BENCH_THREADS"]))
    pil = [Image.fromarray(image.transpose(1, 2, 0) if c == 3 else image[0]) for image in data]
    tensors = list(torch.from_numpy(data))
    result = {
        "pil_v1": rate(pil, pipelines_v1(size), seconds),
        "tensor_v2": rate(tensors, pipelines_v2(size), seconds),
        "threads": torch.get_num_threads(),
        "torchvision": __import__("torchvision").__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
