"""Images through the lens: preprocessing into patch batches (:mod:`.inputs`)."""

from superact_lens.vision.inputs import ImageBatch, ImageEncoder, check_images, load_image

__all__ = ["ImageBatch", "ImageEncoder", "check_images", "load_image"]
