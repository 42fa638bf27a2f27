"""ONNX export: the file computes what the fake-quantized model computes, onnxruntime runs its
quantized layers as integer kernels, the metadata says what it is, bad input fails clearly."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import sardfq
from sardfq.cli import main
from sardfq.quant import export as ex

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEPTH = 2


@pytest.fixture(scope="module")
def tiny():
    """A random 2-block ViT at 32 px, and noise images to calibrate and test on."""
    torch.manual_seed(0)
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                    depth=DEPTH, num_classes=10)
    g = torch.Generator().manual_seed(1)
    return model, info, torch.randn(8, *info.input_size, generator=g), torch.randn(32, *info.input_size, generator=g)


def _quantized(tiny, bits, **kwargs):
    model, info, calib, _ = tiny
    return sardfq.quantize(model, info, sardfq.QuantConfig.from_name(bits, **kwargs), calib)


def _relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def w8a8(tiny, tmp_path_factory):
    q_model = _quantized(tiny, "w8a8")
    result = sardfq.export_onnx(q_model, tmp_path_factory.mktemp("w8a8") / "model.onnx")
    return q_model, result


@torch.no_grad()
def test_w8a8_file_computes_what_the_fake_quantized_model_does(tiny, w8a8):
    *_, images = tiny
    q_model, result = w8a8
    ort_model, info = sardfq.load_onnx(result.path, threads=1)
    expected, got = q_model(images), ort_model(images)
    assert got.shape == expected.shape == (len(images), 10)
    # rounding-boundary flips of a few codes move logits a little; a wrong scale or layout moves them a lot
    assert _relative_error(got, expected) < 0.05
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.9
    twin, _ = ex.export_module(q_model)  # the modules the file is made of, in torch
    assert _relative_error(got, twin(images)) < 0.05
    assert info.input_size == tiny[1].input_size and info.class_names == tiny[1].class_names


def test_w8a8_file_passes_the_checker_and_carries_its_metadata(tiny, w8a8):
    import onnx

    _, result = w8a8
    onnx.checker.check_model(onnx.load(result.path), full_check=True)
    meta = sardfq.onnx_metadata(result.path)
    info = tiny[1]
    assert meta["sardfq.format"] == ex.FORMAT and meta["sardfq.bits"] == "w8a8" and meta["sardfq.mode"] == "integer"
    assert meta["class_names"] == list(info.class_names) and meta["input_size"] == list(info.input_size)
    assert meta["mean"] == pytest.approx(list(info.mean)) and meta["std"] == pytest.approx(list(info.std))
    assert meta["sardfq.quant_config"]["w_bits"] == 8 and meta["sardfq.quant_config"]["a_bits"] == 8
    assert "LayerNorm" in meta["sardfq.float"] and "softmax" in meta["sardfq.float"]
    assert any("log2 quantizer" in part for part in meta["sardfq.float"])  # the paper's softmax quantizer
    assert any(s["name"] == "blocks.0.attn.attn@v" and s["kind"] == "float" for s in meta["sardfq.sites"])
    assert result.file_bytes == os.path.getsize(result.path)


def test_w8a8_linears_and_q_at_k_run_as_integer_matmuls(w8a8):
    _, result = w8a8
    int8_sites = [s for s in result.sites if s.kind == "int8"]
    # 4 Linears and q @ k^T per block, the patch embedding and the head
    assert len(int8_sites) == 5 * DEPTH + 2
    ops = sardfq.integer_op_counts(result.path)
    assert ops.get("MatMulIntegerToFloat") == len(int8_sites)
    # no quantized weight is left to dequantize at run time: the only DequantizeLinear left are v's
    # (attn @ v stays float beside the log2-quantized attention map)
    assert ex.optimized_op_counts(result.path).get("DequantizeLinear", 0) == DEPTH


def test_uniform_softmax_quantizer_makes_attn_at_v_an_integer_matmul(tiny, tmp_path):
    result = sardfq.export_onnx(_quantized(tiny, "w8a8", attn_quantizer="uniform"), tmp_path / "u.onnx")
    assert result.counts() == {"int8": 6 * DEPTH + 2}
    ops = sardfq.integer_op_counts(result.path)
    # attn @ v feeds proj's quantized input, so onnxruntime may fuse it with that quantization
    # into a QLinearMatMul (uint8 out) instead of a MatMulIntegerToFloat (float out)
    assert ops.get("MatMulIntegerToFloat", 0) + ops.get("QLinearMatMul", 0) == 6 * DEPTH + 2
    assert "DequantizeLinear" not in ex.optimized_op_counts(result.path)


@torch.no_grad()
def test_4bit_weight_only_runs_as_matmulnbits_with_our_grid_exactly(tiny, tmp_path):
    *_, images = tiny
    # full-precision patch embedding and head too: nothing rounds activations, so the file must
    # match the fake-quantized model to float precision
    q_model = _quantized(tiny, "w4afp", embed_bits=None, head_bits=None)
    result = sardfq.export_onnx(q_model, tmp_path / "w4.onnx")
    # float: the two attention matmuls of each block, the patch embedding and the head
    assert result.counts() == {"nbits": 4 * DEPTH, "float": 2 * DEPTH + 2}
    assert sardfq.integer_op_counts(result.path) == {"MatMulNBits": 4 * DEPTH}
    ort_model, _ = sardfq.load_onnx(result.path, threads=1)
    assert _relative_error(ort_model(images), q_model(images)) < 1e-5
    assert sardfq.onnx_metadata(result.path)["sardfq.bits"] == "w4afp"


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_packed_weight_only_codes_dequantize_to_the_fake_quantized_weight(bits):
    torch.manual_seed(bits)
    linear = torch.nn.Linear(100, 24)  # 100 inputs: a padded last block
    quantizer = sardfq.quant.UniformQuantizer(bits, "grid", channels=24, ndim=2, role="weight")
    sardfq.quant.calibrate_quantizer(quantizer, linear.weight.detach())
    module = ex.WeightOnlyLinear(linear.weight, linear.bias, quantizer)
    blocks = module.weight_packed.shape[1]
    codes = ex.unpack_codes(module.weight_packed, module.bits, module.block_size).reshape(24, -1)[:, :100]
    zero = ex.unpack_codes(module.weight_zero_points.view(24, -1), module.bits, blocks)
    scale = module.weight_scales.view(24, blocks)
    assert (zero == zero[:, :1]).all() and (scale == scale[:, :1]).all()  # one grid per output channel
    dequantized = (codes.float() - zero[:, :1].float()) * scale[:, :1]
    assert torch.equal(dequantized, quantizer.fake_quant(linear.weight.detach()))


@pytest.mark.parametrize("bits", [4, 8])
def test_uint8_weight_codes_dequantize_to_the_fake_quantized_weight(bits):
    torch.manual_seed(bits)
    linear = torch.nn.Linear(48, 16)
    quantizer = sardfq.quant.UniformQuantizer(bits, "grid", channels=16, ndim=2, role="weight")
    sardfq.quant.calibrate_quantizer(quantizer, linear.weight.detach())
    act = torch.nn.Identity()
    module = ex.IntegerLinear(linear.weight, linear.bias, quantizer, act)
    assert module.weight_codes.dtype == torch.uint8 and module.weight_zero_point.dtype == torch.uint8
    dequantized = (module.weight_codes.float() - module.weight_zero_point.float()) * module.weight_scale
    assert torch.equal(dequantized.T, quantizer.fake_quant(linear.weight.detach()))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pack_then_unpack_gives_the_codes_back(bits):
    codes = torch.randint(0, 2 ** bits, (3, 5, 37), generator=torch.Generator().manual_seed(0))
    packed = ex.pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape[-1] == -(-37 * bits // 8)
    assert torch.equal(ex.unpack_codes(packed, bits, 37), codes.to(torch.int32))


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_log2_emulation_equals_the_log2_quantizer(bits):
    g = torch.Generator().manual_seed(bits)
    maps = (torch.randn(4, 3, 17, 17, generator=g) * 4).softmax(-1)
    maps[0, 0, 0, :3] = 0.0  # exact zeros, as an underflowed softmax gives
    quantizer = sardfq.quant.Log2Quantizer(bits)
    sardfq.quant.calibrate_quantizer(quantizer, maps)
    expected, got = quantizer.fake_quant(maps), ex.Log2Emulated(quantizer)(maps)
    assert (got[0, 0, 0, :3] == 0).all()
    # exp(-k ln 2) is 2^-k to a few float32 ulps; a code rounded the other way would be off by 2x
    close = torch.isclose(got, expected, rtol=1e-4, atol=0)
    assert close.float().mean() > 0.9999  # log vs log2 can round an entry at a code boundary the other way


@torch.no_grad()
def test_activation_qdq_with_clip_keeps_a_low_bit_grid(tiny):
    quantizer = sardfq.quant.UniformQuantizer(4, "minmax")
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 3
    sardfq.quant.calibrate_quantizer(quantizer, x)
    assert torch.allclose(ex.ActivationQDQ(quantizer)(x * 2), quantizer.fake_quant(x * 2), atol=1e-6)


def test_the_metadata_names_attention_bits_that_differ_from_the_activations(tiny, tmp_path):
    q_model = _quantized(tiny, "w8a8", attn_bits=4)  # a 4-bit log2 map: emulated in float, so it exports
    result = sardfq.export_onnx(q_model, tmp_path / "attn4.onnx")
    assert result.bits == "w8a8-attn4" == sardfq.onnx_metadata(result.path)["sardfq.bits"]


# ------------------------------------------------------------------------------------ bad input
def test_activations_below_8_bits_are_refused_with_what_runs(tiny, tmp_path):
    q_model = _quantized(tiny, "w4a4")
    with pytest.raises(sardfq.ExportError, match="no integer kernel") as caught:
        sardfq.export_onnx(q_model, tmp_path / "w4a4.onnx")
    message = str(caught.value)
    assert "8-bit activations" in message and "weight-only" in message and "emulate" in message
    assert not (tmp_path / "w4a4.onnx").exists()


@torch.no_grad()
def test_emulate_mode_exports_w4a4_on_8bit_kernels_labelled_as_such(tiny, tmp_path):
    *_, images = tiny
    q_model = _quantized(tiny, "w4a4")
    result = sardfq.export_onnx(q_model, tmp_path / "w4a4.onnx", mode="emulate")
    meta = sardfq.onnx_metadata(result.path)
    assert meta["sardfq.mode"] == "emulate" and "EMULATED" in meta["sardfq.summary"]
    assert "not deployment" in meta["sardfq.summary"]
    ort_model, _ = sardfq.load_onnx(result.path, threads=1)
    assert _relative_error(ort_model(images), q_model(images)) < 0.1


def test_a_folder_that_is_not_quantized_is_refused_with_how_to_make_one(tiny, tmp_path):
    model, info, *_ = tiny
    folder = sardfq.save_model_folder(model, info, tmp_path / "fp")
    with pytest.raises(sardfq.CheckpointError, match="quantize it first"):
        sardfq.export_onnx(folder)
    with pytest.raises(sardfq.CheckpointError, match="not a saved quantized model"):
        sardfq.export_onnx(tmp_path / "nothing-here")


@pytest.mark.parametrize("name, message", [
    ("model.txt", "must end in .onnx"),
    ("a-folder.onnx", "is a folder"),
    ("a-file/model.onnx", "not a writable folder"),
])
def test_a_bad_output_path_is_refused(w8a8, tmp_path, name, message):
    (tmp_path / "a-folder.onnx").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(sardfq.ExportError, match=message):
        sardfq.export_onnx(w8a8[0], tmp_path / name)


def test_a_failed_write_leaves_no_file(w8a8, tmp_path, monkeypatch):
    import onnx

    def broken_save(proto, path):
        open(path, "wb").write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", broken_save)
    with pytest.raises(sardfq.ExportError, match="No space left"):
        sardfq.export_onnx(w8a8[0], tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_unknown_mode_and_a_model_without_info_are_refused(tiny, w8a8, tmp_path):
    with pytest.raises(sardfq.ExportError, match="mode must be one of integer, emulate"):
        sardfq.export_onnx(w8a8[0], tmp_path / "m.onnx", mode="int4")
    with pytest.raises(sardfq.ExportError, match="needs its ModelInfo"):
        sardfq.export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")


def test_load_onnx_refuses_files_sardfq_did_not_write(tmp_path):
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(sardfq.CheckpointError, match="not an ONNX file written by sardfq"):
        sardfq.load_onnx(tmp_path / "foreign.onnx")
    with pytest.raises(sardfq.CheckpointError, match="does not exist"):
        sardfq.load_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(sardfq.CheckpointError, match="could not read"):
        sardfq.load_onnx(tmp_path / "junk.onnx")


def test_float_export_runs_the_fp_model(tiny, tmp_path):
    model, info, _, images = tiny
    result = sardfq.export_onnx(model, tmp_path / "fp.onnx", info=info)
    assert result.mode == "float" and sardfq.integer_op_counts(result.path) == {}
    ort_model, _ = sardfq.load_onnx(result.path, threads=1)
    with torch.no_grad():
        assert _relative_error(ort_model(images), model(images)) < 1e-5


# ------------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def teacher_w8a8_folder(tmp_path_factory):
    """The embedded teacher at W8A8, calibrated on noise (fast; its accuracy is beside the point)."""
    model, info = sardfq.load_model("vit_tiny_cifar10")
    calib = torch.randn(8, *info.input_size, generator=torch.Generator().manual_seed(0))
    q_model = sardfq.quantize(model, info, sardfq.QuantConfig.from_name("w8a8"), calib)
    return sardfq.save_quantized(q_model, tmp_path_factory.mktemp("teacher") / "quantized")


def test_cli_export_bad_input_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    model, info, *_ = tiny
    folder = sardfq.save_model_folder(model, info, tmp_path / "fp")
    assert main(["export", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "quantize it first" in err and "Traceback" not in err
    q_folder = sardfq.save_quantized(_quantized(tiny, "w3a3"), tmp_path / "w3a3")
    assert main(["export", str(q_folder)]) == 2
    err = capsys.readouterr().err
    assert "no integer kernel" in err and "--mode emulate" in err
    assert main(["eval", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _sardfq(*args):
    return subprocess.run([sys.executable, "-m", "sardfq", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.mark.slow
def test_cli_export_then_eval_the_onnx_file(teacher_w8a8_folder, cifar_root, tmp_path):
    out = tmp_path / "teacher-w8a8.onnx"
    proc = _sardfq("export", str(teacher_w8a8_folder), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["path"] == str(out) and out.is_file() and record["bits"] == "w8a8"
    assert record["onnxruntime_integer_ops"]["MatMulIntegerToFloat"] == record["counts"]["int8"] == 32
    assert record["check"]["relative_difference"] < record["check"]["tolerance"]
    proc = _sardfq("eval", str(out), "--data", str(cifar_root), "--limit", "50", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n_images"] == 50 and 0.3 < result["top1"] <= result["top5"] <= 1.0
    from sardfq.version import cpu_info

    assert result["cpu"] == cpu_info()  # the CPU features the integer kernels ran with
    proc = _sardfq("eval", str(out), "--data", str(cifar_root), "--limit", "50", "--device", "cuda")
    assert proc.returncode == 2 and "runs in onnxruntime on the CPU" in proc.stderr


@pytest.mark.slow
def test_exported_teacher_agrees_with_its_fake_quantized_model_on_test_images(teacher_w8a8_folder, cifar_root):
    q_model, info = sardfq.load_quantized(teacher_w8a8_folder)
    result = sardfq.export_onnx(teacher_w8a8_folder)
    ort_model, _ = sardfq.load_onnx(result.path, threads=1)
    dataset = sardfq.eval_dataset(info, q_model, cifar_root, limit=200)
    exported = sardfq.evaluate(ort_model, dataset, reference=q_model, progress=False)
    fake = sardfq.evaluate(q_model, dataset, progress=False)
    assert exported.agreement >= 0.97
    assert abs(exported.top1 - fake.top1) <= 0.02
    difference = sardfq.compare_per_image({0: exported.per_image}, {0: fake.per_image})
    assert difference.n_images == 200 and difference.ci[0] <= difference.difference <= difference.ci[1]


@pytest.mark.slow
def test_import_sardfq_does_not_import_onnx():
    code = "import sys, sardfq; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_nbits_block_size_divides_rows_or_holds_them():
    assert ex.nbits_block_size(192) == 64 and ex.nbits_block_size(768) == 256
    assert ex.nbits_block_size(48) == 16 and ex.nbits_block_size(100) == 128
    assert np.all([ex.nbits_block_size(k) in ex.NBITS_BLOCKS for k in (7, 17, 300, 1000)])


# ----------------------------------------------------------- the committed benchmark record (README)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "results", "export", "bench_export.json")


@pytest.fixture(scope="module")
def bench_record():
    with open(BENCH) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench_export.py (a script, not a package), whose bench_report prints the record."""
    spec = importlib.util.spec_from_file_location("bench_export", os.path.join(ROOT, "benchmarks", "bench_export.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_record_says_how_it_was_made(bench_record):
    r = bench_record
    assert r["command"].startswith("python benchmarks/bench_export.py ")
    assert "--json results/export/bench_export.json" in r["command"]
    assert r["config"]["seed"] == 0 and r["config"]["n_eval"] == 10000
    assert r["machine"]["cpus"] and r["machine"]["platform"] and r["versions"]["onnxruntime"]
    for row in r["accuracy"]:  # how each quantized teacher was made, and on all test images
        assert row["n_images"] == 10000 and row["calibration_images"] and row["calibration_seed"] is not None
        assert row["ci"][0] <= row["difference"] <= row["ci"][1]


def test_bench_rows_and_speedups_read_the_record(bench_record, bench):
    row = ex.bench_row(bench_record, bench.DEIT, "onnxruntime", "w8a8")
    assert row["bits"] == "w8a8" and row["threads"] == min(bench_record["config"]["threads"])
    teacher = ex.bench_row(bench_record, "vit_tiny_cifar10", "onnxruntime", "w8a8")  # ", reconstructed" ignored
    assert teacher["bits"].startswith("w8a8") and "uniform" not in teacher["bits"]
    for key, field in (("throughput", "throughput_speedup"), ("latency", "latency_speedup")):
        s = ex.bench_speedup(bench_record, bench.DEIT, row, key)
        assert s["ratio"] == row[field] and s["low"] <= s["high"] and s["repeats"] >= 1
    with pytest.raises(KeyError, match="no row"):
        ex.bench_row(bench_record, bench.DEIT, "onnxruntime", "w3a3")


def test_the_readme_deploy_block_is_what_the_benchmark_prints_from_its_record(bench_record, bench):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    begin, end = "<!-- bench_export: begin -->\n", "<!-- bench_export: end -->"
    assert begin in readme and end in readme, "the README's deployment block lost its markers"
    block = readme.split(begin)[1].split(end)[0].strip()
    assert block == bench.bench_report(bench_record, profile=False), (
        "README's deployment block is stale: paste bench_report(record, profile=False) of "
        "benchmarks/bench_export.py, on results/export/bench_export.json, between its markers")


def _saturating_vit():
    """A one-block ViT whose patch embedding, quantized at W8A8, multiplies 8-bit input codes of 255
    with weight codes at both ends of their range, equal in adjacent pairs: as uint8 x int8, each
    pair sums to 2 * 255 * 127 or 2 * 255 * (-128), past the 32767 that a 16-bit pairwise sum holds."""
    torch.manual_seed(0)
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                    depth=1, num_classes=10)
    weight = model.patch_embed.proj.weight  # out, 3, 8, 8: K = 192 inputs a channel
    k = torch.arange(weight[0].numel())
    pattern = torch.where((k // 2) % 2 == 0, 1.0, -1.0)  # + + - - + + ...: pairs of one sign
    with torch.no_grad():
        weight.copy_(0.05 * pattern.view_as(weight[0]) * torch.linspace(0.5, 1.5, len(weight)).view(-1, 1, 1, 1))
    images = torch.full((8, *info.input_size), 2.0) + 0.01 * torch.randn(8, *info.input_size)
    q_model = sardfq.quantize(model, info, sardfq.QuantConfig.from_name("w8a8"), images)
    return q_model, info, images


@torch.no_grad()
def test_a_matmul_whose_pairwise_sums_overflow_16_bits_is_exported_exactly(tmp_path):
    q_model, info, images = _saturating_vit()
    quant = q_model.patch_embed.proj
    input_codes = torch.round(images / quant.a_quant.scale + quant.a_quant.zero_point).clamp(0, 255)
    patches = input_codes.reshape(8, 3, 4, 8, 4, 8).permute(0, 2, 4, 1, 3, 5).reshape(-1, 1, 192)  # (c, kh, kw)
    codes, _, _ = ex.weight_codes(quant.weight.reshape(len(quant.weight), -1), quant.w_quant)
    signed = (codes - 128)[None]  # what a uint8 x int8 kernel would multiply
    pairs = patches[..., 0::2] * signed[..., 0::2] + patches[..., 1::2] * signed[..., 1::2]
    assert pairs.abs().max() > 32767 and (pairs.abs() > 32767).float().mean() > 0.2  # saturating, on purpose
    result = sardfq.export_onnx(q_model, tmp_path / "model.onnx", verify=False)
    # the integer sums are exact; what is left is a rounding flip of a later code now and then (the
    # PyTorch model against its own export twin differs as much). A saturating int8 file: about 30%
    check = ex.verify_export(result.path, q_model, info, images)
    assert check.passed and check.relative_difference < 0.02 and check.agreement == 1


def _wrong_grid(monkeypatch):
    """Every integer linear written with its weight codes reversed along the input axis: a file
    that cannot compute what the model does, on any CPU."""
    init = ex.IntegerLinear.__init__

    def shuffled(self, *args):
        init(self, *args)
        self.weight_codes = self.weight_codes.flip(0)

    monkeypatch.setattr(ex.IntegerLinear, "__init__", shuffled)


def test_the_export_checks_itself_and_writes_nothing_it_cannot_reproduce(tiny, w8a8, tmp_path, monkeypatch):
    q_model, result = w8a8
    check = result.check  # a faithful file passes, with what was compared and on which CPU
    assert check.passed and check.images == ex.CHECK_IMAGES and check.relative_difference < ex.CHECK_TOLERANCE
    assert check.cpu["cpu"] and check.cpu["cpus"] >= 1 and result.to_dict()["check"]["agreement"] == check.agreement
    _wrong_grid(monkeypatch)
    out = tmp_path / "wrong.onnx"
    with pytest.raises(sardfq.ExportError, match=r"does not compute what .* agreement .* CPU .*--no-check") as err:
        sardfq.export_onnx(q_model, out)
    assert "\n" not in str(err.value) and not out.exists() and not list(tmp_path.iterdir())
    unchecked = sardfq.export_onnx(q_model, out, verify=False)
    assert out.is_file() and unchecked.check is None
    assert not ex.verify_export(out, q_model, tiny[1]).passed


def test_cli_export_fails_loudly_on_a_file_it_cannot_reproduce(tiny, tmp_path, capsys, monkeypatch):
    folder = sardfq.save_quantized(_quantized(tiny, "w8a8"), tmp_path / "w8a8")
    assert main(["export", str(folder), "--out", str(tmp_path / "ok.onnx")]) == 0
    assert "checked against the PyTorch model on 16 check images" in capsys.readouterr().out
    _wrong_grid(monkeypatch)
    assert main(["export", str(folder), "--out", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not compute what" in err and "CPU" in err
    assert not (tmp_path / "bad.onnx").exists()
    assert main(["export", str(folder), "--out", str(tmp_path / "bad.onnx"), "--no-check"]) == 0
    assert "not checked (--no-check)" in capsys.readouterr().out and (tmp_path / "bad.onnx").is_file()
