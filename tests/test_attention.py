import pytest
import torch
from timm.models.swin_transformer import window_partition

import sardfq

SMALL_MODELS = {
    "deit_tiny": ("deit_tiny_patch16_224", dict(img_size=32, depth=2)),
    "vit_small": ("vit_small_patch16_224", dict(img_size=48, depth=2)),
    "swin_tiny": ("swin_tiny_patch4_window7_224", dict(img_size=112, depths=(2, 2, 1, 1))),
}


def _model(key, teacher):
    if key == "teacher":
        return teacher
    name, kwargs = SMALL_MODELS[key]
    torch.manual_seed(0)
    return sardfq.load_model(name, pretrained=False, **kwargs)


@pytest.mark.parametrize("key", ["teacher", "deit_tiny", "vit_small", "swin_tiny"])
def test_capture_shapes_rows_and_unchanged_outputs(key, teacher):
    model, info = _model(key, teacher)
    x = torch.randn(2, *info.input_size)
    with torch.no_grad():
        expected = model(x)
        with sardfq.record_attention(model) as rec:
            got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert sorted(rec.maps) == list(range(info.num_blocks))
    for idx, probs in rec.maps.items():
        heads = info.num_heads[idx]
        if info.family == "vit":
            tokens = info.patch_grid[0] * info.patch_grid[1] + 1
            assert probs.shape == (2, heads, tokens, tokens)
        else:  # Swin: one map per window of each image, over the window's tokens
            block = sardfq.attention_blocks(model)[idx]
            (h, w), (wh, ww) = block.input_resolution, block.window_size
            windows = -(-h // wh) * -(-w // ww)
            assert probs.shape == (2 * windows, heads, wh * ww, wh * ww)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
    for idx, maps in rec.patch_attention().items():
        h, w = rec.grids[idx]
        assert maps.shape == (2, info.num_heads[idx], h * w)
        assert (maps >= 0).all()
        torch.testing.assert_close(maps.sum(-1), torch.ones(2, info.num_heads[idx]), atol=1e-5, rtol=0)


def test_hooks_removed_and_fused_attention_restored(teacher):
    model, info = teacher
    blocks = sardfq.attention_blocks(model)
    fused = [b.attn.fused_attn for b in blocks]
    with sardfq.record_attention(model, blocks=[4, 5]) as rec:
        assert not blocks[5].attn.fused_attn and blocks[0].attn.fused_attn == fused[0]
        model(torch.randn(1, *info.input_size))
    assert sorted(rec.maps) == [4, 5]
    assert [b.attn.fused_attn for b in blocks] == fused
    assert all(not b.attn.attn_drop._forward_hooks for b in blocks)


def test_hooks_removed_when_the_forward_fails(teacher):
    model, _ = teacher
    with pytest.raises(ValueError, match="midway"):
        with sardfq.record_attention(model):
            model(torch.randn(1, 3, 32, 32))
            raise ValueError("interrupted midway")
    assert all(not b.attn.attn_drop._forward_hooks for b in sardfq.attention_blocks(model))


def test_class_token_row_is_patch_attention(teacher):
    model, info = teacher
    with torch.no_grad(), sardfq.record_attention(model, blocks=[5]) as rec:
        model(torch.randn(3, *info.input_size))
    row = rec.maps[5][:, :, 0, 1:]
    torch.testing.assert_close(rec.patch_attention()[5], row / row.sum(-1, keepdim=True))


def test_attention_keeps_gradients_to_the_input(teacher):
    model, info = teacher
    x = torch.randn(2, *info.input_size, requires_grad=True)
    with sardfq.record_attention(model, blocks=[5]) as rec:
        model(x)
    rec.patch_attention()[5][:, :, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_swin_patch_attention_undoes_windows_and_shift():
    model, info = _model("swin_tiny", None)
    x = torch.randn(2, *info.input_size)
    with torch.no_grad(), sardfq.record_attention(model, blocks=[0, 1]) as rec:
        model(x)
    blocks = sardfq.attention_blocks(model)
    for idx in (0, 1):
        H, W = rec.grids[idx]
        shift = tuple(blocks[idx].shift_size)
        window = tuple(blocks[idx].window_size)
        # Where each window token sits in the image: partition a map of positions the way the block
        # partitions its features (roll by -shift, then windows).
        positions = torch.arange(H * W, dtype=torch.float32).view(1, H, W, 1)
        positions = torch.roll(positions, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        positions = window_partition(positions, window).reshape(-1).long()  # windows * area
        received = rec.maps[idx].mean(dim=2)  # B*nW, heads, area
        B, heads = 2, received.shape[1]
        direct = torch.zeros(B, heads, H * W)
        direct[:, :, positions] = received.view(B, -1, heads, window[0] * window[1]).permute(0, 2, 1, 3).reshape(B, heads, -1)
        direct = direct / direct.sum(-1, keepdim=True)
        torch.testing.assert_close(rec.patch_attention()[idx], direct)
    assert tuple(blocks[1].shift_size) != (0, 0)  # the test covers a shifted block


def test_block_index_out_of_range_is_an_error(teacher):
    model, _ = teacher
    with pytest.raises(IndexError, match="6 blocks"):
        with sardfq.record_attention(model, blocks=[6]):
            pass
