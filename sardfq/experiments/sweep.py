"""Batch runner: expand a grid of experiments and run what is not done yet, in parallel if asked.

A sweep file (YAML) names the sweep, fixed parameters and a grid:

    name: ablation                       # results go to results/ablation/<run-id>.json
    fixed: {model: vit_tiny_cifar10, synthesis.n: 32, synthesis.iterations: 1000, recon.iters: 1000}
    grid:                                # a mapping, or a list of mappings (their union)
      synthesis.method: [sardfq]
      switches:                          # a list of mappings: each one is merged into the run
        - {synthesis: {apa: false, msr: false, sl: false}}
        - {synthesis.apa: true, synthesis.prior: laplace}
      bits: [w4a4, w6a6]                 # 'wXaY' sets quant.w_bits and quant.a_bits
      seed: [0, 1, 2]
    # experiment: run_experiment                     # optional: a registered experiment function

Keys are `ExperimentConfig` fields; a field of a nested config is a dotted key
(`synthesis.apa_weight: 10.0`) or a nested mapping (`synthesis: {apa_weight: 10.0}`), merged key
by key with the fixed parameters. Every run is validated before any run starts: an unknown key is a
ConfigError naming it, and a grid of more than `MAX_RUNS` runs is refused before it is expanded.
Every run is an `ExperimentConfig` given to `run_experiment` (or to the `experiment` function),
or, with a notebook (`run_sweep(notebook=...)`, `sardfq sweep --notebook NB`), a papermill
execution of that notebook with the run's parameters (the notebook's `parameters` cell must declare
each one; a declared `result_path` receives the path where the notebook should save its
`ExperimentResult`).

A sweep file is data: reading and running it imports nothing it names. `experiment` is a name in
the `EXPERIMENTS` registry (`run_experiment`). Code chosen by the file's author, an `experiment:
module:function` plugin (imported, a `.py` file of the working folder included) or a `notebook:`
key, runs only with `run_sweep(..., allow_code=True)` / `sardfq sweep --allow-code`; a notebook
named by the person running the sweep (`--notebook`) needs no opt-in.

Guarantees:
- a record `results/<sweep>/<run-id>.json` exists only for a finished run: it is written by the
  process that drives the sweep, after the run returns, as a temporary file renamed into place, so
  a sweep killed at any moment leaves no partial record;
- rerunning a sweep skips runs whose record exists and runs the rest;
- a run that raises gets `<run-id>.failed.json` (with the error) instead, and is retried on rerun.

Parallelism: `workers=N` runs N local processes; `scheduler='local'` starts a Dask
`LocalCluster` of N workers, any other `scheduler` value is the address of a running Dask
scheduler (`dask scheduler` / `dask worker ADDRESS` on the cluster's machines). Dask distributed
is used rather than Ray because it is a pure-Python wheel with no daemon to install or keep alive,
its `LocalCluster` runs the very same code in tests and on a laptop, and the same call reaches a
multi-machine cluster given only the scheduler's address. With a remote cluster the records and
executed notebooks still come back to, and are written by, the machine that runs the sweep.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import math
import os
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import ConfigError, SardfqError, reject_unknown
from ..io import atomic_write_text, check_folder, read_record, write_json_atomic
from .config import EXPERIMENTS, NESTED, ExperimentConfig, merge, nest

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "run_experiment"
# the paths earlier sweep files wrote for the default, which name sardfq's own function
_OWN_PATHS = {"sardfq.experiments.run:run_experiment": DEFAULT_EXPERIMENT,
              "sardfq.experiment:run_experiment": DEFAULT_EXPERIMENT}
CALIBRATION_FOLDER = "calibration"  # <results>/calibration/<synthesis-id>.safetensors
_SPEC_KEYS = {"name", "fixed", "grid", "notebook", "experiment", "description"}
MAX_RUNS = 10_000  # [choice] runs in one sweep: 80x the zoo study's 120; counted before expanding
SCHEDULER_TIMEOUT_S = 10  # [choice] to reach a Dask scheduler, which answers in well under a second
_ALLOW_CODE = "sardfq sweep --allow-code (Python: run_sweep(..., allow_code=True))"


@dataclass(frozen=True)
class Run:
    """One point of a sweep: its identifier and the parameters it runs with."""

    run_id: str
    params: dict

    def config(self) -> ExperimentConfig:
        return ExperimentConfig.from_dict(self.params)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    fixed: dict = field(default_factory=dict)
    grid: tuple = ()  # of mappings (grid blocks)
    notebook: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"sweep name: must be a plain folder name, got {self.name!r}")
        if not isinstance(self.fixed, Mapping):
            raise ConfigError(f"sweep {self.name!r}: 'fixed' must be a mapping, got {type(self.fixed).__name__}")
        for block in self.grid:
            if not isinstance(block, Mapping):
                raise ConfigError(f"sweep {self.name!r}: each grid block must be a mapping of "
                                  f"parameter -> list of values, got {block!r}")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ConfigError(f"sweep {self.name!r}: 'experiment' must be the name of a registered experiment "
                              f"({', '.join(EXPERIMENTS.names())}), got {self.experiment!r}")
        if self.notebook is not None and not isinstance(self.notebook, str):
            raise ConfigError(f"sweep {self.name!r}: 'notebook' must be a path, got {self.notebook!r}")
        object.__setattr__(self, "experiment", _OWN_PATHS.get(self.experiment, self.experiment))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, default_name: str = "sweep") -> "SweepSpec":
        reject_unknown("a sweep file", d, _SPEC_KEYS, noun="key")
        grid = d.get("grid") or {}
        blocks = tuple(grid) if isinstance(grid, list) else (grid,)
        return cls(name=d.get("name", default_name), fixed=dict(d.get("fixed") or {}), grid=blocks,
                   notebook=d.get("notebook"), experiment=d.get("experiment") or DEFAULT_EXPERIMENT,
                   description=d.get("description", ""))

    def select(self, key: str, value: Any) -> "SweepSpec":
        """The sweep restricted to the runs whose `key` (a grid or fixed key, e.g. `model`) has
        `value`: `sardfq sweep --only model=vit_shallow_cifar10` runs one teacher of a zoo sweep."""
        if key in self.fixed:
            if self.fixed[key] != value:
                raise ConfigError(f"sweep {self.name!r}: {key} is fixed to {self.fixed[key]!r}, not {value!r}")
            return self
        blocks = []
        for block in self.grid:
            if key not in block:
                raise ConfigError(f"sweep {self.name!r}: no {key!r} in its grid; keys: {', '.join(block)}")
            values = block[key] if isinstance(block[key], list) else [block[key]]
            if value in values:
                blocks.append({**block, key: [value]})
        if not blocks:
            raise ConfigError(f"sweep {self.name!r}: no run has {key} = {value!r}")
        return dataclasses.replace(self, grid=tuple(blocks))

    def only(self, conditions: Iterable[str], what: str = "only") -> "SweepSpec":
        """`select` for each condition written `KEY=VALUE`, the value read as YAML, as a sweep file
        writes it (`sardfq sweep --only model=vit_shallow_cifar10`; `what` names the option in errors)."""
        import yaml

        spec = self
        for condition in conditions:
            key, sep, value = condition.partition("=")
            if not sep:
                raise ConfigError(f"{what} wants KEY=VALUE, got {condition!r}")
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{what} {condition!r}: the value is not valid YAML ({str(exc).splitlines()[0]}); "
                                  f"quote it, e.g. {what} 'model=\"a[1\"'") from None
            spec = spec.select(key.strip(), value)
        return spec

    def count(self) -> int:
        """How many runs the grid expands to (before duplicates are removed), without expanding it."""
        return sum(math.prod(len(v) if isinstance(v, list) else 1 for v in block.values())
                   for block in (self.grid or ({},)))

    def runs(self) -> list[Run]:
        """The grid expanded into runs (duplicates removed, in grid order), each validated; a grid of
        more than `MAX_RUNS` runs is a ConfigError, raised before it is expanded."""
        count = self.count()
        if count > MAX_RUNS:
            raise ConfigError(f"sweep {self.name!r} expands to {count:,} runs, more than the {MAX_RUNS:,} a sweep "
                              "may hold: split it into several sweep files, or run part of it (--only KEY=VALUE)")
        runs: dict[str, Run] = {}
        for params in expand_grid(self.grid, self.fixed):
            if self.notebook is None:
                try:
                    config = ExperimentConfig.from_dict(params)
                except SardfqError as exc:
                    raise type(exc)(f"sweep {self.name!r}: {exc}") from None
                run = Run(config.run_id(), config.to_dict())
            else:
                params = notebook_parameters(params)
                run = Run(notebook_run_id(params), params)
            runs.setdefault(run.run_id, run)
        return list(runs.values())


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read a sweep file (YAML or JSON); the sweep's name defaults to the file's stem."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"sweep file {path} must hold a mapping (name, fixed, grid, ...)")
    return SweepSpec.from_dict(data, default_name=path.stem)


def expand_grid(grid: Iterable[Mapping] | Mapping, fixed: Mapping | None = None) -> list[dict]:
    """Cartesian product of each grid block (a list of values per key; a scalar is one value),
    over `fixed`. A mapping value (other than a nested config's) is merged into the run; dotted
    keys become nested mappings, merged key by key."""
    blocks = [grid] if isinstance(grid, Mapping) else list(grid) or [{}]
    out = []
    for block in blocks:
        keys = list(block)
        choices = [v if isinstance(v, list) else [v] for v in block.values()]
        for combo in itertools.product(*choices):
            params = nest(fixed or {})
            for key, value in zip(keys, combo):
                merged = value if isinstance(value, Mapping) and key not in NESTED else {key: value}
                params = merge(params, nest(merged))
            out.append(params)
    return out


# The chapters' parameters cells hold flat names; a notebook sweep's row may name config fields
# instead, which reach the notebook under these names (any other nested field keeps its dotted name,
# which the notebook then rejects as undeclared).
NOTEBOOK_NAMES = {"synthesis.method": "method", "synthesis.n": "n", "synthesis.iterations": "synth_iters",
                  "recon.iters": "recon_iters"}


def notebook_parameters(params: Mapping) -> dict:
    """A run's parameters as a notebook's: nested fields flattened to the chapters' names; the bit
    setting stays `bits: w4a4`, as the chapters spell it."""
    flat = {}
    for key, value in params.items():
        if key in NESTED and isinstance(value, Mapping):
            flat.update({NOTEBOOK_NAMES.get(f"{key}.{k}", f"{key}.{k}"): v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def notebook_run_id(params: Mapping) -> str:
    """Identifier of a notebook run: a few telling parameters plus a hash of all of them."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    parts = [str(params[k]) for k in ("model", "method") if k in params]
    if "bits" in params:
        parts.append(str(params["bits"]))
    if "seed" in params:
        parts.append(f"s{params['seed']}")
    return "-".join(parts + [digest]).replace("/", "_")


# ------------------------------------------------------------------------------------ report
@dataclass
class SweepReport:
    name: str
    results_dir: str
    planned: list[str]
    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- execution
def record_path(results_dir: str | os.PathLike, spec: SweepSpec, run: Run) -> Path:
    return Path(results_dir) / spec.name / f"{run.run_id}.json"


def is_complete(path: Path, run: Run) -> bool:
    record = read_record(path)
    return record is not None and record.get("run_id") == run.run_id


def resolve_experiment(name: str, *, allow_code: bool = False) -> Callable:
    """The experiment function a sweep names: a name in `EXPERIMENTS`, or, only with `allow_code`,
    a `module:function` path, imported (what a plugin is; a module of the working folder too)."""
    name = _OWN_PATHS.get(name, name)
    if name in EXPERIMENTS:
        return EXPERIMENTS.get(name)
    if ":" not in name:
        return EXPERIMENTS.get(name)  # an UnknownNameError with the closest names
    if not allow_code:
        raise ConfigError(f"experiment {name!r} names Python code to import and run; a sweep runs only "
                          f"registered experiments ({', '.join(EXPERIMENTS.names())}) unless you allow "
                          f"code with {_ALLOW_CODE}")
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import experiment function {name!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"experiment {name!r} is a {type(fn).__name__}, not a function")
    return fn


def execute_run(run: Run, *, experiment: str = DEFAULT_EXPERIMENT, notebook: str | None = None,
                out_dir: str | None = None, calibration_dir: str | None = None,
                threads: int | None = None, allow_code: bool = False) -> dict:
    """Run one point of a sweep where this function is called (this process, a worker process or a
    Dask worker) and return `{"record": ..., "notebook": executed notebook text or None}`; nothing
    is written to the results folder here. Errors come back as `{"error": traceback}`."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        if notebook is None:
            fn = resolve_experiment(experiment, allow_code=allow_code)
            extra = {}
            if calibration_dir is not None and "calibration_dir" in inspect.signature(fn).parameters:
                extra["calibration_dir"] = calibration_dir
            result = fn(run.config(), out_dir=out_dir, progress=False, **extra)
            record = result.to_dict() if hasattr(result, "to_dict") else dict(result)
            text = None
        else:
            record, text = _execute_notebook_run(run, notebook)
    except Exception:  # the driver records the failure and goes on with the other runs
        return {"error": traceback.format_exc(), "seconds": time.perf_counter() - start}
    record = {**record, "run_id": run.run_id, "params": run.params}
    record.setdefault("seconds", round(time.perf_counter() - start, 3))
    return {"record": record, "notebook": text}


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike, parameters: Mapping,
                     *, kernel: str = "python3", cwd: str | os.PathLike | None = None,
                     progress: bool = False) -> Path:
    """Run `notebook` with papermill, injecting `parameters`, into `output`. Each parameter must be
    declared in the notebook's `parameters` cell (a typo would otherwise be silently ignored)."""
    import papermill

    reject_unknown(f"{notebook}'s parameters cell", parameters, papermill.inspect_notebook(str(notebook)),
                   noun="parameter")
    papermill.execute_notebook(str(notebook), str(output), parameters=dict(parameters),
                               kernel_name=kernel, progress_bar=progress, cwd=cwd)
    return Path(output)


def _execute_notebook_run(run: Run, notebook: str) -> tuple[dict, str]:
    import papermill

    declared = set(papermill.inspect_notebook(notebook))
    with tempfile.TemporaryDirectory(prefix="sardfq-nb-") as tmp:
        params = dict(run.params)
        result_file = Path(tmp) / "result.json"
        if "result_path" in declared:
            params["result_path"] = str(result_file)
        executed = Path(tmp) / "executed.ipynb"
        execute_notebook(notebook, executed, params)
        record = read_record(result_file) or {"kind": "notebook"}
        return {**record, "notebook_source": str(notebook)}, executed.read_text()


def _write_outcome(results_dir: Path, spec: SweepSpec, run: Run, outcome: dict) -> bool:
    path = record_path(results_dir, spec, run)
    failed = path.with_name(f"{run.run_id}.failed.json")
    if "error" in outcome:
        write_json_atomic(failed, {"run_id": run.run_id, "params": run.params, "error": outcome["error"]})
        return False
    record = {**outcome["record"], "sweep": spec.name}
    if outcome.get("notebook") is not None:
        nb_path = path.with_suffix(".ipynb")
        atomic_write_text(nb_path, outcome["notebook"])
        record["executed_notebook"] = str(nb_path)
    write_json_atomic(path, record)  # the record last: its presence means the run is complete
    if failed.exists():
        failed.unlink()
    return True


def _remove_stale_temporaries(folder: Path, older_than_s: float = 600.0) -> None:
    """Temporary files left by a process killed while writing (never read as records)."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
        except OSError:
            pass


def run_sweep(spec: SweepSpec | str | os.PathLike, *, results_dir: str | os.PathLike = "results",
              workers: int = 1, scheduler: str | None = None, client=None, notebook: str | None = None,
              allow_code: bool = False, force: bool = False, progress: bool = True) -> SweepReport:
    """Run every run of `spec` that has no record yet under `results_dir/<name>/`.

    - `workers=1`, no scheduler: one run after the other in this process;
    - `workers=N`: N worker processes on this machine (torch threads split between them);
    - `scheduler='local'`: a Dask LocalCluster of `workers` processes; `scheduler=ADDRESS`: a
      running Dask scheduler (reached within `SCHEDULER_TIMEOUT_S`, before anything is written);
      `client=`: an existing `dask.distributed.Client`.
    `notebook` runs that notebook per run (overriding the sweep file's). `allow_code` lets the sweep
    file name code of its own: an `experiment: module:function` plugin, a `notebook:` key (see the
    module docstring). `force` runs calibration sets above `MAX_IMAGES` images
    (`SynthesisConfig.check_size`). Returns what was skipped, run and failed.
    """
    from tqdm.auto import tqdm

    if not isinstance(spec, SweepSpec):
        spec = load_sweep(spec)
    if notebook is not None:
        spec = dataclasses.replace(spec, notebook=str(notebook))
    elif spec.notebook is not None and not allow_code:
        raise ConfigError(f"sweep {spec.name!r} names a notebook to execute ({spec.notebook}), which is code; "
                          f"run it with --notebook {spec.notebook} (Python: notebook=...) or allow the sweep "
                          f"file's code with {_ALLOW_CODE}")
    if spec.notebook is not None and not Path(spec.notebook).is_file():
        raise ConfigError(f"sweep {spec.name!r}: notebook {spec.notebook} does not exist")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: must be a positive integer, got {workers!r}")
    if spec.notebook is None:
        resolve_experiment(spec.experiment, allow_code=allow_code)  # fail before starting anything
    start = time.perf_counter()
    runs = spec.runs()  # every run validated before anything is written
    if spec.notebook is None and runs:
        try:
            max(runs, key=lambda r: r.params["synthesis"]["n"]).config().synthesis.check_size(force=force)
        except ConfigError as exc:
            raise ConfigError(f"sweep {spec.name!r}: {exc}") from None
    results_dir = check_folder(results_dir, "the results folder")
    folder = results_dir / spec.name
    report = SweepReport(spec.name, str(results_dir), [r.run_id for r in runs])
    todo = []
    for run in runs:
        if is_complete(record_path(results_dir, spec, run), run):
            report.skipped.append(run.run_id)
        else:
            todo.append(run)
    log.info("sweep %s: %d runs, %d done before, %d to run", spec.name, len(runs), len(report.skipped),
             len(todo))
    # calibration sets are shared by all sweeps of this results folder (see run_experiment)
    kwargs = {"experiment": spec.experiment, "notebook": spec.notebook, "allow_code": allow_code,
              "calibration_dir": str(results_dir / CALIBRATION_FOLDER)}

    def out_dir(run: Run) -> str:
        return str(folder / run.run_id)

    def finish(run: Run, outcome: dict) -> None:
        if _write_outcome(results_dir, spec, run, outcome):
            report.completed.append(run.run_id)
            log.info("sweep %s: %s done", spec.name, run.run_id)
        else:
            report.failed[run.run_id] = outcome["error"].strip().splitlines()[-1]
            log.error("sweep %s: %s failed: %s", spec.name, run.run_id, report.failed[run.run_id])
        bar.update(1)

    with contextlib.ExitStack() as stack:
        dask = todo and (client is not None or scheduler is not None)
        if dask and client is None:  # reach the cluster before the results folder is made
            client = stack.enter_context(_dask_client(scheduler, workers))
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(folder)
        bar = stack.enter_context(tqdm(total=len(todo), desc=f"sweep {spec.name}", unit="run",
                                       disable=not progress))
        if dask:
            threads = max(1, (os.cpu_count() or 1) // workers) if scheduler == "local" else None
            _run_dask(todo, finish, out_dir, kwargs, client=client, threads=threads)
        elif todo and workers > 1:
            _run_processes(todo, finish, out_dir, kwargs, workers=workers)
        else:
            for run in todo:
                finish(run, execute_run(run, out_dir=out_dir(run), **kwargs))
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _run_processes(todo, finish, out_dir, kwargs, *, workers: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(execute_run, run, out_dir=out_dir(run), threads=threads, **kwargs): run
                   for run in todo}
        for future in as_completed(futures):
            finish(futures[future], future.result())


@contextlib.contextmanager
def _dask_client(scheduler: str, workers: int):
    """A Dask client of a LocalCluster of `workers` processes (`scheduler='local'`) or of the
    scheduler at address `scheduler`; an address where no scheduler answers within
    `SCHEDULER_TIMEOUT_S` is a ConfigError."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # refused, timed out, not an address
        raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answered there ({exc}); start one "
                          "with `dask scheduler`, or use --scheduler local") from None
    with client:
        yield client


def _run_dask(todo, finish, out_dir, kwargs, *, client, threads: int | None) -> None:
    from distributed import as_completed

    futures = {}
    for run in todo:
        key = f"sardfq-{run.run_id}-{uuid.uuid4().hex[:8]}"
        future = client.submit(execute_run, run, out_dir=out_dir(run), threads=threads, key=key,
                               pure=False, **kwargs)
        futures[future] = run
    for future in as_completed(list(futures)):
        finish(futures[future], future.result())
