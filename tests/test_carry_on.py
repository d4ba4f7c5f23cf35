"""Carrying a small network's training on from its checkpoint (`train.checkpoints.carry_on_from`)."""

import pytest
import torch

from backend.models.checkpoint import save_checkpoint
from backend.models.photo_embedding import (
    PHOTO_EMBEDDING_KIND,
    PhotoEmbedding,
    PhotoEmbeddingConfig,
    load_photo_embedding,
)
from backend.train.checkpoints import carry_on_from

SMALL = PhotoEmbeddingConfig(image_size=32, widths=(8, 16), dim=8)


def test_the_weights_and_the_record_come_across_and_training_can_go_on(tmp_path):
    torch.manual_seed(0)
    trained = PhotoEmbedding(SMALL)
    save_checkpoint(tmp_path / "run", trained, SMALL, kind=PHOTO_EMBEDDING_KIND, metadata={"steps": 7})
    fresh = PhotoEmbedding(SMALL)
    earlier = carry_on_from(fresh, tmp_path / "run", load_photo_embedding, "cpu")
    assert earlier == {"steps": 7}
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))
    assert fresh.training and all(p.requires_grad for p in fresh.parameters())


def test_another_architecture_is_refused(tmp_path):
    save_checkpoint(tmp_path / "run", PhotoEmbedding(SMALL), SMALL, kind=PHOTO_EMBEDDING_KIND, metadata={})
    with pytest.raises(ValueError, match="another architecture"):
        carry_on_from(PhotoEmbedding(PhotoEmbeddingConfig(image_size=32, widths=(8, 16), dim=16)), tmp_path / "run",
                      load_photo_embedding, "cpu")
