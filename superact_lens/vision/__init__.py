"""Images through the lens.

Preprocessing into patch batches (:mod:`.inputs`); the small ViT trained here (:mod:`.train`).
"""

from superact_lens.vision.inputs import ImageBatch, ImageEncoder, check_images, load_image
from superact_lens.vision.train import ViTTrainConfig, train_vit

__all__ = [
    "ImageBatch",
    "ImageEncoder",
    "ViTTrainConfig",
    "check_images",
    "load_image",
    "train_vit",
]
