"""Writes the float64 reference values the trainkit optimiser tests compare against.

Run with the project's venv after installing the pinned peer libraries:
    .venv/bin/pip install --no-deps -r scripts/requirements-fixtures.txt
    .venv/bin/python scripts/fixtures_trainkit.py
Output: tests/fixtures/trainkit/optim.safetensors

SGD is torch.optim.SGD itself (momentum, dampening 0, no Nesterov), decaying every
parameter, as solo-learn and lightly run it. LARS without clipping is lightly's own
`lightly.utils.lars.LARS`, with the 1-D parameters in a group without weight decay (lightly
then neither decays nor adapts them: solo-learn's `exclude_bias_n_norm`). LARS with LARC's
learning-rate clipping (solo-learn's `clip_lr`) exists in no peer library installable here
(solo-learn 1.0.2 on PyPI predates it), so it is written out below in float64 from the
formula: local = trust·|p| / (|g| + wd·|p|), clipped to min(local / lr, 1); a hand-worked
one-step case in the Rust tests checks the same formula independently of this script.
"""

import math
import pathlib

import torch
from lightly.utils.lars import LARS
from safetensors.torch import save_file

torch.set_default_dtype(torch.float64)
generator = torch.Generator().manual_seed(20240611)

STEPS = 3
LRS = [0.1, 0.05, 0.2]
MOMENTUM = 0.9
WEIGHT_DECAY = 0.01
# Names sort in the order the tensors are listed, so the Rust side can rebuild the list.
SHAPES = {"a_weight": (4, 3), "b_bias": (4,), "c_conv": (2, 2, 3)}

init = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
grads = [
    {name: torch.randn(shape, generator=generator) * (0.5 + step) for name, shape in SHAPES.items()}
    for step in range(STEPS)
]

out = {
    "config/lrs": torch.tensor(LRS),
    "config/momentum": torch.tensor(MOMENTUM),
    "config/weight_decay": torch.tensor(WEIGHT_DECAY),
}
for name in SHAPES:
    out[f"init/{name}"] = init[name].clone()
    for step in range(STEPS):
        out[f"grad/{step}/{name}"] = grads[step][name].clone()


def run_peer(label, make_optimiser):
    """Three steps of a peer library's optimiser on the fixture's parameters and gradients."""
    params = {name: init[name].clone().requires_grad_(True) for name in SHAPES}
    optimiser = make_optimiser(params)
    for step in range(STEPS):
        for group in optimiser.param_groups:
            group["lr"] = LRS[step]
        for name in SHAPES:
            params[name].grad = grads[step][name].clone()
        optimiser.step()
        for name in SHAPES:
            out[f"{label}/{step}/{name}"] = params[name].detach().clone()
    for name in SHAPES:
        out[f"{label}/buffer/{name}"] = optimiser.state[params[name]]["momentum_buffer"].clone()


def sgd(params):
    return torch.optim.SGD(
        list(params.values()), lr=LRS[0], momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )


def lightly_lars(trust):
    def make(params):
        decayed = [params[name] for name in SHAPES if params[name].dim() > 1]
        plain = [params[name] for name in SHAPES if params[name].dim() <= 1]
        return LARS(
            [
                {"params": decayed, "weight_decay": WEIGHT_DECAY},
                {"params": plain, "weight_decay": 0.0},
            ],
            lr=LRS[0],
            momentum=MOMENTUM,
            trust_coefficient=trust,
            eps=0.0,
        )

    return make


def run_lars(label, trust, clip):
    params = {name: init[name].clone() for name in SHAPES}
    buffers = {}
    for step in range(STEPS):
        lr = LRS[step]
        for name in SHAPES:
            p = params[name]
            g = grads[step][name]
            if p.dim() > 1:
                d = g + WEIGHT_DECAY * p
                p_norm = math.sqrt(float((p * p).sum()))
                g_norm = math.sqrt(float((g * g).sum()))
                if p_norm > 0 and g_norm > 0:
                    scale = trust * p_norm / (g_norm + WEIGHT_DECAY * p_norm)
                    if clip:
                        scale = min(scale / lr, 1.0)
                else:
                    scale = 1.0
                d = d * scale
            else:
                d = g.clone()
            if name in buffers:
                buffers[name] = MOMENTUM * buffers[name] + d
            else:
                buffers[name] = d.clone()
            params[name] = p - lr * buffers[name]
            out[f"{label}/{step}/{name}"] = params[name].clone()
    for name in SHAPES:
        out[f"{label}/buffer/{name}"] = buffers[name].clone()


run_peer("sgd", sgd)
# Trust 0.02 gives local rates far below lr, so the clip variant scales by local/lr < 1;
# trust 0.1 puts local/lr above 1 on the first steps and below 1 later, so both branches of
# the clip's min(·, 1) are exercised. Without clipping the reference is lightly's LARS; the
# float64 formula below must agree with it (checked here, before anything is written).
run_peer("lars", lightly_lars(0.02))
run_lars("lars_formula", 0.02, False)
for step in range(STEPS):
    for name in SHAPES:
        assert torch.allclose(out[f"lars/{step}/{name}"], out[f"lars_formula/{step}/{name}"], atol=1e-12)
for key in [k for k in out if k.startswith("lars_formula/")]:
    del out[key]
run_lars("lars_clip", 0.02, True)
run_lars("lars_clip_high", 0.1, True)
out["config/trust_low"] = torch.tensor(0.02)
out["config/trust_high"] = torch.tensor(0.1)

path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "trainkit" / "optim.safetensors"
path.parent.mkdir(parents=True, exist_ok=True)
save_file({name: tensor.contiguous() for name, tensor in out.items()}, str(path))
print(f"wrote {path} ({path.stat().st_size} bytes)")
