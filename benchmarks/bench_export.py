"""Benchmark deployment: exported ONNX models against the fake-quantized PyTorch models they come
from (paired accuracy on CIFAR-10 test images), and their speed and size in onnxruntime against
PyTorch, measured in one run.

    python benchmarks/bench_export.py [--quantized DIR ...] [--n-eval 1000] [--threads 1 2]
                                      [--no-deit] [--repeats 5] [--json results/export/FILE.json]

Accuracy: each quantized teacher (folders written by `sardfq run vit_tiny_cifar10 ... --out DIR`,
DIR/quantized; by default the embedded teacher calibrated here on 32 real training images, without
reconstruction, at w8a8, w8a8 with a uniform softmax quantizer and w4afp) is exported with
`sardfq.export_onnx` and evaluated in onnxruntime and as the fake-quantized PyTorch model on the
same test images (an even spread of --n-eval; 10000: all): onnxruntime - PyTorch top-1 with its
paired 95% bootstrap interval (`sardfq.compare_per_image`), and how often the two predict the
same class.

Speed and size: batch-1 latency (median ms) and batch-32 throughput (median images/s) of PyTorch
eager FP32, the PyTorch fake-quantized W8A8 model, onnxruntime FP32 and the exported models in
onnxruntime, at each --threads, measured round-robin (every model once per repeat) so that the
load of a shared machine spreads over all of them; on the embedded teacher (32 px) and on a
randomly initialised deit_tiny_patch16_224 (224 px, quantized on 4 noise images: its accuracy
means nothing, only its speed is measured). Where the int8 model's time goes: onnxruntime's
profile of the 224-px W8A8 model, time by op type.

Prints Markdown tables; writes everything to --json. Not a test.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import sardfq
from sardfq.io import write_json_atomic
from sardfq.version import cpu_info
from sardfq.quant.export import bench_header, optimized_op_counts, session_options

TEACHER = "vit_tiny_cifar10"
DEIT = "deit_tiny_patch16_224"  # the 224-px model, random weights
# the bit settings benchmarked when no --quantized folders are given: (label, QuantConfig fields)
DEFAULT_SETTINGS = (("w8a8", {"w_bits": 8, "a_bits": 8}),
                    ("w8a8, uniform softmax", {"w_bits": 8, "a_bits": 8, "attn_quantizer": "uniform"}),
                    ("w4afp", {"w_bits": 4, "a_bits": None}))


def _label(q_model) -> str:
    meta = q_model.sardfq_quant
    config = meta["config"]
    label = config.label + (", uniform softmax" if config.attn_quantizer == "uniform" else "")
    return label + (", reconstructed" if meta.get("reconstruction") else "")


def _teachers(folders: list[str], seed: int) -> list[dict]:
    """The quantized teachers: loaded from folders, or calibrated here on real training images."""
    if folders:
        out = []
        for folder in folders:
            q_model, info = sardfq.load_quantized(folder)
            out.append({"label": _label(q_model), "q_model": q_model, "info": info, "source": str(folder)})
        return out
    fp_model, info = sardfq.load_model(TEACHER)
    calib = sardfq.synthesize(fp_model, info, sardfq.SynthesisConfig(method="real", n=32, seed=seed),
                              progress=False)
    return [{"label": label, "q_model": sardfq.quantize(fp_model, info, sardfq.QuantConfig(**fields), calib, seed=seed),
             "info": info, "source": f"calibrated here on 32 real training images (seed {seed}), no reconstruction"}
            for label, fields in DEFAULT_SETTINGS]


def accuracy(teachers: list[dict], work: Path, n_eval: int, threads: int) -> list[dict]:
    rows = []
    for t in teachers:
        q_model, info = t["q_model"], t["info"]
        export = sardfq.export_onnx(q_model, work / f"{TEACHER}-{t['label'].replace(', ', '-').replace(' ', '_')}.onnx")
        t["onnx"] = export.path
        ort_model, _ = sardfq.load_onnx(export.path, threads=threads)
        dataset = sardfq.eval_dataset(info, q_model, limit=None if n_eval >= 10000 else n_eval)
        torch_result = sardfq.evaluate(q_model, dataset, reference=ort_model, name="pytorch", progress=False)
        ort_result = sardfq.evaluate(ort_model, dataset, name="onnxruntime", progress=False)
        diff = sardfq.compare_per_image({0: ort_result.per_image}, {0: torch_result.per_image},
                                        names=("onnxruntime", "pytorch fake-quant"))
        t["per_image"] = torch_result.per_image
        meta = q_model.sardfq_quant
        recon = meta.get("reconstruction") or {}
        rows.append({"per_image": {"pytorch": torch_result.per_image.to_dict(), "onnx": ort_result.per_image.to_dict()},
                     "model": TEACHER, "bits": t["label"], "source": t["source"], "n_images": diff.n_images,
                     "calibration_images": (meta.get("calibration") or {}).get("n_images"),
                     "calibration_seed": (meta.get("calibration") or {}).get("seed"),
                     "recon_iters": (recon.get("config") or {}).get("iters", 0),
                     "pytorch_top1": 100 * torch_result.top1, "onnx_top1": 100 * ort_result.top1,
                     "difference": diff.difference, "ci": list(diff.ci), "agreement": 100 * torch_result.agreement,
                     "onnx_integer_ops": sardfq.integer_op_counts(export.path), "sites": export.counts(),
                     "summary": export.metadata["sardfq.summary"]})
    return rows


def softmax_quantizer_cost(teachers: list[dict]) -> dict | None:
    """PyTorch fake-quant top-1 of w8a8 with a uniform softmax quantizer minus the paper's log2 one."""
    by_label = {t["label"].replace(", reconstructed", ""): t for t in teachers if "per_image" in t}
    if "w8a8" not in by_label or "w8a8, uniform softmax" not in by_label:
        return None
    a, b = by_label["w8a8, uniform softmax"], by_label["w8a8"]
    diff = sardfq.compare_per_image({0: a["per_image"]}, {0: b["per_image"]}, names=(a["label"], b["label"]))
    return {"a": a["label"], "b": b["label"], "difference": diff.difference, "ci": list(diff.ci),
            "n_images": diff.n_images, "verdict": diff.verdict}


def _file_mb(path) -> float:
    return os.path.getsize(path) / 1e6


def _torch_mb(model: torch.nn.Module) -> float:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, f"{tmp}/m.safetensors")
        return _file_mb(f"{tmp}/m.safetensors")


def speed_models(arch: str, teachers: list[dict], work: Path, seed: int) -> list[dict]:
    """The models of one architecture to time (runtime, bits, `make(threads)` giving a callable, file MB),
    and its ModelInfo."""
    if arch == TEACHER:
        fp_model, info = sardfq.load_model(TEACHER)
        quantized = [(t["label"], t["q_model"], t.get("onnx")) for t in teachers]
    else:
        fp_model, info = sardfq.load_model(DEIT, pretrained=False)
        noise = torch.randn(4, *info.input_size, generator=torch.Generator().manual_seed(seed))
        quantized = [(label, sardfq.quantize(fp_model, info, sardfq.QuantConfig(**fields), noise, seed=seed), None)
                     for label, fields in DEFAULT_SETTINGS]
    fp_onnx = sardfq.export_onnx(fp_model, work / f"{arch}-fp32.onnx", info=info).path
    models = [{"runtime": "pytorch eager", "bits": "fp32", "make": lambda threads: fp_model, "mb": _torch_mb(fp_model)}]
    w8a8 = next(q for label, q, _ in quantized if label.startswith("w8a8") and "uniform" not in label)
    models.append({"runtime": "pytorch fake-quant", "bits": _label(w8a8) if arch == TEACHER else "w8a8",
                   "make": lambda threads: w8a8, "mb": _torch_mb(w8a8)})
    models.append({"runtime": "onnxruntime", "bits": "fp32", "path": fp_onnx, "mb": _file_mb(fp_onnx)})
    for label, q_model, path in quantized:
        path = path or sardfq.export_onnx(q_model, work / f"{arch}-{label.replace(', ', '-').replace(' ', '_')}.onnx").path
        models.append({"runtime": "onnxruntime", "bits": label, "path": path, "mb": _file_mb(path)})
    for m in models:
        if "path" in m:
            m["make"] = lambda threads, path=m["path"]: sardfq.load_onnx(path, threads=threads)[0]
    return models, info


@torch.no_grad()
def measure(models: list[dict], info, threads: int, batch: int, repeats: int, latency_repeats: int, seed: int) -> list[dict]:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    one, many = torch.randn(1, *info.input_size, generator=g), torch.randn(batch, *info.input_size, generator=g)
    runners = [m["make"](threads) for m in models]
    for run in runners:  # warm-up: first calls allocate and pick kernels
        run(many)
        run(one)
    latency = [[] for _ in models]
    throughput = [[] for _ in models]
    for _ in range(latency_repeats):
        for i, run in enumerate(runners):
            start = time.perf_counter()
            run(one)
            latency[i].append(1e3 * (time.perf_counter() - start))
    for _ in range(repeats):
        for i, run in enumerate(runners):
            start = time.perf_counter()
            run(many)
            throughput[i].append(batch / (time.perf_counter() - start))
    rows = []
    base_latency, base_rate = statistics.median(latency[0]), statistics.median(throughput[0])
    for m, lat, rate in zip(models, latency, throughput):
        rows.append({"runtime": m["runtime"], "bits": m["bits"], "threads": threads,
                     "latency_ms": statistics.median(lat), "images_per_s": statistics.median(rate),
                     "latency_speedup": base_latency / statistics.median(lat),
                     "throughput_speedup": statistics.median(rate) / base_rate, "file_mb": m["mb"],
                     "latency_all_ms": lat, "images_per_s_all": rate})
    return rows


def profile(path: str, info, threads: int, batch: int, seed: int, runs: int = 3) -> dict:
    """onnxruntime's kernel time by op type (ms per batch, share of the total) over `runs` batches."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = f"{tmp}/profile"
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        x = torch.randn(batch, *info.input_size, generator=torch.Generator().manual_seed(seed)).numpy()
        for _ in range(runs):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    return {"batch": batch, "threads": threads, "runs": runs, "total_ms": total / runs / 1e3,
            "ops": [{"op": op, "ms": us / runs / 1e3, "share": us / total} for op, us in per_op.most_common()]}


def bench_report(record: dict, *, profile: bool = True) -> str:
    """`record` as Markdown: its header line, the paired accuracy table, the speed and size table of
    each architecture and (`profile`) where the 224-px W8A8 model's time goes. What the benchmark
    prints, and the README's deployment block (without the profile; a test checks it)."""
    lines = [bench_header(record)]
    acc = record["accuracy"]
    if acc:
        lines += ["", f"Accuracy, {acc[0]['model']}: the exported model in onnxruntime against the fake-quantized "
                  f"PyTorch model it came from, paired on {acc[0]['n_images']:,} CIFAR-10 test images "
                  "(95% CI: paired bootstrap over images)", "",
                  "| bits | PyTorch top-1 | ONNX top-1 | ONNX − PyTorch (pp) [95% CI] | agreement | images |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['bits']} | {r['pytorch_top1']:.2f} | {r['onnx_top1']:.2f} | {r['difference']:+.2f} "
                  f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {r['agreement']:.2f}% | {r['n_images']:,} |" for r in acc]
        cost = record.get("softmax_quantizer")
        if cost:
            lines += ["", f"PyTorch fake-quant, {cost['a']} − {cost['b']}: {cost['difference']:+.2f} pp "
                      f"[{cost['ci'][0]:+.2f}, {cost['ci'][1]:+.2f}] on {cost['n_images']:,} images: {cost['verdict']}"]
        lines += ["", "onnxruntime CPU integer kernels after its fusions: " + "; ".join(
            f"{r['bits']}: " + ", ".join(f"{n} {op}" for op, n in sorted(r["onnx_integer_ops"].items()))
            for r in acc)]
    c = record["config"]
    for arch, rows in record["speed"].items():
        lines += ["", f"Speed and size, {arch} ({record['input_px'][arch]} px"
                  f"{', random weights' if arch == DEIT else ''}): median of {c['latency_repeats']} batch-1 "
                  f"and {c['repeats']} batch-{c['batch']} runs, round-robin; speed-up against PyTorch eager FP32 "
                  "at the same threads", "",
                  f"| runtime | bits | threads | batch-1 ms | speed-up | batch-{c['batch']} images/s | speed-up | file MB |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['runtime']} | {r['bits']} | {r['threads']} | {r['latency_ms']:.1f} | {r['latency_speedup']:.2f} "
                  f"| {r['images_per_s']:.1f} | {r['throughput_speedup']:.2f} | {r['file_mb']:.2f} |" for r in rows]
    prof = record.get("profile")
    if profile and prof:
        lines += ["", f"Where the 224-px W8A8 model's time goes in onnxruntime ({prof['threads']} "
                  f"thread{'s' if prof['threads'] != 1 else ''}, batch {prof['batch']}, {prof['total_ms']:.0f} ms "
                  "of kernel time per batch):", "", "| op | ms per batch | share |", "|---|---|---|"]
        lines += [f"| {op['op']} | {op['ms']:.1f} | {100 * op['share']:.1f}% |" for op in prof["ops"][:10]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantized", nargs="*", default=[], help="quantized teacher folders (DIR/quantized "
                        "of `sardfq run --out DIR`); default: calibrate w8a8, w8a8 with a uniform softmax "
                        "quantizer and w4afp here")
    parser.add_argument("--n-eval", type=int, default=1000, help="test images for the accuracy (10000: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per model and thread count")
    parser.add_argument("--latency-repeats", type=int, default=20, help="timed single images per model")
    parser.add_argument("--no-deit", dest="deit", action="store_false", help="skip the 224-px model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the record here (e.g. results/export/bench_export.json)")
    args = parser.parse_args()
    began = time.perf_counter()
    torch.set_num_threads(args.threads[0])
    record = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "config": vars(args),
              "versions": {"sardfq": sardfq.__version__, "torch": torch.__version__,
                           "onnxruntime": __import__("onnxruntime").__version__, "onnx": __import__("onnx").__version__},
              "machine": {**cpu_info(), "platform": platform.platform(), "processor": platform.processor(),
                          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                          # how busy the (shared) machine was: 1-minute load averages at start and end
                          "load_average_start": os.getloadavg()[0]},
              "accuracy": [], "speed": {}, "input_px": {}}
    with tempfile.TemporaryDirectory(prefix="sardfq-bench-export-") as tmp:
        work = Path(tmp)
        teachers = _teachers(args.quantized, args.seed)
        try:
            record["accuracy"] = accuracy(teachers, work, args.n_eval, args.threads[0])
            record["softmax_quantizer"] = softmax_quantizer_cost(teachers)
        except sardfq.DataNotFoundError as exc:
            print(f"accuracy skipped: {exc}", file=sys.stderr)
        for arch in (TEACHER, DEIT) if args.deit else (TEACHER,):
            models, info = speed_models(arch, teachers, work, args.seed)
            record["input_px"][arch] = info.input_size[1]
            record["speed"][arch] = [row for threads in args.threads for row in
                                     measure(models, info, threads, args.batch, args.repeats,
                                             args.latency_repeats, args.seed)]
            if arch == DEIT:
                path = next(m["path"] for m in models if m["runtime"] == "onnxruntime" and m["bits"] == "w8a8")
                record["profile"] = profile(path, info, args.threads[0], args.batch, args.seed)
                record["deit_w8a8_optimized_ops"] = optimized_op_counts(path)
    record["seconds"] = time.perf_counter() - began
    record["machine"]["load_average_end"] = os.getloadavg()[0]
    print(bench_report(record))
    if args.json:
        print(f"\nwrote {write_json_atomic(args.json, record)}")


if __name__ == "__main__":
    main()
