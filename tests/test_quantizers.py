"""Quantizers and QuantConfig: error bounds, idempotence, per-channel ranges, log2 levels, STE."""
import json

import pytest
import torch

import sardfq
from sardfq.quant import (QUANTIZERS, SEARCHES, Log2Quantizer, QuantConfig, UniformQuantizer,
                          calibrate_quantizer, make_quantizer, round_ste)

BITS = range(2, 9)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed=0, shape=(4096,), heavy=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if heavy:  # a few large outliers, as in ViT activations
        x = x + (torch.rand(shape, generator=g) < 0.002) * 20.0
    return x


@pytest.mark.parametrize("bits", BITS)
def test_uniform_error_at_most_half_a_step_inside_the_range(bits):
    x = _data(bits)
    q = UniformQuantizer(bits, "minmax")
    calibrate_quantizer(q, x)
    step = q.scale.item()
    assert step == pytest.approx((x.max() - x.min()).item() / (2 ** bits - 1), rel=1e-5)
    err = (q(x) - x).abs()
    assert err.max().item() <= step / 2 * (1 + 1e-4) + 1e-6


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("search", ["grid", "quantile"])
def test_per_channel_error_at_most_half_a_step_for_values_in_range(bits, search):
    w = _data(bits, (16, 64), heavy=True)
    q = UniformQuantizer(bits, search, channels=16, ndim=2)
    calibrate_quantizer(q, w)
    codes = w / q.scale + q.zero_point  # 16, 64
    inside = (codes >= -0.5) & (codes <= 2 ** bits - 1 + 0.5)  # values that round onto the grid
    err = (q(w) - w).abs()
    half = (q.scale / 2).expand_as(w)
    assert inside.float().mean() > (0.95 if bits >= 4 else 0.5)  # low bits clip more (lower L2)
    assert (err[inside] <= half[inside] * (1 + 1e-4) + 1e-7).all()


@pytest.mark.parametrize("bits", BITS)
def test_quantizers_are_idempotent(bits):
    x = _data(bits, (8, 128), heavy=True)
    per_tensor = UniformQuantizer(bits, "quantile")
    per_channel = UniformQuantizer(bits, "grid", channels=8, ndim=2)
    log2 = Log2Quantizer(bits)
    probs = torch.softmax(x * 3, dim=-1)
    for q, data in ((per_tensor, x), (per_channel, x), (log2, probs)):
        calibrate_quantizer(q, data)
        once = q(data)
        assert torch.equal(q(once), once), type(q).__name__


def test_per_channel_scales_follow_each_channel():
    w = _data(1, (6, 256)) * torch.tensor([0.01, 0.1, 1.0, 10.0, 0.5, 2.0])[:, None]
    q = UniformQuantizer(4, "minmax", channels=6, ndim=2)
    calibrate_quantizer(q, w)
    assert q.scale.shape == (6, 1) and q.zero_point.shape == (6, 1)
    expected = (w.amax(1) - w.amin(1)) / 15
    assert torch.allclose(q.scale.flatten(), expected, rtol=1e-5)
    # conv weights: one scale per output channel, broadcasting over in, kh, kw
    conv = UniformQuantizer(8, "grid", channels=6, ndim=4)
    calibrate_quantizer(conv, w.reshape(6, 4, 8, 8))
    assert conv.scale.shape == (6, 1, 1, 1)
    assert len(torch.unique(conv.scale)) == 6


def test_range_search_beats_min_max_on_outliers():
    x = _data(3, (20000,), heavy=True)
    errors = {}
    for search in ("minmax", "quantile", "grid"):
        q = UniformQuantizer(4, search)
        calibrate_quantizer(q, x)
        errors[search] = (q(x) - x).pow(2).sum().item()
    assert errors["quantile"] < errors["minmax"]
    assert errors["grid"] < errors["minmax"]


@pytest.mark.parametrize("bits", BITS)
def test_log2_outputs_are_powers_of_two_times_the_scale(bits):
    probs = torch.softmax(_data(bits, (4, 3, 17, 17)) * 4, dim=-1)
    probs[0, 0, 0, :5] = 0.0  # exact zeros, as masked Swin attention produces
    q = Log2Quantizer(bits)
    calibrate_quantizer(q, probs)
    top = probs.max()
    assert top / 2 < q.scale <= top  # the searched shift t in [0, 1): scale = max * 2^-t
    out = q(probs)
    nonzero = out[out != 0]
    exponent = -torch.log2(nonzero / q.scale)
    assert torch.allclose(exponent, exponent.round(), atol=1e-5)
    assert exponent.round().min() >= 0 and exponent.round().max() <= 2 ** bits - 2
    assert (out[probs == 0] == 0).all()
    # the search picked the lowest L2 error among the shifts
    best = (out - probs).pow(2).sum()
    for t in (0.0, 0.5):
        other = Log2Quantizer(bits)
        other.scale.fill_(top * 2 ** -t)
        other.calibrated.fill_(True)
        assert best <= (other(probs) - probs).pow(2).sum() + 1e-9


def test_straight_through_rounding_passes_gradients():
    x = torch.linspace(-2, 2, 101, requires_grad=True)
    round_ste(x * 3.3).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 3.3))

    q = UniformQuantizer(4, "minmax")
    calibrate_quantizer(q, torch.linspace(-1, 1, 11))
    x = torch.linspace(-1, 1, 50, requires_grad=True)
    q(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # inside the range: gradient 1
    x = torch.tensor([-5.0, 0.3, 5.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]  # clipped values get none

    log2 = Log2Quantizer(4)
    probs = torch.softmax(torch.randn(2, 9), -1)
    probs = torch.cat([probs, torch.zeros(2, 1)], dim=1).requires_grad_(True)
    calibrate_quantizer(log2, probs.detach())
    log2(probs).pow(2).sum().backward()
    assert torch.isfinite(probs.grad).all() and probs.grad.abs().sum() > 0


def test_trained_scale_gets_a_gradient():
    q = UniformQuantizer(4, "minmax")
    calibrate_quantizer(q, torch.linspace(-1, 1, 11))
    scale = q.train_scale()
    x = torch.randn(100)
    (q(x) - x).pow(2).sum().backward()
    assert scale.grad is not None and scale.grad.abs() > 0


def test_disabled_full_precision_and_uncalibrated_quantizers():
    x = _data(0)
    q = UniformQuantizer(4, "grid")
    with pytest.raises(RuntimeError, match="before calibration"):
        q(x)
    calibrate_quantizer(q, x)
    q.enabled = False
    assert q(x) is x
    fp = UniformQuantizer(None)
    assert not fp.active and fp(x) is x
    fp.enabled = True  # enabling a full-precision quantizer changes nothing
    assert fp(x) is x


@pytest.mark.parametrize("field", ["w_bits", "a_bits", "attn_bits", "embed_bits", "head_bits"])
@pytest.mark.parametrize("bad", [1, 9, 0, -4, 4.5, True, "four"])
def test_invalid_bit_widths_name_the_field(field, bad):
    with pytest.raises(sardfq.ConfigError, match=field):
        QuantConfig(**{field: bad})


def test_full_precision_spellings_and_names():
    assert QuantConfig(w_bits=None, a_bits="fp").a_bits is None
    assert QuantConfig(w_bits=None, a_bits="fp").name == "wfpafp"
    config = QuantConfig.from_name("w6a8")
    assert (config.w_bits, config.a_bits, config.attn_bits, config.name) == (6, 8, 8, "w6a8")
    assert QuantConfig(4, 4, attn_bits=8).attn_bits == 8
    with pytest.raises(sardfq.ConfigError, match="w<bits>a<bits>"):
        QuantConfig.from_name("int4")
    with pytest.raises(sardfq.ConfigError, match="w_bits"):
        QuantConfig.from_name("w9a4")


def test_config_json_round_trip_and_validation():
    config = QuantConfig(w_bits=3, a_bits=5, attn_bits=4, head_bits=None, w_search="quantile",
                         overrides={"blocks.0.**": {"w_bits": 8}, "head": {"a_bits": None}})
    again = QuantConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(sardfq.ConfigError, match="a_search.*Did you mean: quantile"):
        QuantConfig(a_search="quantil")
    with pytest.raises(sardfq.ConfigError, match="attn_quantizer"):
        QuantConfig(attn_quantizer="log10")
    with pytest.raises(sardfq.ConfigError, match=r"overrides\['blocks.0'\]\['w_bits'\]"):
        QuantConfig(overrides={"blocks.0": {"w_bits": 12}})
    with pytest.raises(sardfq.ConfigError, match="keys among"):
        QuantConfig(overrides={"blocks.0": {"bits": 4}})
    with pytest.raises(sardfq.ConfigError, match="no field"):
        QuantConfig.from_dict({"w_bits": 4, "wbits": 4})


def test_registries_know_the_kinds_and_suggest_close_names():
    assert {"uniform", "log2"} <= set(QUANTIZERS.names())
    assert {"minmax", "quantile", "grid"} <= set(SEARCHES.names())
    assert isinstance(make_quantizer("log2", 4, "quantile"), Log2Quantizer)
    with pytest.raises(sardfq.UnknownNameError, match="log2"):
        QUANTIZERS.get("log")
