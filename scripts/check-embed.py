#!/usr/bin/env python3
"""Checks `lim embed` against torchvision: the same state_dict, the same images, the same
pooled features (the input of torchvision's fc).

Usage: check-embed.py LIM_BINARY ARCH IMAGE... (needs torch, torchvision, safetensors, pillow,
numpy: tests/fixtures/ref/README.md)

Builds torchvision.models.ARCH() (seeded; BatchNorm running statistics set by one train-mode
pass over random images, so evaluation-mode normalisation matters), saves its state_dict
with safetensors.torch.save_file, runs `lim embed --weights` on IMAGE..., and compares with
torchvision's features of the same images preprocessed as lim documents: RGB (grey
replicated), scaled to [0, 1], normalised by ImageNet's mean and std. It passes where lim is
within 1e-4 of torchvision's largest feature, or no further from a float64 run of the same
model than torchvision's float32 is. Pretrained weights are
checked the same way where download.pytorch.org is reachable (pass --pretrained).
"""
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

args = [a for a in sys.argv[1:] if a != "--pretrained"]
lim, arch, images = args[0], args[1], args[2:]
torch.manual_seed(0)
if "--pretrained" in sys.argv:
    model = getattr(torchvision.models, arch)(weights="DEFAULT")
else:
    model = getattr(torchvision.models, arch)()
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64))
model.eval()
mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
want = []
with torch.no_grad():
    for path in images:
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
        x = ((x.permute(2, 0, 1) - mean) / std).unsqueeze(0)
        f = model.avgpool(model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(x)))))))))
        want.append(torch.flatten(f, 1)[0].numpy())
want = np.stack(want)
# torchvision's own float32 noise, against a float64 copy of the same model.
exact = []
model64 = model.double()
with torch.no_grad():
    for path in images:
        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0)
        x = ((x.permute(2, 0, 1) - mean.double()) / std.double()).unsqueeze(0)
        f = model64.avgpool(model64.layer4(model64.layer3(model64.layer2(model64.layer1(
            model64.maxpool(model64.relu(model64.bn1(model64.conv1(x)))))))))
        exact.append(torch.flatten(f, 1)[0].numpy())
exact = np.stack(exact)
model.float()
with tempfile.TemporaryDirectory() as tmp:
    weights, out = f"{tmp}/w.safetensors", f"{tmp}/f.npy"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    subprocess.run([lim, "embed", "--arch", arch, "--weights", weights, "--out", out, *images],
                   check=True)
    got = np.load(out)
scale = np.abs(exact).max()
err = np.abs(got - want).max() / scale
lim_err, torch_err = np.abs(got - exact).max() / scale, np.abs(want - exact).max() / scale
print(f"{arch}: {len(images)} images, features {list(got.shape)}; of the largest feature: "
      f"|lim - torchvision| {err:.2e}, |lim - float64| {lim_err:.2e}, "
      f"|torchvision - float64| {torch_err:.2e}")
# lim passes where it is as close to the exact features as torchvision's float32 is.
sys.exit(0 if err <= 1e-4 or lim_err <= 2 * torch_err else 1)
