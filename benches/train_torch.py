"""The quickstart model trained in plain PyTorch, timed like benches/train.rs times `fa train`.

models/quickstart.fa: a convnet encoder (widths from --widths, which benches/train.rs takes
from the file), MLP projector and predictor, NN feature augmentation from a 4,096-entry bank
with exclude_self, InfoNCE (tau 0.2) on two terms averaged, SGD lr 0.5 per 256, momentum
0.9, weight decay 5e-4. Each step draws a batch of uint8 Fashion-MNIST images already in
memory and augments it with torchvision's v2 transforms on tensors, one image at a time as a
Dataset's __getitem__ would (strong view: bicubic antialiased resized crop with scale
(0.3, 1), flip, brightness/contrast jitter 0.6 p 0.8, blur p 0.5 with sigma in (0.1, 1) and a
3-tap kernel, normalise; light view: the same without blur).

Prints one JSON line: images_per_s, ms_per_step, and the augmentation's share of a step.
"""

import argparse
import gzip
import json
import os
import time

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from step_torch import convnet, info_nce, mlp

MEAN, STD = 0.286, 0.353


def load_images(root):
    path = os.path.join(root, "fashion-mnist", "train-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as file:
        data = file.read()
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    pixels = torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8)
    return pixels.reshape(count, 1, rows, cols)


def pipelines(size):
    # As models/quickstart.fa: crop scale (0.3, 1), flip, brightness/contrast jitter p 0.8.
    crop = v2.RandomResizedCrop(size, scale=(0.3, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    jitter = v2.RandomApply([v2.ColorJitter(brightness=0.6, contrast=0.6)], p=0.8)
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([MEAN], [STD])]
    strong = v2.Compose([crop, v2.RandomHorizontalFlip(), jitter, v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.5), *tail])
    light = v2.Compose([crop, v2.RandomHorizontalFlip(), jitter, *tail])
    return strong, light


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--widths", default="16,32,64", help="the convnet encoder's widths")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    images = load_images(args.data_root)
    size = images.shape[-1]
    strong, light = pipelines(size)
    widths = [int(w) for w in args.widths.split(",")]
    f = convnet(1, widths)
    g = mlp(widths[-1], [256, 128], True)
    q = mlp(128, [256, 128], False)
    modules = torch.nn.ModuleList([f, g, q]).to(device)
    optimiser = torch.optim.SGD(modules.parameters(), lr=0.5 * args.batch / 256, momentum=0.9, weight_decay=5e-4)
    bank_size = 4096
    bank = F.normalize(torch.randn(bank_size, 128, device=device), dim=1)
    bank_indices = torch.full((bank_size,), -1, device=device)
    pointer = 0
    order = torch.randperm(images.shape[0])

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(index):
        nonlocal pointer
        start = time.perf_counter()
        indices = order[index * args.batch : (index + 1) * args.batch]
        batch = images[indices]
        anchor_view = torch.stack([strong(image) for image in batch]).to(device, non_blocking=True)
        positive_view = torch.stack([light(image) for image in batch]).to(device, non_blocking=True)
        augmented = time.perf_counter() - start
        indices = indices.to(device)
        prediction = q(g(f(anchor_view)))
        positive = g(f(positive_view)).detach()
        unit = F.normalize(positive, dim=1)
        similarity = (unit @ bank.T).masked_fill(bank_indices[None, :] == indices[:, None], float("-inf"))
        neighbour = bank[similarity.topk(1, dim=1).indices[:, 0]]
        loss = (info_nce(prediction, positive) + info_nce(prediction, neighbour)) / 2
        slots = (pointer + torch.arange(args.batch, device=device)) % bank_size
        bank[slots] = unit
        bank_indices[slots] = indices
        pointer = (pointer + args.batch) % bank_size
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        # The loss is read back every step, as any training loop that logs it does.
        loss.item()
        return augmented

    for index in range(args.warmup):
        step(index)
    synchronise()
    augmentation = 0.0
    start = time.perf_counter()
    for index in range(args.warmup, args.warmup + args.steps):
        augmentation += step(index)
    synchronise()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "images_per_s": args.steps * args.batch / seconds,
                "ms_per_step": seconds * 1000 / args.steps,
                "augment_ms_per_step": augmentation * 1000 / args.steps,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
