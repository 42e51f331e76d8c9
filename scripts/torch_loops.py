"""The two PyTorch training loops `fa train` is measured against (issue 12), fixed before fa
was tuned and left alone since.

Both train the model of models/cifar10/parallel_predictor.fa, cell fa=nn: ResNet-18 with the
CIFAR stem, projector [2048, 2048, 256] with batch norm after every layer, predictor
[4096, 256] with batch norm on the hidden layer, nearest-neighbour feature augmentation from
a bank of L2-normalised projections (default 16,384, the sample itself excluded), InfoNCE
(tau 0.2) of the prediction against the positive and against its neighbour, averaged; SGD
with lr 0.12 per 256 images, momentum 0.9, weight decay 5e-4 on every parameter. The views
are lightly's CIFAR-10 SimCLR transform: random resized crop to 32 with scale (0.08, 1),
flip, colour jitter 0.4/0.4/0.4/0.1 with p 0.8, greyscale p 0.2, ImageNet normalisation.

- typical: the images decoded once into a list of uint8 tensors; a Dataset whose
  __getitem__ applies torchvision's v2 transforms to one image (two views); a DataLoader in
  the main process (num_workers 0, shuffled, batches of --batch); the model in the default
  memory format; torch.optim.SGD with its defaults.
- expert: the whole split as one uint8 tensor on the device; both views augmented batched
  on the device with per-sample parameters (crop and flip as one affine resampling,
  bilinear; brightness, contrast, saturation and hue in that fixed order; greyscale); the
  model and the batches channels_last; torch.optim.SGD with foreach=True; optionally
  torch.compile (--compile).

On CUDA, --precision bf16 runs the forward pass under bfloat16 autocast (losses in float32),
as fa does. Prints one JSON line: loop, images_per_s (median over the timed steps),
ms_per_step, peak memory (CUDA allocator peak, else the process's peak RSS), the settings.
"""

import argparse
import io
import json
import resource
import statistics
import tarfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.io import decode_jpeg
from torchvision.transforms import v2

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_cifar(archive, limit):
    """uint8 images [N, 3, 32, 32] of an image-folder tar.gz (class folders of JPEGs)."""
    images = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            data = tar.extractfile(member).read()
            images.append(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)))
            if limit and len(images) >= limit:
                break
    return torch.stack(images)


def mlp(inputs, widths, last_norm):
    layers = []
    for index, width in enumerate(widths):
        last = index + 1 == len(widths)
        norm = last_norm if last else True
        layers.append(nn.Linear(inputs, width, bias=not norm))
        if norm:
            layers.append(nn.BatchNorm1d(width))
        if not last:
            layers.append(nn.ReLU())
        inputs = width
    return nn.Sequential(*layers)


def build_model():
    encoder = torchvision.models.resnet18()
    encoder.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    encoder.maxpool = nn.Identity()
    encoder.fc = nn.Identity()
    projector = mlp(512, [2048, 2048, 256], True)
    predictor = mlp(256, [4096, 256], False)
    return encoder, projector, predictor


def info_nce(a, b, tau=0.2):
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def simclr_transform():
    return v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


class TwoViews(torch.utils.data.Dataset):
    """The typical Dataset: two independently augmented views of one image per item."""

    def __init__(self, images):
        self.images = list(images)
        self.transform = simclr_transform()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return self.transform(image), self.transform(image), index


def rgb_to_hsv(rgb):
    r, g, b = rgb.unbind(1)
    maximum, _ = rgb.max(1)
    minimum, _ = rgb.min(1)
    delta = maximum - minimum
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maximum == r, ((g - b) / safe) % 6, torch.where(maximum == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    saturation = torch.where(maximum > 0, delta / torch.where(maximum > 0, maximum, torch.ones_like(maximum)), torch.zeros_like(maximum))
    return torch.stack([hue, saturation, maximum], 1)


def hsv_to_rgb(hsv):
    h, s, v = hsv.unbind(1)
    k = lambda n: (n + h * 6) % 6  # noqa: E731
    channel = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return torch.stack([channel(5), channel(3), channel(1)], 1)


def batched_views(images, generator):
    """The expert loop's batched SimCLR augmentation of uint8 images [B, 3, H, W] on their
    device, each sample with its own random parameters."""
    batch, _, height, width = images.shape
    device = images.device
    x = images.float() / 255
    uniform = lambda *shape: torch.rand(*shape, device=device, generator=generator)  # noqa: E731
    # Random resized crop (area scale (0.08, 1), log-uniform ratio (3/4, 4/3)) and flip as one
    # affine grid per sample.
    area = 0.08 + (1 - 0.08) * uniform(batch)
    log_ratio = torch.log(torch.tensor(3 / 4, device=device)) + uniform(batch) * torch.log(torch.tensor(16 / 9, device=device))
    ratio = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * ratio).clamp(max=1.0)
    crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (uniform(batch) * (1 - crop_w) + crop_w / 2) * 2 - 1
    centre_y = (uniform(batch) * (1 - crop_h) + crop_h / 2) * 2 - 1
    flip = torch.where(uniform(batch) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = crop_w * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = crop_h
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, (batch, 3, height, width), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Colour jitter with p 0.8: brightness, contrast, saturation, hue.
    jitter = (uniform(batch) < 0.8).view(batch, 1, 1, 1)
    factor = lambda strength: (1 - strength + 2 * strength * uniform(batch)).view(batch, 1, 1, 1)  # noqa: E731
    luminance = lambda rgb: (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1)  # noqa: E731
    y = (x * factor(0.4)).clamp(0, 1)
    contrast = factor(0.4)
    y = (contrast * y + (1 - contrast) * luminance(y).mean((2, 3), keepdim=True)).clamp(0, 1)
    saturation = factor(0.4)
    y = (saturation * y + (1 - saturation) * luminance(y)).clamp(0, 1)
    hsv = rgb_to_hsv(y)
    shift = (uniform(batch) * 0.2 - 0.1).view(batch, 1, 1)
    hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
    y = hsv_to_rgb(hsv)
    x = torch.where(jitter, y, x)
    # Greyscale with p 0.2.
    grey = luminance(x).expand(-1, 3, -1, -1)
    x = torch.where((uniform(batch) < 0.2).view(batch, 1, 1, 1), grey, x)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def peak_memory_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=["typical", "expert"], required=True)
    parser.add_argument("--train", required=True, help="CIFAR-10 train.tar.gz (image folders of JPEGs)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bank", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (expert loop)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = load_cifar(args.train, args.limit)
    if len(images) < args.batch * (args.steps + args.warmup):
        # Enough batches without a second pass over the data.
        repeat = -(-args.batch * (args.steps + args.warmup) // len(images))
        images = images.repeat(repeat, 1, 1, 1)

    encoder, projector, predictor = build_model()
    modules = nn.ModuleList([encoder, projector, predictor]).to(device)
    expert = args.loop == "expert"
    if expert:
        modules = modules.to(memory_format=torch.channels_last)
    lr = 0.12 * args.batch / 256
    optimiser = torch.optim.SGD(modules.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, foreach=True if expert else None)
    online = lambda x: predictor(projector(encoder(x)))  # noqa: E731
    target = lambda x: projector(encoder(x))  # noqa: E731
    if expert and args.compile:
        online = torch.compile(online)
        target = torch.compile(target)
    autocast = args.precision == "bf16" and device.type == "cuda"
    bank_size = args.bank
    bank = F.normalize(torch.randn(bank_size, 256, device=device), dim=1)
    bank_indices = torch.full((bank_size,), -1, device=device)
    pointer = 0

    def step(anchor_view, positive_view, indices):
        nonlocal pointer
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            prediction = online(anchor_view)
            positive = target(positive_view).detach()
        unit = F.normalize(positive.float(), dim=1)
        similarity = (unit @ bank.T).masked_fill(bank_indices[None, :] == indices[:, None], float("-inf"))
        neighbour = bank[similarity.topk(1, dim=1).indices[:, 0]]
        loss = (info_nce(prediction, positive) + info_nce(prediction, neighbour)) / 2
        slots = (pointer + torch.arange(len(indices), device=device)) % bank_size
        bank[slots] = unit
        bank_indices[slots] = indices
        pointer = (pointer + len(indices)) % bank_size
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        # The loss is read back every step, as any loop that logs it does (fa does too).
        return loss.item()

    def batches():
        if expert:
            on_device = images.to(device)
            generator = torch.Generator(device=device)
            generator.manual_seed(0)
            order = torch.randperm(len(on_device), device=device, generator=generator)
            for start in range(0, len(order) - args.batch + 1, args.batch):
                indices = order[start : start + args.batch]
                batch = on_device[indices]
                yield batched_views(batch, generator), batched_views(batch, generator), indices
        else:
            loader = torch.utils.data.DataLoader(TwoViews(images), batch_size=args.batch, shuffle=True, drop_last=True, num_workers=0)
            for anchor, positive, indices in loader:
                yield anchor.to(device, non_blocking=True), positive.to(device, non_blocking=True), indices.to(device)

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    source = batches()
    for index in range(args.warmup + args.steps):
        synchronise()
        started = time.perf_counter()
        anchor, positive, indices = next(source)
        step(anchor, positive, indices)
        synchronise()
        if index >= args.warmup:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(
        json.dumps(
            {
                "loop": args.loop + (" + torch.compile" if expert and args.compile else ""),
                "images_per_s": args.batch / median,
                "ms_per_step": median * 1000,
                "peak_memory_mib": peak_memory_mib(device),
                "device": str(device),
                "batch": args.batch,
                "bank": args.bank,
                "precision": args.precision,
                "steps": args.steps,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
