"""The emoji scene generator (dosod_tools.demo.emoji_data); needs the font (apt-get install fonts-noto-color-emoji)."""

from __future__ import annotations

import numpy as np
import pytest

from dosod_tools.demo import emoji_data

FONT_MISSING = not emoji_data.FONT.exists()


@pytest.fixture(scope="module")
def generator() -> emoji_data.SceneGenerator:
    if FONT_MISSING:
        pytest.skip("fonts-noto-color-emoji is not installed")
    return emoji_data.SceneGenerator("train", size=320, seed=3)


def test_scenes_are_deterministic_and_boxes_valid(generator: emoji_data.SceneGenerator) -> None:
    seen = set(emoji_data.class_ids(generator.classes, "seen"))
    for i in range(6):
        a, b = generator.scene(i), generator.scene(i)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
        assert a.image.shape == (320, 320, 3) and a.image.dtype == np.uint8
        assert len(a.boxes) == len(a.labels) == len(a.areas)
        assert ((a.boxes[:, :2] >= 0) & (a.boxes[:, 2:] <= 320)).all()
        assert ((a.boxes[:, 2:] - a.boxes[:, :2]) >= emoji_data.MIN_BOX).all()
        assert set(a.labels.tolist()) <= seen  # the train split never draws unseen classes
    assert not np.array_equal(generator.scene(0).image, generator.scene(1).image)


def test_heldout_stream_differs_from_train() -> None:
    if FONT_MISSING:
        pytest.skip("fonts-noto-color-emoji is not installed")
    train = emoji_data.SceneGenerator("train", seed=0)
    held = emoji_data.SceneGenerator("heldout", seed=0)
    assert set(train.recipe.backgrounds).isdisjoint(set(held.recipe.backgrounds) - {"photo"})
    assert set(train.recipe.photos).isdisjoint(held.recipe.photos)
    assert not np.array_equal(train.scene(0).image, held.scene(0).image)
