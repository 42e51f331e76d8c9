"""Writes the PyTorch reference values for the lowering parity tests (tests/lower_parity.rs).

Run with the project's virtualenv: `.venv/bin/python scripts/fixtures_lower.py`.
Everything is computed in float64. Module weights are not stored: both sides fill them with
the same closed-form `synthetic` function, so each fixture stays a few kilobytes.
"""

import copy
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "lower")
torch.manual_seed(20240601)
torch.set_default_dtype(torch.float64)


def synthetic(name, shape):
    """Deterministic weights from the parameter's name; mirrored by `synthetic` in the Rust test."""
    numel = math.prod(shape)
    phase = sum(name.encode()) % 1000 * 0.001
    base = torch.sin(torch.arange(numel, dtype=torch.float64) * 0.731 + phase).reshape(shape)
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.endswith("running_var"):
        return 1.0 + 0.5 * base * base
    if name.endswith("running_mean"):
        return 0.1 * base
    if name.endswith("bias"):
        return 0.1 * base
    if len(shape) == 1:
        return 1.0 + 0.2 * base
    fan_in = math.prod(shape[1:])
    return base * math.sqrt(2.0 / fan_in)


def load_synthetic(module):
    state = {name: synthetic(name, tuple(t.shape)) for name, t in module.state_dict().items()}
    module.load_state_dict(state)


def info_nce(a, b, tau):
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def byol(p, z):
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(-1)).mean()


def losses():
    out = {}
    a = torch.randn(6, 8, requires_grad=True)
    b = torch.randn(6, 8, requires_grad=True)
    loss = info_nce(a, b, 0.2)
    loss.backward()
    out.update(infonce_a=a.detach(), infonce_b=b.detach(), infonce_loss=loss.detach().reshape(1),
               infonce_grad_a=a.grad, infonce_grad_b=b.grad)
    p = torch.randn(6, 8, requires_grad=True)
    z = torch.randn(6, 8, requires_grad=True)
    loss = byol(p, z)
    loss.backward()
    out.update(byol_p=p.detach(), byol_z=z.detach(), byol_loss=loss.detach().reshape(1),
               byol_grad_p=p.grad, byol_grad_z=z.grad)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "losses.safetensors"))


def feature_augmentation():
    rows, width, bank_size, k = 6, 8, 20, 3
    out = {}
    f = torch.randn(rows, width)
    weights = torch.randn(rows, width)
    out.update(f=f, weights=weights)

    def run(name, augment):
        x = f.clone().requires_grad_(True)
        y = augment(F.normalize(x, dim=1))
        (y * weights).sum().backward()
        out[f"{name}_out"] = y.detach()
        out[f"{name}_grad"] = x.grad

    # Mask: exactly round(0.25 * 8) = 2 zeros per row.
    mask = torch.ones(rows, width)
    for row in range(rows):
        mask[row, torch.randperm(width)[:2]] = 0.0
    out["mask"] = mask
    run("mask", lambda u: u * mask)

    # NN: a bank whose stored indices overlap the queries' (exclude-self must skip them).
    bank = F.normalize(torch.randn(bank_size, width), dim=1)
    bank_indices = torch.arange(100, 100 + bank_size)
    query_indices = torch.tensor([100, 101, 5, 6, 119, 7])
    # Make the excluded entries the most similar ones, so exclusion changes the answer.
    bank[0] = F.normalize(f[0], dim=0)
    bank[1] = F.normalize(f[1], dim=0)
    bank[19] = F.normalize(f[4] + 0.01, dim=0)
    similarity = F.normalize(f, dim=1) @ bank.T
    similarity = similarity.masked_fill(bank_indices[None, :] == query_indices[:, None], float("-inf"))
    positions = similarity.topk(k, dim=1).indices
    out.update(bank=bank, bank_indices=bank_indices, query_indices=query_indices,
               nn_indices=bank_indices[positions])
    for j in range(k):
        neighbour = bank[positions[:, j]]
        out[f"nn_{j}"] = neighbour
        run(f"nn_straight_{j}", lambda u, n=neighbour: u + (n - u).detach())

    # Mixup with each noise, λ fixed per row.
    lam = 0.85 + 0.15 * torch.rand(rows)
    out["lambda"] = lam
    gaussian = 0.2 * torch.randn(rows, width)
    out["gaussian"] = gaussian
    run("mixup_gaussian", lambda u: lam[:, None] * u + (1 - lam[:, None]) * gaussian)
    partner = (torch.arange(rows) + torch.randint(1, rows, (rows,))) % rows
    out["partner"] = partner
    run("mixup_batch", lambda u: lam[:, None] * u + (1 - lam[:, None]) * u.detach()[partner])
    run("mixup_nn", lambda u: lam[:, None] * u + (1 - lam[:, None]) * bank[positions[:, 0]])
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "fa.safetensors"))


class MlpLayer(nn.Module):
    def __init__(self, inputs, width, norm):
        super().__init__()
        self.linear = nn.Linear(inputs, width, bias=not norm)
        self.bn = nn.BatchNorm1d(width) if norm else None


class Mlp(nn.Module):
    """The MLP as src/lower/torch/layers.rs builds it: Linear → [BN] → ReLU, last without ReLU."""

    def __init__(self, inputs, widths, norm, last_norm):
        super().__init__()
        layers = []
        for index, width in enumerate(widths):
            last = index + 1 == len(widths)
            layers.append(MlpLayer(inputs, width, last_norm if last else norm))
            inputs = width
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for index, layer in enumerate(self.layers):
            x = layer.linear(x)
            if layer.bn is not None:
                x = layer.bn(x)
            if index + 1 != len(self.layers):
                x = F.relu(x)
        return x


def heads():
    out = {}
    x = torch.randn(6, 12)
    out["x"] = x
    for name, (widths, last_norm) in {"projector": ([16, 16, 8], True), "predictor": ([16, 8], False)}.items():
        module = Mlp(12, widths, True, last_norm)
        load_synthetic(module)
        module.train()
        weights = torch.randn(6, widths[-1])
        inputs = x.clone().requires_grad_(True)
        y = module(inputs)
        (y * weights).sum().backward()
        out[f"{name}_weights"] = weights
        out[f"{name}_out"] = y.detach()
        out[f"{name}_grad_x"] = inputs.grad
        out[f"{name}_grad_w0"] = module.layers[0].linear.weight.grad
        out[f"{name}_running_var0"] = module.layers[0].bn.running_var.detach()
        module.eval()
        out[f"{name}_eval_out"] = module(x).detach()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "heads.safetensors"))


def resnet18():
    model = torchvision.models.resnet18()
    # The CIFAR stem: 3×3 stride-1 first convolution and no max-pool; no classifier.
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    model = model.double()
    load_synthetic(model)
    x = torch.randn(2, 3, 32, 32)
    weights = torch.randn(2, 512)
    out = {"x": x, "weights": weights}
    model.eval()
    inputs = x.clone().requires_grad_(True)
    y = model(inputs)
    (y * weights).sum().backward()
    out.update(eval_out=y.detach(), eval_grad_x=inputs.grad, eval_grad_conv1=model.conv1.weight.grad)
    model.zero_grad()
    # PyTorch's own float32 error in training mode, measured on a float32 copy: batch norm
    # over 2 × 4 × 4 values in layer4 amplifies rounding, so 1e-5 is out of float32's reach.
    single = copy.deepcopy(model).float().train()
    model.train()
    y = model(x)
    out["train_out"] = y.detach()
    out["train_running_mean_layer4"] = model.layer4[1].bn2.running_mean.detach()
    y32 = single(x.float()).double()
    out["train_f32_error"] = ((y32 - y).abs().max() / y.abs().max()).detach().reshape(1)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "resnet18.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    losses()
    feature_augmentation()
    heads()
    resnet18()
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))
