"""The model of benches/step.rs in plain PyTorch, timed the same way (ms per training step).

Parallel-predictor-FA with NN augmentation from a 4,096-entry bank, InfoNCE (tau 0.2), SGD
momentum 0.9. Prints `ms_per_step X` for the Rust bench to read.
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


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


def convnet(channels, widths):
    layers = []
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def build(model):
    if model == "resnet18":
        encoder = torchvision.models.resnet18()
        encoder.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        encoder.maxpool = nn.Identity()
        encoder.fc = nn.Identity()
        return encoder, mlp(512, [2048, 2048, 256], True), mlp(256, [4096, 256], False), (3, 32), 256
    return convnet(1, [32, 64]), mlp(64, [256, 128], True), mlp(128, [256, 128], False), (1, 28), 128


def info_nce(a, b, tau=0.2):
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    f, g, q, (channels, size), width = build(args.model)
    modules = nn.ModuleList([f, g, q]).to(device)
    optimiser = torch.optim.SGD(modules.parameters(), lr=0.05, momentum=0.9)
    bank = F.normalize(torch.randn(4096, width, device=device), dim=1)
    bank_indices = torch.full((4096,), -1, device=device)
    pointer = 0
    views = [torch.randn(args.batch, channels, size, size, device=device) for _ in range(2)]
    indices = torch.arange(args.batch, device=device)

    def step():
        nonlocal pointer
        prediction = q(g(f(views[0])))
        positive = g(f(views[1])).detach()
        unit = F.normalize(positive, dim=1)
        similarity = unit @ bank.T
        similarity = similarity.masked_fill(bank_indices[None, :] == indices[:, None], float("-inf"))
        neighbour = bank[similarity.topk(1, dim=1).indices[:, 0]]
        loss = (info_nce(prediction, positive) + info_nce(prediction, neighbour)) / 2
        slots = (pointer + torch.arange(args.batch, device=device)) % 4096
        bank[slots] = unit
        bank_indices[slots] = indices
        pointer = (pointer + args.batch) % 4096
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        step()
    synchronise()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronise()
    print(f"ms_per_step {(time.perf_counter() - start) * 1000 / args.steps:.3f}")


if __name__ == "__main__":
    main()
