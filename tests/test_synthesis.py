import copy
import itertools
import json
import math

import pytest
import torch

import sardfq
from sardfq import SynthesisConfig, synthesize
from sardfq.cli import main


# several test processes share the 2-core machines; one thread avoids OpenMP oversubscription,
# which slows these optimization loops by up to 10x
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             depth=2)


@pytest.fixture(scope="module")
def tiny_swin():
    torch.manual_seed(0)
    return sardfq.load_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32,
                             window_size=4, depths=(2, 2), num_heads=(2, 4), embed_dim=32)


# ------------------------------------------------------------------------------------ config
def test_config_defaults_and_json_round_trip():
    c = SynthesisConfig()
    assert (c.method, c.n, c.iterations, c.k_apa, c.k_msr, c.tv_weight) == ("sardfq", 32, 1000, 5, 4, 0.05)
    assert c.betas == (0.5, 0.9) and c.jitter_px == (15, 30) and c.rounds == 2
    custom = SynthesisConfig(method="sardfq", msr=False, apa_weight=12.5, prior="laplace", seed=3)
    back = SynthesisConfig.from_dict(json.loads(json.dumps(custom.to_dict())))
    assert back == custom
    assert custom.label == "sardfq-no-msr" and SynthesisConfig(method="psaq").switches is None


def test_invalid_method_names_the_field_and_close_matches():
    with pytest.raises(sardfq.UnknownNameError, match=r"SynthesisConfig.method.*sardfq"):
        SynthesisConfig(method="sardqf")
    with pytest.raises(sardfq.UnknownNameError, match=r"SynthesisConfig.prior.*laplace"):
        SynthesisConfig(prior="laplac")


@pytest.mark.parametrize("field,value", [
    ("apa", "yes"), ("msr", 1), ("n", 0), ("iterations", -5), ("k_msr", 5), ("k_apa", 0),
    ("apa_weight", -1.0), ("apa_weight", math.nan), ("lr", 0.0), ("soft_label_low", 11.0),
    ("betas", (0.5, 1.5)), ("flip_p", 2.0), ("seed", -1), ("jitter_px", (1.5,)),
    ("autocast", "fp16"), ("autocast", True),
])
def test_bad_values_raise_config_error_naming_the_field(field, value):
    with pytest.raises(sardfq.ConfigError, match=f"SynthesisConfig.{field}"):
        SynthesisConfig(**{field: value})


def test_unknown_field_in_dict_is_an_error():
    with pytest.raises(sardfq.ConfigError, match="no_such"):
        SynthesisConfig.from_dict({"no_such": 1})


# ------------------------------------------------------------------------------------ engine
@pytest.mark.parametrize("apa,msr,sl", list(itertools.product([True, False], repeat=3)))
def test_every_switch_combination_runs(tiny, apa, msr, sl):
    model, info = tiny
    config = SynthesisConfig(n=3, iterations=2, apa=apa, msr=msr, sl=sl, seed=1)
    calib = synthesize(model, info, config, progress=False)
    assert calib.images.shape == (3, 3, 32, 32) and calib.labels.shape == (3,)
    terms = set(calib.metadata["final_losses"])
    assert ("apa" in terms) == apa and ("sl" in terms) == sl and ("ce" in terms) == (not sl)
    assert (calib.soft_targets is not None) == sl
    assert calib.metadata["switches"] == {"apa": apa, "msr": msr, "sl": sl}
    assert (calib.metadata["mean_crops_per_image"] > 0) == msr
    lo, hi = sardfq.pixel_range(info)
    assert (calib.images >= lo - 1e-6).all() and (calib.images <= hi + 1e-6).all()


def test_same_seed_same_images(tiny):
    model, info = tiny
    a = synthesize(model, info, SynthesisConfig(n=2, iterations=3, seed=5), progress=False)
    b = synthesize(model, info, SynthesisConfig(n=2, iterations=3, seed=5), progress=False)
    c = synthesize(model, info, SynthesisConfig(n=2, iterations=3, seed=6), progress=False)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is left as it was


@pytest.mark.parametrize("method", ["psaq", "sardfq"])
def test_bf16_autocast_stays_close_to_float32(tiny, method):
    model, info = tiny
    runs = {a: synthesize(model, info, SynthesisConfig(method=method, n=4, iterations=3, seed=2, autocast=a),
                          progress=False) for a in (None, "bf16")}
    fp32, bf16 = runs[None], runs["bf16"]
    assert bf16.metadata["config"]["autocast"] == "bf16" and bf16.images.dtype == torch.float32
    assert all(math.isfinite(v) for v in bf16.metadata["final_losses"].values())
    assert torch.equal(fp32.labels, bf16.labels)
    assert not torch.equal(fp32.images, bf16.images)  # autocast did change the arithmetic
    # 3 Adam steps of lr 0.2 move a pixel by up to ~0.6; bf16 may flip the sign of a tiny gradient
    # component, so compare the typical pixel, not the worst one
    assert (bf16.images - fp32.images).abs().mean() < 0.05


@pytest.mark.parametrize("overrides", [dict(method="sardfq"), dict(method="psaq"),
                                       dict(method="sardfq", apa=False, msr=False, sl=False),
                                       dict(method="sardfq", deep_only=False, n=3, batch_size=2)])
def test_class_token_tail_gives_the_plain_path_images_bit_for_bit(tiny, overrides):
    # 32 images: every pass has 32 rows or more and takes the shortcut; 2 + 1 images: none does
    model, info = tiny
    config = SynthesisConfig(**{"n": 32, "iterations": 3, "seed": 1, **overrides})
    fast, plain = (synthesize(model, info, config, progress=False, shortcuts=on) for on in (True, False))
    assert fast.metadata["shortcuts"] == ["class_token_tail"] and plain.metadata["shortcuts"] == []
    assert torch.equal(fast.images, plain.images)
    assert [h["total"] for h in fast.metadata["history"]] == [h["total"] for h in plain.metadata["history"]]


def test_class_token_tail_on_the_teacher_at_the_sizes_of_a_run(teacher):
    # 32 images and their MSR crops: the row counts of the products a real run multiplies
    model, info = teacher
    config = SynthesisConfig(n=32, iterations=2, seed=3)
    fast, plain = (synthesize(model, info, config, progress=False, shortcuts=on) for on in (True, False))
    assert fast.metadata["shortcuts"] == ["class_token_tail"]
    assert torch.equal(fast.images, plain.images)


def test_class_token_tail_applies_to_plain_class_token_vits_only(tiny, tiny_swin):
    from sardfq.synthesis.shortcuts import class_token_tail, supports_class_token_tail

    model, info = tiny
    assert supports_class_token_tail(model) and not supports_class_token_tail(tiny_swin[0])
    torch.manual_seed(0)
    distilled, _ = sardfq.load_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=32,
                                     patch_size=8, depth=1)
    assert not supports_class_token_tail(distilled)  # its head reads two tokens
    pooled = copy.deepcopy(model)
    pooled.global_pool = "avg"
    assert not supports_class_token_tail(pooled)
    from sardfq.synthesis.shortcuts import MIN_ROWS

    x = torch.randn(MIN_ROWS, *info.input_size)
    model.eval()
    tokens = []
    hook = model.blocks[-1].mlp.fc1.register_forward_hook(lambda _m, args, _out: tokens.append(args[0].shape[1]))
    with torch.no_grad(), class_token_tail(model) as on:
        inside = model(x)
        model(x[:MIN_ROWS - 1])
    hook.remove()
    assert on and tokens == [1, model.patch_embed.num_patches + 1]  # a short pass runs whole
    assert torch.equal(inside, model(x).detach())  # and the hooks are gone on exit
    assert not model.blocks[-1].attn.proj._forward_pre_hooks and not model.blocks[-1].norm2._forward_pre_hooks
    with class_token_tail(tiny_swin[0]) as on:
        assert not on
    assert synthesize(*tiny_swin, SynthesisConfig(n=2, iterations=2), progress=False).metadata["shortcuts"] == []


def test_bf16_mlp_policy_rounds_the_mlp_and_projection_products_only(tiny):
    from sardfq.precision import Bf16Linears, autocast

    model, info = tiny
    model.eval()
    x = torch.randn(2, *info.input_size)
    outputs = {}
    hooks = [m.register_forward_hook(lambda _m, _a, out, n=n: outputs.setdefault(n, []).append(out))
             for n, m in model.named_modules() if n.endswith(("qkv", "fc1"))]
    with torch.no_grad():
        model(x)
        with autocast("bf16-mlp", "cpu", model) as mode:
            model(x)
    for h in hooks:
        h.remove()
    assert isinstance(mode, Bf16Linears) and len(mode.layers) == 3 * len(model.blocks)
    assert id(model.head.weight) not in mode.layers and id(model.blocks[0].attn.qkv.weight) not in mode.layers
    qkv, fc1 = outputs["blocks.0.attn.qkv"], outputs["blocks.0.mlp.fc1"]
    assert torch.equal(*qkv)  # upstream of every rounded product: float32 as before
    assert fc1[1].dtype == torch.float32 and not torch.equal(*fc1)
    assert torch.allclose(*fc1, rtol=0.02, atol=0.02)
    assert not torch.equal(*outputs["blocks.1.attn.qkv"])  # downstream of a rounded MLP


def test_bf16_mlp_synthesis_stays_close_and_is_its_own_run(tiny):
    model, info = tiny
    runs = {a: synthesize(model, info, SynthesisConfig(n=4, iterations=3, seed=2, autocast=a), progress=False)
            for a in (None, "bf16-mlp")}
    assert not torch.equal(runs[None].images, runs["bf16-mlp"].images)
    assert (runs["bf16-mlp"].images - runs[None].images).abs().mean() < 0.05
    assert all(p.requires_grad for p in model.parameters())
    base = sardfq.ExperimentConfig()
    mixed = base.replace(synthesis={"autocast": "bf16-mlp"})
    assert mixed.run_id() != base.run_id() and mixed.synthesis_id() != base.synthesis_id()
    with pytest.raises(sardfq.ConfigError, match="ReconConfig.autocast"):
        sardfq.ReconConfig(autocast="bf16-mlp")  # reconstruction's linears are quantized: no policy there


def test_chunks_and_metadata(tiny):
    model, info = tiny
    calib = synthesize(model, info, SynthesisConfig(method="psaq", n=5, batch_size=2, iterations=2),
                       progress=False)
    meta = calib.metadata
    assert len(calib) == 5 and calib.soft_targets is None
    assert {"method", "switches", "seed", "model", "iterations", "final_losses", "seconds",
            "config"} <= set(meta)
    assert set(meta["final_losses"]) == {"total", "entropy", "ce", "tv"}
    assert SynthesisConfig.from_dict(meta["config"]).method == "psaq"
    assert len({h["chunk"] for h in meta["history"]}) == 3
    sard = synthesize(model, info, SynthesisConfig(n=5, batch_size=2, iterations=2), progress=False)
    crop_labels = torch.tensor(sard.metadata["crop_labels"])
    assert crop_labels.shape == (5, 4)
    # with MSR and SL, each image's soft target also covers its regions' classes
    for target, crops in zip(sard.soft_targets, crop_labels):
        assert set(crops.tolist()) <= set(torch.nonzero(target > target.min() * 10).flatten().tolist())


def test_noise_is_gaussian_and_not_optimized(tiny):
    model, info = tiny
    calib = synthesize(model, info, SynthesisConfig(method="noise", n=64), progress=False)
    assert calib.metadata["iterations"] == 0 and calib.metadata["final_losses"] == {}
    assert abs(calib.images.mean().item()) < 0.05 and abs(calib.images.std().item() - 1) < 0.05


def test_swin_runs_with_apa_and_psaq(tiny_swin):
    model, info = tiny_swin
    for method in ("sardfq", "psaq"):
        calib = synthesize(model, info, SynthesisConfig(method=method, n=2, iterations=2), progress=False)
        assert calib.images.shape == (2, 3, 32, 32)
        assert calib.metadata["lr"] == 0.25


def test_nan_loss_names_iteration_and_term(tiny):
    model, info = tiny
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head.bias.fill_(math.nan)
    with pytest.raises(FloatingPointError, match=r"'ce'.*iteration 1"):
        synthesize(broken, info, SynthesisConfig(n=2, iterations=2, apa=False, sl=False), progress=False)


def write_fake_cifar(root, per_class=2):
    from PIL import Image

    from sardfq.data import CIFAR10_CLASSES

    for c, name in enumerate(CIFAR10_CLASSES):
        folder = root / "cifar10" / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (32, 32), (20 * c, 10 * i, 100)).save(folder / f"{i}.jpg")


def test_real_method_and_real_prior_use_training_images(teacher, tmp_path):
    model, info = teacher
    write_fake_cifar(tmp_path)
    calib = synthesize(model, info, SynthesisConfig(method="real", n=6, seed=2), data_root=tmp_path,
                       progress=False)
    again = synthesize(model, info, SynthesisConfig(method="real", n=6, seed=2), data_root=tmp_path,
                       progress=False)
    assert torch.equal(calib.images, again.images)
    assert len(set(calib.labels.tolist())) > 1
    red = sardfq.denormalize(calib.images, info)[:, 0, 0, 0] * 255  # red = 20 * class
    assert torch.allclose(red, 20.0 * calib.labels, atol=4)
    cfg = SynthesisConfig(n=2, iterations=2, prior="real", real_prior_images=8, msr=False)
    assert len(synthesize(model, info, cfg, data_root=tmp_path, progress=False)) == 2


def test_real_method_for_imagenet_model_needs_a_train_folder(tiny, tmp_path):
    model, info = tiny
    with pytest.raises(sardfq.DataNotFoundError, match="ImageNet training images"):
        synthesize(model, info, SynthesisConfig(method="real", n=2), data_root=tmp_path, progress=False)


def _apa_to(model, info, images, priors, blocks):
    with sardfq.record_attention(model, blocks, detach=True) as rec, torch.no_grad():
        model(images)
        attention = rec.patch_attention()
    return sardfq.apa_loss(attention, priors, info.num_blocks).item()


def test_apa_falls_and_ends_closer_to_the_priors_than_psaq(teacher):
    model, info = teacher
    seed, n, iters = 4, 4, 24
    # a strong a1 makes the effect plain within a few steps; MSR off keeps the run short
    config = SynthesisConfig(n=n, iterations=iters, seed=seed, msr=False, apa_weight=1000.0)
    sard = synthesize(model, info, config, progress=False)
    psaq = synthesize(model, info, SynthesisConfig(method="psaq", n=n, iterations=iters, seed=seed),
                      progress=False)
    apa = [h["apa"] for h in sard.metadata["history"]]
    assert sum(apa[-5:]) < 0.6 * sum(apa[:5]), apa
    # the same seed redraws the run's priors
    method = sardfq.METHODS.get("sardfq")(model, info, config, generator=torch.Generator().manual_seed(seed),
                                          device=torch.device("cpu"))
    method.start(n)
    blocks = sardfq.apa_blocks(info.num_blocks)
    d_sard = _apa_to(model, info, sard.images, method.priors, blocks)
    d_psaq = _apa_to(model, info, psaq.images, method.priors, blocks)
    assert d_sard < 0.7 * d_psaq, (d_sard, d_psaq)


# --------------------------------------------------------------------------------- outputs
def test_image_grid_png(tiny, tmp_path):
    from PIL import Image

    model, info = tiny
    calib = synthesize(model, info, SynthesisConfig(method="noise", n=8), progress=False)
    path = sardfq.save_image_grid(calib, info, tmp_path / "grid.png", nrow=4)
    with Image.open(path) as img:
        assert img.size == (4 * 128 + 5 * 2, 2 * 128 + 3 * 2)


def test_cli_synthesize_end_to_end(tmp_path, capsys):
    out = tmp_path / "calib" / "set.safetensors"
    code = main(["synthesize", "vit_tiny_cifar10", "--method", "sardfq", "--no-msr", "--n", "2",
                 "--iters", "2", "--seed", "3", "--apa-weight", "50", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["out"] == str(out) and record["png"] == str(out.with_suffix(".png"))
    assert record["switches"] == {"apa": True, "msr": False, "sl": True}
    assert set(record["final_losses"]) == {"total", "apa", "sl", "tv"}
    assert out.with_suffix(".png").is_file()
    calib = sardfq.CalibrationSet.load(out)
    assert calib.images.shape == (2, 3, 32, 32)
    assert calib.metadata["apa_weight"] == 50 and calib.metadata["seed"] == 3


def test_cli_rejects_unknown_method(capsys):
    assert main(["synthesize", "vit_tiny_cifar10", "--method", "psqa", "--n", "1"]) == 2
    assert "psaq" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_synthesis_on_cuda(tiny):
    model, info = tiny
    calib = synthesize(model, info, SynthesisConfig(n=2, iterations=2), device="cuda", progress=False)
    assert calib.images.device.type == "cpu" and torch.isfinite(calib.images).all()
    assert calib.metadata["device"].startswith("cuda")
    bf16 = synthesize(model, info, SynthesisConfig(n=2, iterations=2, autocast="bf16"), device="cuda",
                      progress=False)
    assert torch.isfinite(bf16.images).all()
    assert all(math.isfinite(v) for v in bf16.metadata["final_losses"].values())
