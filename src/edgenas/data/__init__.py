"""Labelled image data: class folders, CSV manifests and built-in datasets, split and decoded.

Images are decoded once per resolution into uint8 tensors (cached on disk when asked), and
split once, stratified by class and by group, into train, validation and a holdout the search
never sees.

Example:
    >>> from edgenas.data import load_dataset
    >>> data = load_dataset("synthetic", seed=0)
    >>> data.class_names
    ['blob', 'dots', 'ring', 'scratches']
    >>> data.images(32).shape
    torch.Size([960, 1, 32, 32])
"""

from __future__ import annotations

from edgenas.data._arrays import save_arrays
from edgenas.data._dataset import ImageDataset, load_dataset
from edgenas.data._sources import BUILTIN_NAMES, IMAGE_EXTENSIONS
from edgenas.data._split import Splits
from edgenas.data._transforms import AUGMENTATIONS, RESIZE_POLICIES, parse_augment, parse_resize

__all__ = [
    "AUGMENTATIONS",
    "BUILTIN_NAMES",
    "IMAGE_EXTENSIONS",
    "RESIZE_POLICIES",
    "ImageDataset",
    "Splits",
    "load_dataset",
    "parse_augment",
    "parse_resize",
    "save_arrays",
]
