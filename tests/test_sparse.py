"""Sparse inversion (SMI): which tokens a pass keeps, how they travel with jitter and crops, what the
finished image holds, and the `smi` method."""
import json

import pytest
import torch

import sardfq
from sardfq import SynthesisConfig, synthesize
from sardfq.cli import main
from sardfq.synthesis.sparse import (PatchSchedule, class_token_attention, keep_tokens, prune_steps,
                                     restrict_priors)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    """A random 2-block ViT at 32 px with patch 8: a 4x4 grid of 16 patches."""
    torch.manual_seed(0)
    return sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)


@torch.no_grad()
def test_keep_tokens_runs_timms_forward_on_the_chosen_patches(tiny):
    model, info = tiny
    images = torch.randn(3, *info.input_size, generator=torch.Generator().manual_seed(0))
    dense = model(images)
    index = torch.tensor([[0, 5, 9], [15, 2, 3], [1, 4, 8]])
    with keep_tokens(model) as keep:
        keep.index = torch.arange(16).expand(3, 16)
        assert torch.equal(model(images), dense)  # every patch kept: the dense pass
        keep.index = index
        sparse = model(images)
    tokens = model._pos_embed(model.patch_embed(images))  # what timm does, with the patches picked
    tokens = torch.cat([tokens[:, :1], tokens[:, 1:].gather(1, index[..., None].expand(-1, -1, tokens.shape[-1]))], 1)
    expected = model.forward_head(model.norm(model.blocks(model.norm_pre(tokens))))
    assert torch.allclose(sparse, expected, atol=1e-6) and not torch.allclose(sparse, dense, atol=1e-3)
    assert type(model.patch_drop).__name__ != "KeepTokens"  # put back on exit


def test_the_model_loss_reaches_only_the_pixels_of_kept_patches(tiny):
    model, info = tiny
    images = torch.randn(2, *info.input_size, requires_grad=True)
    schedule = PatchSchedule(2, (4, 4), (32, 32), [1], 0.5)
    schedule.stop(1, torch.arange(16.0).expand(2, 16))  # patches 8..15 attended most: they stay
    with keep_tokens(model) as keep:
        keep.index = schedule.rows()
        model(images).sum().backward()
    running = schedule.pixel_mask().expand_as(images)
    assert (images.grad[~running] == 0).all() and (images.grad[running] != 0).float().mean() > 0.9


def test_a_stop_keeps_the_most_attended_share_and_records_it():
    schedule = PatchSchedule(2, (4, 4), (32, 32), prune_steps(100, (0.05, 0.3)), 0.3)
    assert schedule.steps == {5, 30} and schedule.due(5) and not schedule.due(6)
    attention = torch.rand(2, 16, generator=torch.Generator().manual_seed(0))
    schedule.stop(5, attention)
    assert schedule.kept.shape == (2, 11)  # int(16 * 0.7), as SMI counts
    for row, att in zip(schedule.kept, attention):
        assert set(row.tolist()) == set(att.topk(11).indices.tolist()) and row.tolist() == sorted(row.tolist())
    schedule.stop(30, torch.ones(2, 11))
    assert schedule.kept.shape == (2, 7) and [h["kept"] for h in schedule.history] == [11, 7]
    assert schedule.fraction == 7 / 16 and schedule.pixel_mask().float().mean() == 7 / 16


@pytest.mark.parametrize("shift,flip", [(0, False), (8, False), (-16, True), (8, True), (3, False)])
def test_kept_patches_travel_with_the_roll_and_the_flip(shift, flip):
    """Images whose patch p is filled with the value p: after the loop's roll and flip, the tokens a
    row keeps hold the same patches as before (a roll of 3 px moves a patch to its nearest cell: 0)."""
    schedule = PatchSchedule(2, (4, 4), (32, 32), [1], 0.5)
    schedule.stop(1, torch.rand(2, 16, generator=torch.Generator().manual_seed(1)))
    values = torch.arange(16.0).view(1, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3).expand(2, 1, 32, 32)
    moved = torch.roll(values, shifts=(shift, shift), dims=(2, 3))
    moved = moved.flip(3) if flip else moved
    cells = moved[:, 0, 4::8, 4::8].reshape(2, 16)  # the value at the centre of each cell
    assert torch.equal(cells.gather(1, schedule.rows(shift, flip)).sort(1).values, schedule.kept.float())


def test_a_crop_keeps_as_many_tokens_as_its_image_from_its_kept_patches_first():
    schedule = PatchSchedule(1, (4, 4), (32, 32), [1, 2], 0.5)
    first = torch.tensor([[9.0, 9, 5, 5, 9, 9, 5, 5] + [0.0] * 8])  # the top half stays
    schedule.stop(1, first)
    schedule.stop(2, torch.tensor([[9.0, 9, 0, 0, 9, 9, 0, 0]]))  # of the top half, the left quadrant
    assert schedule.kept.tolist() == [[0, 1, 4, 5]]  # the top-left quadrant runs on
    tokens = schedule.rows(crops=(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 3])))
    assert tokens.shape == (4, 4)

    def under(quadrant, token):  # the image patch under a crop token (a crop cell is half an image cell)
        r, c = divmod(token, 4)
        return (quadrant // 2 * 2 + r // 2) * 4 + quadrant % 2 * 2 + c // 2

    assert {under(0, t) for t in tokens[1].tolist()} <= {0, 1, 4, 5}  # the crop over the running patches
    assert {under(1, t) for t in tokens[2].tolist()} <= {2, 3, 6, 7}  # its patches stopped at step 2
    assert {under(3, t) for t in tokens[3].tolist()} <= {10, 11, 14, 15}  # stopped at step 1
    assert schedule.stopped_at[0, [2, 10]].tolist() == [2, 1]


def test_priors_are_restricted_to_the_kept_patches_and_renormalized():
    prior = torch.softmax(torch.randn(2, 3, 16), -1)
    index = torch.tensor([[0, 3, 7], [1, 2, 15]])
    out = restrict_priors({5: prior}, index)[5]
    assert out.shape == (2, 3, 3) and torch.allclose(out.sum(-1), torch.ones(2, 3))
    assert torch.allclose(out[1, 2], prior[1, 2, [1, 2, 15]] / prior[1, 2, [1, 2, 15]].sum())
    maps = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    assert torch.allclose(class_token_attention(maps, 1), maps[:, :, 0, 1:].mean(1))


# --------------------------------------------------------------------------------- synthesis
def test_smi_inverts_sparsely_and_blackens_the_stopped_patches(tiny):
    model, info = tiny
    config = SynthesisConfig(method="smi", n=4, iterations=20)
    first = synthesize(model, info, config, progress=False)
    again = synthesize(model, info, config, progress=False)
    assert torch.equal(first.images, again.images)  # deterministic under a seed
    meta = first.metadata["sparse"]
    assert config.is_sparse and config.label == "smi" and meta["prune_steps"] == [1, 2, 4, 6]
    assert [s["kept"] for s in meta["stops"]] == [11, 7, 4, 2] and meta["final_fraction"] == 2 / 16
    assert 0.12 < meta["mean_token_fraction"] < 0.3 and len(meta["kept_patches"]) == 4
    black = sardfq.data.pixel_range(info)[0]
    is_black = (first.images == black).all(1)  # B, H, W
    assert is_black.float().mean().item() == pytest.approx(1 - 2 / 16)
    assert [h["tokens"] for h in first.metadata["history"]][-1] == 2 / 16
    assert set(first.metadata["loss_weights"]) == {"ce", "tv"}


def test_frozen_keeps_the_stopped_patches_and_agrees_on_the_kept_ones(tiny):
    model, info = tiny
    zero = synthesize(model, info, SynthesisConfig(method="psaq", sparse=True, n=4, iterations=12), progress=False)
    frozen = synthesize(model, info, SynthesisConfig(method="psaq", sparse=True, stopped="frozen", n=4,
                                                     iterations=12), progress=False)
    black = sardfq.data.pixel_range(info)[0]
    stopped = (zero.images == black).all(1, keepdim=True).expand_as(zero.images)
    assert stopped.any() and torch.equal(zero.images[~stopped], frozen.images[~stopped])
    assert not (frozen.images == black).all(1).any()  # the stopped patches hold pixels, not black


@pytest.mark.parametrize("method", ["psaq", "sardfq"])
def test_every_method_runs_sparse_and_says_so(tiny, method):
    model, info = tiny
    dense = SynthesisConfig(method=method, n=4, iterations=8)
    sparse = SynthesisConfig(method=method, sparse=True, n=4, iterations=20)
    assert not dense.is_sparse and sparse.label == f"{method}-sparse"
    result = synthesize(model, info, sparse, progress=False)
    assert result.metadata["sparse"]["final_fraction"] < 0.2 and result.metadata["label"] == f"{method}-sparse"
    assert synthesize(model, info, dense, progress=False).metadata["sparse"] is None
    assert SynthesisConfig(method="smi", sparse=False).label == "smi-dense"


def test_sparse_config_is_checked_and_round_trips():
    config = SynthesisConfig(method="sardfq", sparse=True, prune_at=[0.3, 0.1], prune_ratio=0.5, stopped="frozen")
    assert config.prune_at == (0.1, 0.3)
    assert SynthesisConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for field, value in (("prune_at", (0.0, 0.5)), ("prune_at", ()), ("prune_ratio", 1.0), ("stopped", "black"),
                         ("sparse", "yes")):
        with pytest.raises(sardfq.ConfigError, match=field):
            SynthesisConfig(**{field: value})


def test_sparse_inversion_of_a_model_without_a_class_token_is_refused():
    torch.manual_seed(0)
    swin = sardfq.load_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, window_size=4,
                             depths=(2, 2), num_heads=(2, 4), embed_dim=32)
    with pytest.raises(sardfq.ConfigError, match="class token"):
        synthesize(*swin, SynthesisConfig(method="smi", n=2, iterations=2), progress=False)


def test_cli_synthesize_smi_and_sparse(tmp_path, capsys):
    out = tmp_path / "smi.safetensors"
    assert main(["synthesize", "vit_tiny_cifar10", "--method", "smi", "--n", "2", "--iters", "20",
                 "--out", str(out)]) == 0
    assert "2 smi images" in capsys.readouterr().out
    calib = sardfq.CalibrationSet.load(out)
    assert calib.metadata["sparse"]["final_fraction"] < 0.3
    out = tmp_path / "psaq.safetensors"
    assert main(["synthesize", "vit_tiny_cifar10", "--method", "psaq", "--sparse", "--stopped", "frozen",
                 "--prune-at", "0.25", "--prune-ratio", "0.5", "--n", "2", "--iters", "8", "--out", str(out)]) == 0
    meta = sardfq.CalibrationSet.load(out).metadata
    assert meta["label"] == "psaq-sparse" and meta["sparse"]["stops"][0]["kept"] == 32  # int(64 * 0.5)
