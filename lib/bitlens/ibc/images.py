"""The IBC trainer's images: resized uint8 images of an image list, the official crops and flips, and ImageNet
normalisation applied once per batch. Shared by training, code extraction and the tiny backbone's pretraining."""
from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN_STD = (torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1))


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (…, 3, H, W) → float, ImageNet mean/std (= ToTensor + Normalize)."""
    x = x_uint8.float().div_(255.0)
    mean, std = (t.to(x.device) for t in _MEAN_STD)
    return (x - mean) / std


def collate_normalized(items) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate (uint8 image, label) pairs and normalise the stacked batch at once: the same values as
    normalising each image, without a small tensor operation per image (a third of a tiny training step)."""
    xs, ys = zip(*items)
    return normalize(torch.stack(xs)), torch.as_tensor(ys, dtype=torch.long)


def resized_uint8(img, resize: int) -> torch.Tensor:
    """PIL image → uint8 (3, H, W) with the shorter side = `resize` (the official lists are pre-resized to 256)."""
    from torchvision.transforms import functional as TF

    if min(img.size) != resize:
        img = TF.resize(img, resize, antialias=True)
    return TF.pil_to_tensor(img.convert("RGB"))


def random_crop_flip(x: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """RandomCrop(crop) + RandomHorizontalFlip drawn from `rng` (one per sample, so a resumed run matches)."""
    h, w = x.shape[-2:]
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    x = x[..., top:top + crop, left:left + crop]
    return x.flip(-1) if rng.random() < 0.5 else x


def center_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """CenterCrop as torchvision rounds it."""
    h, w = x.shape[-2:]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return x[..., top:top + crop, left:left + crop]


class ImageListImages(torch.utils.data.Dataset):
    """Resized uint8 images of an image list (optionally kept in memory) and their class labels.

    Indexed by (item, augmentation seed): seed None = the test transform (centre crop), else a random crop and
    flip drawn from that seed. Items are normalised float images, or with `normalized=False` the uint8 crops
    (for collate_normalized)."""

    def __init__(self, image_list, root, resize: int, crop: int, cache: bool = False, normalized: bool = True):
        from bitlens.data.imagelist import ImageListDataset

        self.base = ImageListDataset(image_list, root, None)
        self.labels = np.asarray(image_list.labels, np.int64)
        self.resize, self.crop, self.cache = resize, crop, {} if cache else None
        self.normalized = normalized

    def __len__(self):
        return len(self.base)

    def image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        x = resized_uint8(self.base[i][0], self.resize)
        if min(x.shape[-2:]) < self.crop:
            raise ValueError(f"{self.base.list.paths[i]}: image {tuple(x.shape[-2:])} after resizing to "
                             f"{self.resize} is smaller than the crop {self.crop}")
        if self.cache is not None:
            self.cache[i] = x
        return x

    def __getitem__(self, key):
        i, aug_seed = key if isinstance(key, tuple) else (key, None)
        x = self.image(int(i))
        x = center_crop(x, self.crop) if aug_seed is None else \
            random_crop_flip(x, self.crop, np.random.default_rng(aug_seed))
        return (normalize(x) if self.normalized else x), int(self.labels[i])
