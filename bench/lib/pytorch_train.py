#!/usr/bin/env python3
"""PyTorch reference for bench/train.mjs: trains one of Federa's architectures in PyTorch and times it.

Reads one JSON job from stdin and prints one JSON result line to stdout. The job carries the framework-neutral layer
list the shared package describes (smallCnnLayers, resnetLayers or mobilenetLayers of the resolved spec) and the
parameter count Node computed for it; the network built here must have exactly that many parameters, or the script
fails (exit 1, the reason on stderr) rather than time a different model.

  {"architecture": "resnet", "layers": [...], "inputSize": 64, "channels": 1, "classes": 2, "parameters": 173890,
   "threads": 1, "images": 128, "batchSize": 16, "learningRate": 0.001, "seed": 2}
  -> {"torch": "2.x", "parameters": 173890, "threads": 1, "images": 128, "seconds": 0.41, "imagesPerSec": 312.2, ...}

With "verify": {"weights": [...], "images": [...], "count": n, "expected": [...]} (Federa's flat weights, n NHWC
images and Federa's softmax outputs for them) the network is also checked to compute the same function, untimed:
the weights are loaded with TF's layouts converted (HWIO kernels, HWC1 depthwise kernels, [in, out] dense kernels)
and the outputs must agree to 1e-4, or the script fails.

Layers follow site-agent/src/train/model.ts (the tfjs-layers builder): convolutions are 'same'-padded with bias and
their own activation, pooling is 'valid' (floor), the head is a dense layer whose softmax is left to
nn.CrossEntropyLoss (logits in, the same cost class as Federa's softmax plus clipped categorical cross-entropy).
Tensors are NCHW. TensorFlow's 'same' padding puts the odd pixel of an uneven total at the bottom and right (a 3x3
stride-2 convolution of an even input pads 0 above and 1 below); PyTorch's symmetric padding would pad both sides,
and its padding='same' refuses strides above 1, so such layers get an explicit F.pad.

Benchmark reference only: PyTorch is never a dependency of Federa.
"""

import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def same_padding(size, kernel, stride):
    """TensorFlow's 'same' padding along one axis: (before, after, output size)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class SameConv(nn.Module):
    """A 'same'-padded convolution with bias (depthwise when groups == channels), then its activation."""

    def __init__(self, size, in_channels, filters, kernel, stride, activation, groups=1):
        super().__init__()
        before, after, self.out_size = same_padding(size, kernel, stride)
        # Equal padding on both sides is the convolution's own; TF's uneven padding needs an explicit F.pad.
        self.pad = None if before == after else (before, after, before, after)
        self.uneven = self.pad is not None
        self.conv = nn.Conv2d(in_channels, filters, kernel, stride=stride, padding=0 if self.uneven else before, groups=groups, bias=True)
        if activation not in ('relu', 'linear'):
            raise ValueError(f'unsupported convolution activation {activation!r}')
        self.relu = activation == 'relu'

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    """relu(conv2(conv1(x)) + shortcut(x)), as buildResnet adds the branch and the shortcut."""

    def __init__(self, size, layer):
        super().__init__()
        c1, c2, sc = layer['conv1'], layer['conv2'], layer['shortcut']
        self.conv1 = conv_of(size, c1)
        self.conv2 = conv_of(self.conv1.out_size, c2)
        self.shortcut = conv_of(size, sc) if sc is not None else None
        self.out_size = self.conv2.out_size
        if self.shortcut is not None and self.shortcut.out_size != self.out_size:
            raise ValueError(f"{layer['name']}: shortcut output {self.shortcut.out_size} != branch output {self.out_size}")

    def forward(self, x):
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(self.conv2(self.conv1(x)) + shortcut)


class GlobalPool(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.max = kind == 'max'

    def forward(self, x):
        return x.amax(dim=(2, 3)) if self.max else x.mean(dim=(2, 3))


class Dense(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.linear = nn.Linear(layer['inUnits'], layer['units'])
        if layer['activation'] not in ('relu', 'softmax'):
            raise ValueError(f"unsupported dense activation {layer['activation']!r}")
        # The final softmax is part of nn.CrossEntropyLoss, which takes logits.
        self.relu = layer['activation'] == 'relu'

    def forward(self, x):
        x = self.linear(x)
        return F.relu(x) if self.relu else x


def conv_of(size, c, groups=False):
    channels_in = c['channels'] if groups else c['inChannels']
    filters = c['channels'] if groups else c['filters']
    return SameConv(size, channels_in, filters, c['kernelSize'], c.get('strides', 1), c['activation'], groups=channels_in if groups else 1)


# Layer kinds of the shared package's segmentation U-Net (unetLayers): its skips are no nn.Sequential, and this
# reference trains per-image labels only, so such a job is refused by name rather than failing on the first kind.
SEGMENTATION_KINDS = ('saveSkip', 'concatSkip', 'conv2dTranspose')


def build(job):
    """The network of the job's layer list; returns it with a description of the padding each convolution got."""
    if any(layer['kind'] in SEGMENTATION_KINDS for layer in job['layers']):
        raise SystemExit(f"pytorch_train.py: {job.get('architecture', 'the model')} is a segmentation network; "
                         'this reference trains classification architectures only')
    size = job['inputSize']
    modules = []
    padding = []
    for layer in job['layers']:
        kind = layer['kind']
        if kind in ('conv2d', 'depthwiseConv2d'):
            m = conv_of(size, layer, groups=kind == 'depthwiseConv2d')
            padding.append(describe(layer['name'], size, m))
        elif kind == 'residualBlock':
            m = ResidualBlock(size, layer)
            for part in (m.conv1, m.conv2, m.shortcut):
                if part is not None:
                    padding.append(describe(layer['name'], size if part is not m.conv2 else m.conv1.out_size, part))
        elif kind == 'maxPool2d':
            # 'valid' max pooling with strides = pool size: floor, as nn.MaxPool2d does by default.
            m = nn.MaxPool2d(layer['poolSize'], stride=layer['poolSize'])
            m.out_size = size // layer['poolSize']
        elif kind == 'globalMaxPool2d':
            m = GlobalPool('max')
            m.out_size = None
        elif kind == 'globalAveragePool2d':
            m = GlobalPool('avg')
            m.out_size = None
        elif kind == 'dense':
            m = Dense(layer)
            m.out_size = None
        else:
            raise ValueError(f'unknown layer kind {kind!r}')
        modules.append(m)
        size = m.out_size
    return nn.Sequential(*modules), padding


def describe(name, size, m):
    conv = m.conv
    pad = m.pad if m.uneven else (conv.padding[0],) * 4
    return {'layer': name, 'in': size, 'kernel': conv.kernel_size[0], 'stride': conv.stride[0], 'pad': list(pad), 'explicit': m.uneven}


def load_flat_weights(model, flat):
    """Sets the model's parameters from Federa's flat weight vector (describeParameters order: kernel then bias of
    each weighted layer, forward order, a residual block's conv1, conv2, shortcut), converting TF's layouts."""
    flat = torch.tensor(flat, dtype=torch.float32)
    offset = 0

    def take(shape):
        nonlocal offset
        n = math.prod(shape)
        if offset + n > flat.numel():
            raise SystemExit('pytorch_train.py: the weight vector is shorter than the model')
        t = flat[offset:offset + n].reshape(shape)
        offset += n
        return t

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                out_c, in_per_group, kh, kw = m.weight.shape
                if m.groups == 1:
                    m.weight.copy_(take((kh, kw, in_per_group, out_c)).permute(3, 2, 0, 1))  # HWIO -> OIHW
                else:
                    m.weight.copy_(take((kh, kw, out_c, 1)).permute(2, 3, 0, 1))  # depthwise HWC1 -> C1HW
                m.bias.copy_(take((out_c,)))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(take((m.in_features, m.out_features)).t())
                m.bias.copy_(take((m.out_features,)))
    if offset != flat.numel():
        raise SystemExit(f'pytorch_train.py: the weight vector has {flat.numel()} values, the model takes {offset}')


def verify(model, job):
    """Federa's softmax outputs for given weights and NHWC images against this network's: the same function, or
    exit 1. Returns the largest absolute difference."""
    check = job['verify']
    size, channels, count = job['inputSize'], job['channels'], check['count']
    load_flat_weights(model, check['weights'])
    x = torch.tensor(check['images'], dtype=torch.float32).reshape(count, size, size, channels).permute(0, 3, 1, 2)
    model.eval()
    with torch.no_grad():
        probs = F.softmax(model(x), dim=1)
    expected = torch.tensor(check['expected'], dtype=torch.float32).reshape(count, job['classes'])
    diff = float((probs - expected).abs().max())
    tolerance = check.get('tolerance', 1e-4)
    if not diff <= tolerance:
        raise SystemExit(f"pytorch_train.py: the PyTorch {job.get('architecture', 'model')} computes other outputs than "
                         f"Federa's for the same weights (largest difference {diff:.3g} > {tolerance}):\n"
                         f"pytorch {probs.flatten()[:8].tolist()}\nfedera  {expected.flatten()[:8].tolist()}")
    return diff


def conv_rates(job):
    """GFLOP/s of a 3x3 'same' convolution's forward, input and weight gradients, per [n, size, in, out] shape."""
    rates = []
    for n, size, cin, cout in job['shapes']:
        x = torch.rand(n, cin, size, size, requires_grad=True)
        w = torch.rand(cout, cin, 3, 3, requires_grad=True)

        def once():
            y = F.conv2d(x, w, padding=1)
            y.backward(torch.ones_like(y))

        for _ in range(3):
            once()
        repeats = 20
        t0 = time.perf_counter()
        for _ in range(repeats):
            once()
        seconds = (time.perf_counter() - t0) / repeats
        rates.append(3 * 2 * n * size * size * cin * cout * 9 / seconds / 1e9)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'gflops': rates}))


def main():
    job = json.loads(sys.stdin.read())
    threads = int(job.get('threads', 1))
    torch.set_num_threads(threads)
    if job.get('mode') == 'conv-rates':
        conv_rates(job)
        return
    torch.manual_seed(int(job.get('seed', 0)))
    model, padding = build(job)
    parameters = sum(p.numel() for p in model.parameters())
    if parameters != job['parameters']:
        raise SystemExit(f"pytorch_train.py: the PyTorch {job.get('architecture', 'model')} has {parameters} parameters, "
                         f"Federa's has {job['parameters']}: the two networks differ")
    # Untimed, when asked: the forward pass matches Federa's for Federa's weights; training then starts from them.
    max_diff = verify(model, job) if job.get('verify') else None
    count, batch, size, channels = job['images'], job['batchSize'], job['inputSize'], job['channels']
    images = torch.rand(count, channels, size, size, dtype=torch.float32)
    labels = torch.randint(0, job['classes'], (count,))
    loss_fn = nn.CrossEntropyLoss()

    # The output shape is checked once, untimed: logits for every class.
    with torch.no_grad():
        out = model(images[:1])
    if tuple(out.shape) != (1, job['classes']):
        raise SystemExit(f'pytorch_train.py: the model outputs {tuple(out.shape)}, expected (1, {job["classes"]})')

    def train(optimizer, order):
        loss = None
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images[idx]), labels[idx])
            loss.backward()
            optimizer.step()
        return loss

    model.train()
    # One untimed step: first-use allocations and oneDNN primitive creation stay out of the timing, as the wasm
    # warm-up keeps XNNPACK's operator setup out of Federa's.
    warm = job.get('warmupSteps', 1)
    if warm > 0:
        train(torch.optim.Adam(model.parameters(), lr=job['learningRate']), torch.arange(min(count, warm * batch)))

    # Timed: a fresh Adam (Federa creates its optimiser state each call) over one shuffled epoch.
    optimizer = torch.optim.Adam(model.parameters(), lr=job['learningRate'])
    order = torch.randperm(count)
    t0 = time.perf_counter()
    loss = train(optimizer, order)
    seconds = time.perf_counter() - t0
    loss_value = float(loss.item())
    if not math.isfinite(loss_value):
        raise SystemExit(f'pytorch_train.py: the loss is {loss_value}')
    print(json.dumps({
        'torch': torch.__version__,
        'parameters': parameters,
        'threads': torch.get_num_threads(),
        'images': count,
        'batchSize': batch,
        'seconds': seconds,
        'imagesPerSec': count / seconds,
        'loss': loss_value,
        'padding': padding,
        'verifiedMaxAbsDiff': max_diff,
    }))


if __name__ == '__main__':
    main()
