#!/usr/bin/env python3
"""The seed's PyTorch model and CAM procedure (../shared/seed/METHOD.md), as a benchmark peer for camflow.

Weights come from a camflow model (bench/run.ts exports them as weights.json + weights.bin), so both sides run the
same network. One deliberate difference from the seed: pooling is true global average pooling, as in camflow (the
seed's AvgPool2d(16) on an 18x18 map averages only the top-left 16x16 window); it costs the same.

  seed_torch.py infer      --weights DIR --batch 32 --threads T --repeats R
  seed_torch.py train      --weights DIR --batch 32 --threads T --repeats R
  seed_torch.py preprocess --files LIST --threads T
  seed_torch.py matmul     --threads T
  --device cuda: on the GPU (the peer of `npm run bench:gpu`); CAMs then computed batched on the GPU, timing
  synchronised with torch.cuda.synchronize(). Without --weights the network keeps PyTorch's initialisation.
Every mode prints one JSON line.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SeedCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, 5), nn.ReLU(), nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5), nn.ReLU(), nn.Conv2d(32, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5), nn.ReLU(), nn.Conv2d(32, 2, 5), nn.ReLU(),
        )
        self.classifier = nn.Linear(2, 2)

    def forward(self, x):
        features = self.conv(x)
        pooled = F.adaptive_avg_pool2d(features, 1).flatten(1)
        return self.classifier(pooled), features


def load_weights(model, directory):
    meta = json.load(open(os.path.join(directory, 'weights.json')))
    raw = np.fromfile(os.path.join(directory, 'weights.bin'), dtype='<f4')
    convs = [m for m in model.conv if isinstance(m, nn.Conv2d)]
    tensors = []
    for entry in meta['tensors']:
        n = int(np.prod(entry['shape']))
        tensors.append(raw[entry['offset']:entry['offset'] + n].reshape(entry['shape']))
    # camflow order: (kernel [kh,kw,in,out], bias) per conv, then dense kernel [in,out], bias.
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.copy_(torch.from_numpy(tensors[2 * i].transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(tensors[2 * i + 1].copy()))
        model.classifier.weight.copy_(torch.from_numpy(tensors[-2].T.copy()))
        model.classifier.bias.copy_(torch.from_numpy(tensors[-1].copy()))


def seed_cam(features, weight_softmax, class_idx, size=128):
    """The seed's returnCAM: weight_softmax[c] . features, reshaped, resized bicubic, normalised to [0, 1]."""
    import cv2
    k, h, w = features.shape
    cam = weight_softmax[class_idx].dot(features.reshape((k, h * w))).reshape(h, w)
    cam = cam - np.min(cam)
    cam = cam / max(np.max(cam), 1e-12)
    return cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)


def inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch, 128, 128, 3), dtype=np.uint8)


def sync(args):
    if args.device.startswith('cuda'):
        torch.cuda.synchronize()


def mode_infer_gpu(args):
    model = SeedCNN().eval().to(args.device)
    if args.weights:
        load_weights(model, args.weights)
    w = model.classifier.weight.detach()
    x8 = torch.from_numpy(inputs(args.batch)).to(args.device)
    rates = []
    with torch.no_grad():
        for r in range(args.repeats + 2):
            sync(args)
            t0 = time.perf_counter()
            x = x8.permute(0, 3, 1, 2).float() / 255.0
            logits, features = model(x)
            c = logits.argmax(1)
            cam = torch.einsum('bkhw,bk->bhw', features, w[c])
            cam = F.interpolate(cam[:, None], size=(128, 128), mode='bicubic', align_corners=False)[:, 0]
            flat = cam.flatten(1)
            lo, hi = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
            cam = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(cam)
            _ = (cam >= 0.2).sum()
            sync(args)
            dt = time.perf_counter() - t0
            if r > 1:
                rates.append(args.batch / dt)
    print(json.dumps({'images_per_s': statistics.median(rates), 'runs': rates, 'device': args.device}))


def mode_infer(args):
    if args.device != 'cpu':
        return mode_infer_gpu(args)
    model = SeedCNN().eval()
    load_weights(model, args.weights)
    weight_softmax = model.classifier.weight.detach().numpy()
    x = torch.from_numpy(inputs(args.batch).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    rates = []
    logits_out = None
    with torch.no_grad():
        for r in range(args.repeats + 1):
            t0 = time.perf_counter()
            logits, features = model(x)
            feats = features.numpy()
            preds = logits.argmax(1).numpy()
            for i in range(args.batch):
                seed_cam(feats[i], weight_softmax, int(preds[i]))
            dt = time.perf_counter() - t0
            if r > 0:  # the first run warms up
                rates.append(args.batch / dt)
            logits_out = logits.numpy()
    print(json.dumps({'images_per_s': statistics.median(rates), 'runs': rates, 'logits': logits_out[:4].tolist()}))


def mode_train(args):
    model = SeedCNN().train().to(args.device)
    if args.weights:
        load_weights(model, args.weights)
    opt = torch.optim.Adam(model.parameters(), lr=0.0005)
    x = torch.from_numpy(inputs(args.batch).astype(np.float32).transpose(0, 3, 1, 2) / 255.0).to(args.device)
    y = torch.from_numpy(np.arange(args.batch) % 2).to(args.device)
    rates = []
    for r in range(args.repeats + 1):
        sync(args)
        t0 = time.perf_counter()
        opt.zero_grad()
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        sync(args)
        dt = time.perf_counter() - t0
        if r > 0:
            rates.append(args.batch / dt)
    print(json.dumps({'images_per_s': statistics.median(rates), 'runs': rates}))


def mode_preprocess(args):
    import cv2
    files = [l.strip() for l in open(args.files) if l.strip()]
    t0 = time.perf_counter()
    for f in files:
        img = cv2.imread(f)  # BGR, as the seed
        img = cv2.resize(img, (128, 128), interpolation=cv2.INTER_CUBIC)
        _ = img.astype(np.float32).transpose(2, 0, 1) / 255.0
    dt = time.perf_counter() - t0
    print(json.dumps({'images_per_s': len(files) / dt, 'images': len(files)}))


def mode_matmul(args):
    n = 1024
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    rates = []
    for r in range(6):
        t0 = time.perf_counter()
        torch.mm(a, b)
        dt = time.perf_counter() - t0
        if r > 0:
            rates.append(2 * n ** 3 / dt / 1e9)
    print(json.dumps({'gflops': statistics.median(rates), 'n': n}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode', choices=['infer', 'train', 'preprocess', 'matmul'])
    p.add_argument('--weights')
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--files')
    p.add_argument('--device', default='cpu')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import cv2
        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    {'infer': mode_infer, 'train': mode_train, 'preprocess': mode_preprocess, 'matmul': mode_matmul}[args.mode](args)


if __name__ == '__main__':
    sys.exit(main())
