#!/usr/bin/env python3
"""A SwAV step of lim's tiny preset in PyTorch on the CPU, for scale beside
`lim bench swav-step --preset tiny`: ResNet-18 at width 1/4, projection head 128 -> 256 ->
BatchNorm1d -> ReLU -> 64, 15 prototypes, 2 x 64 + 6 x 32 px crops of a batch of 16, FB's
swapped-prediction loss with 3 Sinkhorn iterations, and SGD with momentum (LARS adds two
norms per parameter, noise at this size). The crops are random tensors: augmentation is not
timed. Also times a supervised step of the same backbone on the same crops.

Usage: torch-swav-step.py [--threads 2] [--steps 5]
Needs torch and torchvision."""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "fixtures", "torch"))
from train_golden import NarrowResNet18  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--steps", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
B, K = 16, 15
backbone = NarrowResNet18([16, 32, 64, 128], num_classes=1)
backbone.fc = nn.Identity()
head = nn.Sequential(nn.Linear(128, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 64))
prototypes = nn.Linear(64, K, bias=False)
classifier = nn.Linear(128, 10)
groups = [torch.randn(2 * B, 3, 64, 64), torch.randn(6 * B, 3, 32, 32)]
labels = torch.arange(8 * B) % 10


@torch.no_grad()
def sinkhorn(out, eps=0.05, iters=3):
    Q = torch.exp(out / eps).t()
    Q /= Q.sum()
    k, b = Q.shape
    for _ in range(iters):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= k
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= b
    return (Q * b).t()


def swav_step(opt):
    with torch.no_grad():
        prototypes.weight.copy_(F.normalize(prototypes.weight, dim=1))
    opt.zero_grad()
    features = torch.cat([backbone(x) for x in groups])
    scores = prototypes(F.normalize(head(features), dim=1))
    loss = 0
    for a_ in (0, 1):
        q = sinkhorn(scores[a_ * B:(a_ + 1) * B].detach())
        for v in (v for v in range(8) if v != a_):
            loss -= (q * F.log_softmax(scores[v * B:(v + 1) * B] / 0.1, dim=1)).sum(1).mean() / 7
    (loss / 2).backward()
    opt.step()


def supervised_step(opt):
    opt.zero_grad()
    features = torch.cat([backbone(x) for x in groups])
    F.cross_entropy(classifier(features), labels).backward()
    opt.step()


params = list(backbone.parameters()) + list(head.parameters()) + list(prototypes.parameters())
swav_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
sup_opt = torch.optim.SGD(list(backbone.parameters()) + list(classifier.parameters()), lr=0.1,
                          momentum=0.9)
for name, step, opt in (("swav", swav_step, swav_opt), ("supervised", supervised_step, sup_opt)):
    times = []
    for i in range(a.steps + 2):
        start = time.perf_counter()
        step(opt)
        if i >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    print(f"{name} step: {ms:.1f} ms ({B / ms * 1e3:.1f} images/s), torch {torch.__version__}, "
          f"{a.threads} threads")
