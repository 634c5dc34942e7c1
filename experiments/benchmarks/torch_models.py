"""PyTorch versions of the benchmarked jaxcnn models: the same layers and parameter counts,
in PyTorch's native NCHW layout (compare_pytorch.py checks the counts against jaxcnn's)."""

import torch
from torch import nn
from torch.nn import functional as F


class LeNet5(nn.Module):
  def __init__(self, channels: int, num_classes: int):
    super().__init__()
    self.conv1, self.conv2 = nn.Conv2d(channels, 6, 5), nn.Conv2d(6, 16, 5)
    self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84)
    self.fc3 = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.avg_pool2d(torch.tanh(self.conv1(x)), 2)
    x = F.avg_pool2d(torch.tanh(self.conv2(x)), 2).flatten(1)
    return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class TowerLRN(nn.Module):
  """AlexNet's LRN within each tower, with the paper's alpha (PyTorch divides it by size)."""

  def __init__(self, towers: int, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
               k: float = 2.0):
    super().__init__()
    self.towers, self.lrn = towers, nn.LocalResponseNorm(size, alpha * size, beta, k)

  def forward(self, x):
    return torch.cat([self.lrn(t) for t in x.chunk(self.towers, dim=1)], dim=1)


class AlexNet(nn.Module):
  """The paper's two-tower AlexNet: conv2, conv4, conv5 grouped; LRN; 3x3/2 max pools."""

  def __init__(self, channels: int, num_classes: int, image_size: int, towers: int = 2):
    super().__init__()
    widths = (96, 256, 384, 384, 256)
    self.features = nn.Sequential(
        nn.Conv2d(channels, widths[0], 11, stride=4), nn.ReLU(), TowerLRN(towers),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(widths[0], widths[1], 5, padding=2, groups=towers), nn.ReLU(), TowerLRN(towers),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(widths[1], widths[2], 3, padding=1), nn.ReLU(),
        nn.Conv2d(widths[2], widths[3], 3, padding=1, groups=towers), nn.ReLU(),
        nn.Conv2d(widths[3], widths[4], 3, padding=1, groups=towers), nn.ReLU(),
        nn.MaxPool2d(3, 2))
    side = image_size
    for kernel, stride in ((11, 4), (3, 2), (3, 2), (3, 2)):  # conv1 and the three pools
      side = (side - kernel) // stride + 1
    self.classifier = nn.Sequential(
        nn.Linear(widths[4] * side * side, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, num_classes))

  def forward(self, x):
    return self.classifier(self.features(x).flatten(1))


def _conv_bn(channels_in: int, channels_out: int, kernel: int, stride: int):
  return nn.Sequential(nn.Conv2d(channels_in, channels_out, kernel, stride, kernel // 2,
                                 bias=False), nn.BatchNorm2d(channels_out))


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, channels_in: int, width: int, stride: int, shortcut: str):
    super().__init__()
    self.conv1, self.conv2 = _conv_bn(channels_in, width, 3, stride), _conv_bn(width, width, 3, 1)
    self.shortcut, self.stride, self.pad = None, stride, width - channels_in
    if shortcut == 'projection' and (stride != 1 or channels_in != width):
      self.shortcut = _conv_bn(channels_in, width, 1, stride)

  def residual(self, x):
    return self.conv2(F.relu(self.conv1(x)))

  def forward(self, x):
    y = self.residual(x)
    if self.shortcut is not None:
      x = self.shortcut(x)
    elif self.pad:  # option A: subsample and zero-pad the new channels
      x = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))
    return F.relu(y + x)


class Bottleneck(BasicBlock):
  expansion = 4

  def __init__(self, channels_in: int, width: int, stride: int, shortcut: str):
    nn.Module.__init__(self)
    out = width * self.expansion
    self.conv1, self.conv2 = _conv_bn(channels_in, width, 1, 1), _conv_bn(width, width, 3, stride)
    self.conv3 = _conv_bn(width, out, 1, 1)
    self.shortcut = _conv_bn(channels_in, out, 1, stride) if (stride, channels_in) != (1, out) else None
    self.pad = 0

  def residual(self, x):
    return self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class ResNet(nn.Module):
  """ImageNet ResNets (torchvision v1.5 layout, `stem` 'imagenet' or 'cifar') and, with
  `widths` (16, 32, 64) and option-A shortcuts, the CIFAR ResNets."""

  def __init__(self, block, stage_sizes, channels: int, num_classes: int, stem: str = 'imagenet',
               widths=(64, 128, 256, 512), shortcut: str = 'projection'):
    super().__init__()
    imagenet = stem == 'imagenet'
    layers = [_conv_bn(channels, widths[0], 7 if imagenet else 3, 2 if imagenet else 1), nn.ReLU()]
    if imagenet:
      layers.append(nn.MaxPool2d(3, 2, 1))
    features = widths[0]
    for i, (blocks, width) in enumerate(zip(stage_sizes, widths)):
      for j in range(blocks):
        layers.append(block(features, width, 2 if i > 0 and j == 0 else 1, shortcut))
        features = width * block.expansion
    self.features = nn.Sequential(*layers)
    self.fc = nn.Linear(features, num_classes)

  def forward(self, x):
    return self.fc(self.features(x).mean(dim=(2, 3)))
