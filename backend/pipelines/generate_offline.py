"""Text → shape with no download: the shipped offline text model instead of CLIP and the mapper.

The prompt's words go through the text model (`backend/models/text_encoder.py`) to a code of the
shape model it was trained against; that model's decoder makes the surface and its colour
network the texture. Words the model does not know are named in a warning (with the known words
nearest to them); a prompt with no known content word is refused. There is no test-time
alignment: that needs an image-text model (CLIP) to score renders, which is the other path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, WEIGHTS_DIR, WeightsUnavailable, check_weights

if TYPE_CHECKING:
    from backend.models.shape_model import ShapeModel
    from backend.models.text_encoder import TextEncoder
    from backend.text.vocab import Vocabulary

TEXT_MODEL = WEIGHTS_DIR / "text_model"
"""The shipped text model (``text_model.json`` + ``.safetensors``), trained by scripts/train_text.py."""
TEXT_ENCODING_BLUR = 0.0
"""The text path decodes through the plain encoding, not reconstruction's blurred one
(`weights.ENCODING_BLUR`): the blur takes the ribs off ("a wooden chair" comes back smooth and in
one piece) but also fuses fine structure, a bookshelf's shelves, a mug's cavity, and the category
top-1 of `scripts/bench_text.py` fell from 0.750 to 0.707 at 0.03 and 0.685 at 0.05
(docs/text_to_shape.md)."""
SEED_SPREAD = 0.35
"""Seeds other than 0 move the code this far (standardised units, per dimension) in a random
direction of their own: another seed, another shape of the same description."""


def offline_missing_reason(path: Path = TEXT_MODEL, shape_model: Path = DEFAULT_WEIGHTS) -> str | None:
    """Why the offline text model cannot run (files missing or not matching), without torch."""
    manifest = path.with_name(path.name + ".json")
    if not manifest.is_file() or not path.with_name(path.name + ".safetensors").is_file():
        return (f"the offline text model ({manifest.name} + .safetensors in {manifest.parent}) is missing: "
                "reinstall Stepstone, or train it with scripts/train_text.py")
    try:
        wanted = json.loads(manifest.read_text())["metadata"]["shape_model_id"]
        have = check_weights(shape_model)
    except (ValueError, KeyError, TypeError, OSError, WeightsUnavailable) as exc:
        return f"the offline text model cannot be checked: {exc}"
    if wanted != have:
        return (f"the offline text model was trained for shape model {wanted}, but {shape_model.name} is {have}: "
                "retrain it with scripts/train_text.py")
    return None


def offline_unavailable(path: Path | None, loaded: bool = False) -> str | None:
    """Why a pipeline cannot fall back on the offline text model at ``path`` (None: turned off);
    None when it can (``loaded``: it already did)."""
    if loaded:
        return None
    return "the offline text model is turned off" if path is None else offline_missing_reason(path)


def load_offline_model(path: Path, device: str, unavailable: str | None, ctx) -> "OfflineTextModel":
    """The offline text model a pipeline falls back on, loaded for its first job (with a ``load``
    progress message), or PIPELINE_UNAVAILABLE with ``unavailable``, the pipeline's reason."""
    from backend.errors import PipelineError
    from backend.protocol import ErrorCode

    if unavailable is not None:
        raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, unavailable)
    ctx.progress("load", 0.0, "loading the offline text model")
    return OfflineTextModel.load(device, path)


@dataclass
class OfflineTextModel:
    encoder: TextEncoder
    vocabulary: Vocabulary
    shape_model: ShapeModel
    shape_model_id: str
    metadata: dict

    @classmethod
    def load(cls, device: str, path: Path = TEXT_MODEL, shape_model: Path = DEFAULT_WEIGHTS) -> OfflineTextModel:
        from backend.models.checkpoint import load_state_dict_strict, read_checkpoint
        from backend.models.text_encoder import TEXT_ENCODER_KIND, TextEncoder, TextEncoderConfig
        from backend.pipelines.reconstruct.weights import load_model
        from backend.text.vocab import Vocabulary

        model, _, dev = load_model(shape_model, device, TEXT_ENCODING_BLUR)
        checkpoint = read_checkpoint(path, TextEncoderConfig, kind=TEXT_ENCODER_KIND, device=dev)
        encoder = TextEncoder(checkpoint.config).to(dev)
        load_state_dict_strict(encoder, checkpoint.state_dict, source=str(path))
        encoder.eval().requires_grad_(False)
        return cls(encoder, Vocabulary.from_json(checkpoint.metadata["vocabulary"]), model,
                   check_weights(shape_model), checkpoint.metadata)

    @property
    def device(self):
        """The torch device the model runs on."""
        return self.encoder.code_mean.device

    def codes(self, prompt: str, seed: int = 0):
        """(shape code [S], colour code [C], main colour sRGB [3], the prompt's analysis)."""
        import torch

        from backend.models.text_encoder import pad_batch
        from backend.text.vocab import analyse

        analysis = analyse(prompt, self.vocabulary)
        ids = pad_batch([[self.vocabulary.index(word) for word in analysis.known]]).to(self.device)
        with torch.no_grad():
            standard = self.encoder(ids)
            if seed:
                noise = torch.randn(standard.shape, generator=torch.Generator().manual_seed(int(seed)))
                standard = standard + SEED_SPREAD * noise.to(standard.device)
            shape, color, rgb = self.encoder.split(standard)
        return shape[0], color[0], rgb[0], analysis

    def color_field(self, color_code, rgb, surface_points):
        """The colour network with this code, its mean on ``surface_points`` [K, 3] moved to ``rgb``."""
        import torch

        from backend.pipelines.stylize_fields import ShapeModelColorField, TintedColorField

        points = torch.as_tensor(surface_points, dtype=torch.float32, device=self.device)
        return TintedColorField(ShapeModelColorField(self.shape_model, color_code), points, rgb)
