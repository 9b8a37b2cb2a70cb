"""ImageEncoder: letterbox content masks follow the dataset's patch geometry, for any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from superact_lens.data.patches import content_pixels, fit_geometry, patch_masks
from superact_lens.errors import InputError, InputTypeError
from superact_lens.vision.inputs import ImageEncoder, check_images, load_image
from tests.vision.conftest import PATCH, SIZE, _vit_processor

ENCODER = ImageEncoder(_vit_processor(), SIZE, PATCH, letterbox=True)


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 90), height=st.integers(1, 90))
def test_letterbox_content_is_the_dataset_geometry(width, height):
    image = Image.new("RGB", (width, height), (200, 10, 10))
    expected = patch_masks(content_pixels(width, height, SIZE, "letterbox"), PATCH)
    if not expected.any():  # thinner than half a patch once scaled
        with pytest.raises(InputError, match=r"images\[7\]: no patch is at least half image"):
            ENCODER.encode([image], [7])
        return
    batch = ENCODER.encode([image], [7])
    assert batch.content_mask[0, 1:].tolist() == expected.flatten().tolist()
    assert not batch.content_mask[0, 0]
    new_w, new_h, left, top = fit_geometry(width, height, SIZE, "letterbox")
    assert batch.image_boxes[0].tolist() == [top, left, top + new_h, left + new_w]
    rows = [rc.tolist() for rc in batch.content_patches()[0]]
    assert rows == [[int(r), int(c)] for r, c in zip(*np.nonzero(expected), strict=True)]


def test_without_letterbox_every_patch_is_content():
    encoder = ImageEncoder(_vit_processor(), SIZE, PATCH)
    batch = encoder.encode([Image.new("RGB", (70, 9))], [0])
    assert batch.content_mask[0, 1:].all() and batch.n_content.tolist() == [16]
    assert encoder.fit == "resize" and ENCODER.fit == "letterbox"
    no_cls = encoder.encode([Image.new("RGB", (8, 8))], [0], has_cls=False)
    resid = torch.randn(1, 17, 4)
    torch.testing.assert_close(no_cls.sample_embedding(resid), resid[:, 1:].mean(1))
    torch.testing.assert_close(batch.sample_embedding(resid), resid[:, 0])


def test_checks():
    with pytest.raises(InputTypeError, match="expected a list of images"):
        check_images(5)
    with pytest.raises(InputError, match=r"images\[0\]: expected an array \[H W\]"):
        check_images([np.zeros((2, 2, 2, 2))])
    gray = load_image(np.full((4, 4), 0.5))  # floats in 0..1 are scaled to 0..255
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (127, 127, 127)
    with pytest.raises(InputError, match="not a multiple of patch"):
        ImageEncoder(_vit_processor(), 30, 8)
    with pytest.raises(InputError, match=r"processor: makes \(32, 32\) inputs"):
        ImageEncoder(_vit_processor(), 64, 8).encode([Image.new("RGB", (8, 8))], [0])
