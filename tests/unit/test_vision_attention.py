"""The per-image vision attention gives the remote code's result without its N × N memory."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.fixtures.tiny_dots.build import build_tiny_model  # noqa: E402
from workers.backends.transformers_backend import CpuBackend  # noqa: E402
from workers.backends.vision_attention import use_per_image_attention  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_dots")
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
    config.vision_config.attn_implementation = "sdpa"
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        folder, config=config, trust_remote_code=True, local_files_only=True, torch_dtype=torch.float32
    )
    return folder, loaded.eval()


def vision_inputs(tower, grids):
    """Random pixel patches for images of the given (t, h, w) patch grids, as the processor sends them."""
    config = tower.config
    per_patch = config.num_channels * config.temporal_patch_size * config.patch_size**2
    grid = torch.tensor(grids)
    patches = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    generator = torch.Generator().manual_seed(1)
    return torch.randn(patches, per_patch, generator=generator), grid


def test_per_image_attention_gives_the_remote_codes_result_for_two_images(model):
    _, loaded = model
    tower = loaded.vision_tower
    pixels, grid = vision_inputs(tower, [[1, 4, 6], [1, 8, 4]])
    with torch.no_grad():
        before = tower(pixels, grid, bf16=False)
        patched = use_per_image_attention(tower)
        after = tower(pixels, grid, bf16=False)
    assert patched == len(tower.blocks)
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_the_backend_patches_every_vision_block_when_it_loads(model):
    folder, _ = model
    backend = CpuBackend()
    backend.load({"backend": "cpu", "model": str(folder), "quantization": None, "dtype": "float32"})
    try:
        blocks = backend._model.vision_tower.blocks
        assert backend.vision_attention_patched == len(blocks)
        assert all(block.attn.forward.__func__.__name__ == "_per_image_forward" for block in blocks)
    finally:
        backend.unload()


def test_a_module_without_the_known_names_is_left_alone():
    class VisionSdpaAttention(torch.nn.Module):  # the name, but none of qkv/proj/num_heads
        def forward(self, x):
            return x

    holder = torch.nn.Sequential(VisionSdpaAttention())
    assert use_per_image_attention(holder) == 0
    assert holder[0].forward.__func__ is VisionSdpaAttention.forward
