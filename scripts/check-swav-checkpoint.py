#!/usr/bin/env python3
"""Loads a `lim export --format torch` file as the paper's downstream notebooks do
(less-is-more.md §4.1, §5.2) and reports what torchvision made of it.

Usage: check-swav-checkpoint.py SWAV.pt [ARCH]     ARCH: resnet50 (the default) or resnet18
Needs torch and torchvision. Exits non-zero unless only `fc.*` is missing."""
import sys

import torch
import torchvision

path = sys.argv[1]
arch = sys.argv[2] if len(sys.argv) > 2 else "resnet50"
ckpt = torch.load(path, weights_only=True)
sd = {k.replace("model.", ""): v for k, v in ckpt["state_dict"].items()}
model = getattr(torchvision.models, arch)()
result = model.load_state_dict(sd, strict=False)
print(f"{path}: {len(sd)} tensors into torchvision {arch}")
print(f"missing: {result.missing_keys}")
print(f"unexpected: {result.unexpected_keys}")
backbone = [k for k in sd if not k.startswith(("projection_head.", "prototypes."))]
loaded = sum(torch.equal(model.state_dict()[k], sd[k]) for k in backbone)
print(f"backbone tensors loaded unchanged: {loaded} of {len(backbone)}")
ok = sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and loaded == len(backbone)
sys.exit(0 if ok else 1)
