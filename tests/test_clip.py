"""CLIP loading (weights sources and their failures) and the frozen, differentiable wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from backend.models.clip import (
    CHECKPOINT_ENV_VAR,
    ClipConfig,
    ClipConfigError,
    ClipInputError,
    ClipWeightsUnavailable,
    load_clip,
    resolve_weights_source,
)
from backend.models.clip_testing import TINY_CLIP_EMBED_DIM, load_tiny_clip, tiny_clip_config
from backend.models.clip_tokens import ClipPromptTooLong, check_clip_prompt, count_clip_tokens

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_clip():
    return load_tiny_clip(seed=0)


@pytest.fixture(autouse=True)
def _no_checkpoint_env(monkeypatch):
    # A developer's own CLIP checkpoint setting must not leak into these tests.
    monkeypatch.delenv(CHECKPOINT_ENV_VAR, raising=False)


def _save_tiny_weights(clip, path: Path) -> Path:
    state = {name: t.detach().clone().contiguous() for name, t in clip._model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def _file_config(path: Path | None = None) -> ClipConfig:
    config = tiny_clip_config()
    config.allow_random_weights = False
    config.checkpoint_path = None if path is None else str(path)
    return config


# --- weights sources ---------------------------------------------------------------------------


def test_real_tag_offline_raises_actionable_error_through_open_clip(tmp_path):
    """The real download path (open_clip → huggingface_hub) with the hub offline, in a child process
    so the offline switch is read at import and a hang is cut off by the timeout."""
    script = textwrap.dedent(
        f"""
        import json
        from backend.models.clip import ClipConfig, load_clip
        try:
            load_clip(ClipConfig(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k",
                                 cache_dir={str(tmp_path)!r}, device="cpu"))
            print(json.dumps({{"type": None}}))
        except Exception as exc:
            print(json.dumps({{"type": type(exc).__name__, "message": str(exc)}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != CHECKPOINT_ENV_VAR}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["type"] == "ClipWeightsUnavailable"
    message = result["message"]
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", str(tmp_path), CHECKPOINT_ENV_VAR, "huggingface.co/laion/"):
        assert needle in message


def test_downloads_off_fails_at_once_naming_model_tag_cache_and_env_var(tmp_path):
    config = ClipConfig(pretrained="openai", cache_dir=str(tmp_path), allow_download=False, device="cpu")
    with pytest.raises(ClipWeightsUnavailable) as err:
        load_clip(config)
    message = str(err.value)
    for needle in ("ViT-B-32", "'openai'", str(tmp_path), CHECKPOINT_ENV_VAR, "checkpoint_path"):
        assert needle in message


def test_tag_weights_are_found_in_the_hub_cache_without_network(tmp_path):
    # The Hugging Face cache layout: refs/main names a snapshot that holds the file.
    repo = tmp_path / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"placeholder")

    source = resolve_weights_source(ClipConfig(cache_dir=str(tmp_path)), environ={})
    assert source.kind == "tag"
    assert source.path == snapshot / "open_clip_model.safetensors"

    empty = resolve_weights_source(ClipConfig(cache_dir=str(tmp_path / "empty")), environ={})
    assert empty.kind == "tag" and empty.path is None and empty.cache_dir == tmp_path / "empty"


def test_weights_source_order(tmp_path):
    env = {CHECKPOINT_ENV_VAR: str(tmp_path / "env.safetensors")}
    explicit = ClipConfig(checkpoint_path=str(tmp_path / "cfg.safetensors"))
    assert resolve_weights_source(explicit, env).path == tmp_path / "cfg.safetensors"
    from_env = resolve_weights_source(ClipConfig(cache_dir=str(tmp_path)), env)
    assert from_env.kind == "checkpoint" and from_env.path == tmp_path / "env.safetensors"
    assert CHECKPOINT_ENV_VAR in from_env.origin
    assert resolve_weights_source(ClipConfig(cache_dir=str(tmp_path)), {}).kind == "tag"
    with pytest.raises(ClipWeightsUnavailable):
        resolve_weights_source(ClipConfig(pretrained=None), {})


def test_random_weights_need_the_explicit_flag():
    config = tiny_clip_config()
    config.allow_random_weights = False
    with pytest.raises(ClipWeightsUnavailable, match="no CLIP weights configured"):
        load_clip(config)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_path_loads_the_same_weights(tiny_clip, tmp_path, suffix):
    path = _save_tiny_weights(tiny_clip, tmp_path / f"tiny{suffix}")
    loaded = load_clip(_file_config(path))
    texts = ["a wooden chair", "a green apple"]
    assert torch.allclose(loaded.encode_text(texts), tiny_clip.encode_text(texts), atol=1e-6)
    assert loaded.model_id.startswith("open_clip:stepstone-tiny-clip:sha256-")
    assert "random" not in loaded.model_id and "random" in tiny_clip.model_id


def test_model_id_depends_on_weights_not_on_file_format(tiny_clip, tmp_path):
    a = load_clip(_file_config(_save_tiny_weights(tiny_clip, tmp_path / "a.safetensors")))
    b = load_clip(_file_config(_save_tiny_weights(tiny_clip, tmp_path / "b.pt")))
    other = load_clip(_file_config(_save_tiny_weights(load_tiny_clip(seed=1), tmp_path / "c.safetensors")))
    assert a.model_id == b.model_id
    assert other.model_id != a.model_id


def test_env_var_checkpoint_is_used_and_config_path_wins(tiny_clip, tmp_path, monkeypatch):
    path = _save_tiny_weights(tiny_clip, tmp_path / "tiny.safetensors")
    monkeypatch.setenv(CHECKPOINT_ENV_VAR, str(path))
    assert CHECKPOINT_ENV_VAR in load_clip(_file_config()).weights_description

    monkeypatch.setenv(CHECKPOINT_ENV_VAR, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ClipWeightsUnavailable) as err:
        load_clip(_file_config())
    assert CHECKPOINT_ENV_VAR in str(err.value) and "missing.safetensors" in str(err.value)
    assert load_clip(_file_config(path)).model_id.startswith("open_clip:stepstone-tiny-clip:sha256-")


def test_bad_checkpoint_files_raise_weights_unavailable(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(ClipWeightsUnavailable, match="garbage.pt"):
        load_clip(_file_config(garbage))

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"unrelated.weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(ClipWeightsUnavailable, match="stepstone-tiny-clip"):
        load_clip(_file_config(foreign))

    with pytest.raises(ClipWeightsUnavailable, match="does not exist"):
        load_clip(_file_config(tmp_path / "nowhere.safetensors"))


def test_config_errors():
    with pytest.raises(ClipConfigError, match="unknown open_clip model"):
        load_clip(ClipConfig(model_name="ViT-Nope"))
    with pytest.raises(ClipConfigError, match="laion2b_s34b_b79k"):
        load_clip(ClipConfig(pretrained="no-such-tag"))
    with pytest.raises(ClipConfigError, match="precision"):
        load_clip(ClipConfig(precision="fp8"))
    config = tiny_clip_config()
    config.precision = "fp16"
    with pytest.raises(ClipConfigError, match="CUDA"):
        load_clip(config)


# --- the wrapper ---------------------------------------------------------------------------------


def test_clip_is_frozen_and_in_eval_mode(tiny_clip):
    assert all(not p.requires_grad for p in tiny_clip.parameters())
    assert not tiny_clip._model.training


def test_encode_text_shape_norm_and_determinism(tiny_clip):
    features = tiny_clip.encode_text(["a red chair", "a blue car", "a red chair"])
    assert features.shape == (3, TINY_CLIP_EMBED_DIM)
    assert features.dtype == torch.float32
    assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(features[0], features[2], atol=1e-6)
    assert not torch.allclose(features[0], features[1])
    assert not features.requires_grad
    same_seed = load_tiny_clip(seed=0)
    assert same_seed.model_id == tiny_clip.model_id
    assert torch.allclose(same_seed.encode_text(["a red chair"]), features[:1], atol=1e-5)


def test_encode_text_rejects_bad_input(tiny_clip):
    with pytest.raises(ClipInputError):
        tiny_clip.encode_text("a bare string")
    with pytest.raises(ClipInputError):
        tiny_clip.encode_text([])


def test_encode_image_is_differentiable_to_pixels_only(tiny_clip):
    rendered = torch.rand(2, 3, 45, 60, requires_grad=True)  # non-square, resized and centre-cropped
    features = tiny_clip.encode_image(rendered)
    assert features.shape == (2, TINY_CLIP_EMBED_DIM)
    assert torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-5)
    target = tiny_clip.encode_text(["a lamp"])
    (features @ target.T).sum().backward()
    assert rendered.grad is not None and rendered.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_preprocess_normalises_like_clip(tiny_clip):
    images = torch.rand(1, 3, 32, 32)  # already the tiny model's size: no resampling
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    assert torch.allclose(tiny_clip.preprocess(images), (images - mean) / std, atol=1e-6)
    assert tiny_clip.preprocess(torch.rand(2, 3, 64, 96)).shape == (2, 3, 32, 32)
    with pytest.raises(ClipInputError):
        tiny_clip.encode_image(torch.rand(3, 32, 32))
    with pytest.raises(ClipInputError):
        tiny_clip.encode_image(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_bf16_runs_on_cpu_with_fp32_features():
    config = tiny_clip_config()
    config.precision = "bf16"
    clip = load_clip(config)
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    features = clip.encode_image(image)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    features.sum().backward()
    assert image.grad is not None
    assert clip.model_id == load_tiny_clip(seed=0).model_id


# --- prompt tokens -----------------------------------------------------------------------------


def test_token_count_includes_start_and_end():
    assert count_clip_tokens("a photo of a chair") == 7
    assert count_clip_tokens("") == 2
    assert count_clip_tokens("A   Photo of a CHAIR ") == 7  # CLIP lower-cases and collapses spaces


def test_77_tokens_pass_and_78_raise(tiny_clip):
    fits = " ".join(["a"] * 75)
    too_long = " ".join(["a"] * 76)
    assert check_clip_prompt(fits) == 77
    with pytest.raises(ClipPromptTooLong) as err:
        check_clip_prompt(too_long)
    assert err.value.token_count == 78 and err.value.limit == 77
    assert "78" in str(err.value)
    tiny_clip.encode_text([fits])
    with pytest.raises(ClipPromptTooLong):
        tiny_clip.encode_text(["fine", too_long])
