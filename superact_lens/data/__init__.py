"""Datasets: the folder format, span -> token masks, synthetic and shipped datasets.

``load_dataset(name_or_folder)`` returns a :class:`TextDataset` (tags stripped,
sample labels, character spans, splits); ``token_masks`` maps its spans onto
the content tokens of a fast tokenizer (see ``content_offsets``).
"""

from superact_lens.data.clevr import CLEVR_CONCEPTS, generate_clevr
from superact_lens.data.dataset import SPLITS, DatasetError, TextDataset
from superact_lens.data.folder import read_dataset_folder, stratified_split, write_dataset_folder
from superact_lens.data.images import ImageDataset, read_image_folder
from superact_lens.data.loading import available_datasets, load_dataset, shipped_dataset_path
from superact_lens.data.masks import content_offsets, token_masks
from superact_lens.data.packed import PackedSpans, PackedStrings
from superact_lens.data.patches import content_pixels, fit_image, fit_mask, patch_masks
from superact_lens.data.stats import dataset_stats, format_stats
from superact_lens.data.synthetic import make_synthetic_dataset

__all__ = [
    "CLEVR_CONCEPTS",
    "DatasetError",
    "ImageDataset",
    "PackedSpans",
    "PackedStrings",
    "SPLITS",
    "TextDataset",
    "available_datasets",
    "content_offsets",
    "content_pixels",
    "dataset_stats",
    "fit_image",
    "fit_mask",
    "format_stats",
    "generate_clevr",
    "load_dataset",
    "make_synthetic_dataset",
    "patch_masks",
    "read_dataset_folder",
    "read_image_folder",
    "shipped_dataset_path",
    "stratified_split",
    "token_masks",
    "write_dataset_folder",
]
