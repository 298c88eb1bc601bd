#!/usr/bin/env python3
"""knn-probe.py's probes on features computed by PyTorch from a `lim pretrain` checkpoint of
the tiny preset (ResNet-18 at width 1/4), with BatchNorm on its running statistics (as `lim
embed`) or on each view set's own batch statistics.

Usage: knn-probe-torch.py CHECKPOINT|random VIEWS_A VIEWS_B [--batch-stats]
  VIEWS_*: view sets from `knn-probe.py views`; `random` is PyTorch's initialisation (seed 0).
Needs torch, torchvision, safetensors, numpy and Pillow."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "fixtures" / "torch"))
from train_golden import NarrowResNet18  # noqa: E402

spec = importlib.util.spec_from_file_location("knn_probe", HERE / "knn-probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def encoder(checkpoint):
    torch.manual_seed(0)
    model = NarrowResNet18([16, 32, 64, 128], 1)
    model.fc = nn.Identity()
    if checkpoint != "random":
        state = load_file(checkpoint)
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    return model


def features(model, views, batch_stats):
    paths = sorted(Path(views).glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in paths])
    x = torch.from_numpy((x - 0.1806) / 0.1907)[:, None].repeat(1, 3, 1, 1)
    model.train(batch_stats)
    with torch.no_grad():
        f = model(x).numpy().astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-12
    return f, [p.parent.name for p in paths], [int(p.stem) for p in paths]


checkpoint, views_a, views_b = sys.argv[1:4]
batch_stats = "--batch-stats" in sys.argv[4:]
a = features(encoder(checkpoint), views_a, batch_stats)
b = features(encoder(checkpoint), views_b, batch_stats)
print(f"{checkpoint}: retrieval {probe.retrieval(a, b):.3f}, level error {probe.level(a):.3f} "
      f"({'batch' if batch_stats else 'running'} statistics)")
