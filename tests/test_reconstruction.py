"""Block-wise reconstruction: configs, units, error goes down, state restored, Swin runs."""
import copy
import json
import math

import pytest
import torch

import sardfq
from sardfq.quant import QuantConfig, quantize, quantizers
from sardfq.quant import ReconConfig, reconstruct, reconstruction_units


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_recon_config_validates_and_round_trips():
    config = ReconConfig(iters=5, lr=1e-4, batch_size=8, train=("weights",), seed=3)
    assert ReconConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ReconConfig().lr == 4e-5 and ReconConfig().batch_size == 32
    for field, bad in (("iters", -1), ("iters", 2.5), ("lr", 0.0), ("lr", float("nan")),
                       ("batch_size", 0), ("train", ("weights", "norms")), ("autocast", "fp16")):
        with pytest.raises(sardfq.ConfigError, match=field):
            ReconConfig(**{field: bad})


def test_units_cover_vit_and_swin_blocks_in_forward_order(teacher):
    model, _ = teacher
    assert reconstruction_units(model) == [f"blocks.{i}" for i in range(6)]
    swin, _ = sardfq.load_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64,
                                depths=(2, 2), num_heads=(1, 2), embed_dim=32, window_size=4)
    assert reconstruction_units(swin) == ["layers.0.blocks.0", "layers.0.blocks.1", "layers.1.downsample",
                                          "layers.1.blocks.0", "layers.1.blocks.1"]


@pytest.fixture(scope="module")
def short_teacher(teacher):
    """The teacher's first two blocks (trained weights, so errors are meaningful), kept short for speed."""
    model, info = teacher
    short = copy.deepcopy(model)
    short.blocks = short.blocks[:2]
    return short, info


def test_reconstruction_lowers_every_block_error(short_teacher):
    fp_model, info = short_teacher
    g = torch.Generator().manual_seed(0)
    calib = torch.randn(16, *info.input_size, generator=g)
    held = torch.randn(32, *info.input_size, generator=g)
    q = quantize(fp_model, info, QuantConfig(4, 4), calib)
    before_fp = {k: v.clone() for k, v in fp_model.state_dict().items()}
    scales = {n: qz.scale.clone() for n, qz in quantizers(q).items() if n.endswith("a_quant")}
    with torch.no_grad():
        err_before = (q(held) - fp_model(held)).pow(2).mean()
    result = reconstruct(q, fp_model, calib, ReconConfig(iters=20, batch_size=8), progress=False)
    assert [b.block for b in result.blocks] == ["blocks.0", "blocks.1"]
    for block in result.blocks:
        assert block.mse_after < block.mse_before, block
    with torch.no_grad():
        err_after = (q(held) - fp_model(held)).pow(2).mean()
    assert err_after < err_before  # held-out images: the model output moved towards the FP model
    # the FP model is untouched, flags restored, trained activation scales positive and moved
    assert all(torch.equal(before_fp[k], v) for k, v in fp_model.state_dict().items())
    assert all(p.requires_grad for p in q.parameters())
    moved = [n for n, s in scales.items() if not torch.equal(quantizers(q)[n].scale, s)]
    assert moved and all((quantizers(q)[n].scale > 0).all() for n in moved)
    assert q.sardfq_quant["reconstruction"]["blocks"][0]["block"] == "blocks.0"


def test_bf16_reconstruction_is_finite_and_close_to_float32(short_teacher):
    fp_model, info = short_teacher
    calib = torch.randn(8, *info.input_size, generator=torch.Generator().manual_seed(0))
    results = {}
    for autocast in (None, "bf16"):
        q = quantize(fp_model, info, QuantConfig(4, 4), calib)
        results[autocast] = reconstruct(q, fp_model, calib, ReconConfig(iters=5, batch_size=8, autocast=autocast),
                                        progress=False)
    first32, first16 = results[None].blocks[0], results["bf16"].blocks[0]
    assert first16.mse_before == first32.mse_before  # measured in float32 either way
    assert first16.mse_after != first32.mse_after  # autocast did change the training steps
    for fp32, bf16 in zip(results[None].blocks, results["bf16"].blocks):
        assert math.isfinite(bf16.mse_after) and bf16.mse_after < bf16.mse_before
        assert abs(bf16.mse_after - fp32.mse_after) < 0.05 * fp32.mse_after
    assert results["bf16"].to_dict()["config"]["autocast"] == "bf16"


def test_zero_iterations_change_nothing(short_teacher):
    fp_model, info = short_teacher
    calib = torch.randn(4, *info.input_size, generator=torch.Generator().manual_seed(0))
    q = quantize(fp_model, info, QuantConfig(4, 4), calib)
    state = {k: v.clone() for k, v in q.state_dict().items()}
    result = reconstruct(q, fp_model, calib, ReconConfig(iters=0), progress=False)
    assert all(b.mse_before == b.mse_after for b in result.blocks)
    assert all(torch.equal(state[k], v) for k, v in q.state_dict().items())


def test_swin_reconstruction_runs_through_stages():
    torch.manual_seed(0)
    fp_model, info = sardfq.load_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64,
                                       depths=(2, 2), num_heads=(1, 2), embed_dim=32, window_size=4)
    calib = torch.randn(4, *info.input_size, generator=torch.Generator().manual_seed(1))
    q = quantize(fp_model, info, QuantConfig(4, 4), calib)
    result = reconstruct(q, fp_model, calib, ReconConfig(iters=2, batch_size=2), progress=False)
    assert [b.block for b in result.blocks] == reconstruction_units(fp_model)
    assert all(torch.isfinite(torch.tensor([b.mse_before, b.mse_after])).all() for b in result.blocks)
    with torch.no_grad():
        assert torch.isfinite(q(calib)).all()
