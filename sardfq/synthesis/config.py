"""`SynthesisConfig`: how a calibration set is synthesized, and the registries of what it names:
`METHODS` (calibration-image sources) and `PRIORS` (attention priors).

The registries live here rather than beside what they hold so that the dependency runs one way:
the methods (`sardfq.synthesis.methods`) and priors (`sardfq.synthesis.priors`) register themselves
when the `sardfq.synthesis` wing is imported and take a `SynthesisConfig`; the config only checks
that the names it holds are registered.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import ConfigError, UnknownNameError
from ..precision import check_autocast
from ..registry import Registry, reject_unknown
from .msr import K_MSR, QUADRANTS
from .sparse import PRUNE_AT, PRUNE_RATIO, STOPPED

if TYPE_CHECKING:  # a type only: the config reads info's fields, so it needs no model code
    from ..models import ModelInfo

METHODS: Registry[type] = Registry("synthesis method")  # name -> a `sardfq.synthesis.methods.Method` subclass
PRIORS: Registry[Callable] = Registry("attention prior")  # name -> a draw function (sardfq.synthesis.priors)

K_APA = 5  # [paper] best number of mixture components in the paper's sweep
SCALE_MAX = 1 / 3  # [choice] widest GMM / Laplace component: a fraction of the grid side

# The paper's symbols for SynthesisConfig fields: the one alias table. Accepted wherever a field is
# named (ExperimentConfig mappings, sweep rows, `sardfq run --a1`) and offered in error messages.
PAPER_NAMES = {"a1": "apa_weight"}

# [choice] APA weight a1 (the paper tunes it per model in [1, 1e5]). Chosen on the embedded teacher
# with synthetic images only, never test data: for a1 in {0, 10, 1e2, 1e3, 1e4} (8 images, 100
# steps, APA + SL, seed 11) we measured the APA distance of the final images to their priors and
# their soft-label CE; a1 = 100 is the largest value whose CE stays within 1.5x of a1 = 0's
# (0.19 vs 0.17; 1e3: 0.45, 1e4: 2.4 with the labels lost) while cutting the APA distance by 65%.
# Other models scale it by (patches / 64)^2, because the MSE between maps that sum to 1 over P
# patches shrinks like 1 / P^2.
TEACHER_APA_WEIGHT = 100.0
TEACHER_PATCHES = 64

# [choice] Sizes that are mistakes rather than experiments. The paper calibrates on 32 images:
# more than MAX_IMAGES (32 times that; hours of optimization on a CPU) is refused by the commands
# unless forced (`check_size`, --force); more than HARD_MAX_IMAGES (60 GB of 224-pixel images), or
# more than MAX_ITERATIONS steps (1000 times the paper's), by the config itself.
MAX_IMAGES = 1024
HARD_MAX_IMAGES = 100_000
MAX_ITERATIONS = 1_000_000


@dataclass(frozen=True)
class SynthesisConfig:
    """How to synthesize a calibration set. Sources: [paper], [PSAQ-ViT code] or [choice]."""

    method: str = "sardfq"  # noise | real | psaq | sardfq | smi
    n: int = 32  # [paper] calibration images
    iterations: int = 1000  # [paper]
    seed: int = 0  # [choice]
    batch_size: int = 32  # [paper] images optimized together; larger n runs in chunks
    apa: bool = True  # [paper] switches of the sardfq method (ignored by the others)
    msr: bool = True
    sl: bool = True
    apa_weight: float | None = None  # [choice] a1; None: TEACHER_APA_WEIGHT scaled to the grid
    prior: str = "gmm"  # [paper] gmm | laplace | real
    k_apa: int = K_APA  # [paper] mixture components at most
    k_msr: int = K_MSR  # [paper] regions per image at most
    depth_weighting: bool = True  # [paper] weight block l by l/L
    deep_only: bool = True  # [paper] APA on blocks l >= L/2 only
    soft_label_low: float = 5.0  # [paper] Z of the relevant classes ~ U(low, high)
    soft_label_high: float = 10.0  # [paper]
    tv_weight: float = 0.05  # [paper]
    entropy_weight: float = 1.0  # [PSAQ-ViT code] psaq only
    lr: float | None = None  # [PSAQ-ViT code] None: 0.2, or 0.25 for Swin
    betas: tuple[float, float] = (0.5, 0.9)  # [PSAQ-ViT code]
    rounds: int = 2  # [PSAQ-ViT code]
    warmup_fraction: float = 0.1  # [PSAQ-ViT code] of each round
    jitter_px: tuple[int, ...] = (15, 30)  # [PSAQ-ViT code] per round at 224 px; scaled
    flip_p: float = 0.5  # [PSAQ-ViT code]
    real_prior_images: int = 256  # [choice] real images behind prior="real"
    prior_scale: float = SCALE_MAX  # [choice] widest gmm/laplace component, as a fraction of the grid side
    autocast: str | None = None  # [choice] None (float32), "bf16" (autocast of the forward
    #   passes) or "bf16-mlp" (bf16 products in the MLPs and attention output projections only;
    #   attention maps, head and elementwise ops in float32); float32 by default: bf16 cost W4A4
    #   accuracy on every seed (results/bf16_check)
    sparse: bool | None = None  # [choice] sparse inversion (sardfq.synthesis.sparse): none is the
    #   method's own choice (on for smi, off for the others until measured); --sparse / --no-sparse force it
    prune_at: tuple[float, ...] = PRUNE_AT  # [SMI README, as fractions] when patches stop
    prune_ratio: float = PRUNE_RATIO  # [SMI README] share of the running patches stopped each time
    stopped: str = "zero"  # [SMI code] a stopped patch in the finished image: "zero" (black) or "frozen"

    def __post_init__(self):
        for name, registry in (("method", METHODS), ("prior", PRIORS)):
            value = getattr(self, name)
            if value not in registry:
                try:
                    registry.get(value)
                except UnknownNameError as exc:
                    raise UnknownNameError(f"SynthesisConfig.{name}: {exc}") from None
        for name in ("apa", "msr", "sl", "depth_weighting", "deep_only"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "must be True or False")
        for name in ("n", "iterations", "batch_size", "rounds", "k_apa", "real_prior_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(name, "must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            self._fail("seed", "must be an integer >= 0")
        if isinstance(self.k_msr, bool) or not isinstance(self.k_msr, int) or not 1 <= self.k_msr <= QUADRANTS:
            self._fail("k_msr", f"must be an integer in 1..{QUADRANTS} (regions are the quadrants of a 2x2 grid)")
        if self.n > HARD_MAX_IMAGES:
            self._fail("n", f"must be at most {HARD_MAX_IMAGES:,} images (the paper uses 32)")
        if self.iterations > MAX_ITERATIONS:
            self._fail("iterations", f"must be at most {MAX_ITERATIONS:,} (the paper uses 1000)")
        if self.iterations < self.rounds:
            self._fail("iterations", f"must be at least rounds ({self.rounds})")
        if self.apa_weight is not None and not (math.isfinite(self.apa_weight) and self.apa_weight >= 0):
            self._fail("apa_weight", "must be a finite number >= 0 (or None for the default)")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            self._fail("lr", "must be a positive number (or None for the default)")
        for name in ("tv_weight", "entropy_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                self._fail(name, "must be a finite number >= 0")
        if not self.soft_label_low <= self.soft_label_high:
            self._fail("soft_label_low", "must not exceed soft_label_high")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            self._fail("betas", "must be two numbers in [0, 1)")
        if not 0 <= self.warmup_fraction < 1:
            self._fail("warmup_fraction", "must be in [0, 1)")
        if not self.jitter_px or any(int(j) != j or j < 0 for j in self.jitter_px):
            self._fail("jitter_px", "must be one or more whole numbers of pixels >= 0")
        if not 0 <= self.flip_p <= 1:
            self._fail("flip_p", "must be a probability in [0, 1]")
        if not (math.isfinite(self.prior_scale) and self.prior_scale > 0):
            self._fail("prior_scale", "must be a positive fraction of the patch grid's side")
        check_autocast(self.autocast, "SynthesisConfig.autocast")
        if self.sparse is not None and not isinstance(self.sparse, bool):
            self._fail("sparse", "must be True, False or None (the method's default)")
        if not self.prune_at or any(not (isinstance(f, (int, float)) and 0 < f < 1) for f in self.prune_at):
            self._fail("prune_at", "must be one or more fractions of the run in (0, 1), e.g. (0.05, 0.1, 0.2, 0.3)")
        if not (isinstance(self.prune_ratio, (int, float)) and 0 < self.prune_ratio < 1):
            self._fail("prune_ratio", "must be a share in (0, 1) of the running patches")
        if self.stopped not in STOPPED:
            self._fail("stopped", f"must be one of {', '.join(STOPPED)}")
        # tuples survive JSON as lists; keep the frozen dataclass hashable and comparable
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "jitter_px", tuple(int(j) for j in self.jitter_px))
        object.__setattr__(self, "prune_at", tuple(sorted(float(f) for f in self.prune_at)))

    def _fail(self, name: str, why: str):
        raise ConfigError(f"SynthesisConfig.{name} {why}; got {getattr(self, name)!r}")

    def check_size(self, *, force: bool = False) -> None:
        """A ConfigError when `n` is above `MAX_IMAGES` and not `force`d: what the commands ask
        before starting a job of hours (`sardfq synthesize/run/sweep --force` goes ahead)."""
        if self.n > MAX_IMAGES and not force:
            raise ConfigError(f"SynthesisConfig.n = {self.n:,} images is more than {MAX_IMAGES:,} (the paper "
                              f"calibrates on 32), a job of hours; pass --force (Python: force=True) if you mean it")

    @property
    def switches(self) -> dict[str, bool] | None:
        """{apa, msr, sl} for the sardfq method; None for the others."""
        return {"apa": self.apa, "msr": self.msr, "sl": self.sl} if self.method == "sardfq" else None

    @property
    def is_sparse(self) -> bool:
        """Whether the run is a sparse inversion: `sparse`, or the method's default (smi only)."""
        return self.method == "smi" if self.sparse is None else self.sparse

    @property
    def label(self) -> str:
        """A short name: the method, plus the switches that are off (e.g. `sardfq-no-msr`), and
        `-sparse` (`-dense` for smi) where sparsity is not the method's default."""
        name = self.method
        if self.method == "sardfq":
            name += "".join(f"-no-{k}" for k, v in self.switches.items() if not v)
        if self.is_sparse != (self.method == "smi") and self.method not in ("noise", "real"):
            name += "-sparse" if self.is_sparse else "-dense"
        return name

    def resolved(self, info: ModelInfo) -> "SynthesisConfig":
        """A copy with the defaults that depend on the model filled in (the one place they are
        resolved): `apa_weight` (None: `TEACHER_APA_WEIGHT` scaled to the patch grid) and `lr`
        (None: 0.2, or 0.25 for Swin)."""
        patches = info.patch_grid[0] * info.patch_grid[1]
        apa_weight = TEACHER_APA_WEIGHT * (patches / TEACHER_PATCHES) ** 2 if self.apa_weight is None else self.apa_weight
        lr = (0.25 if info.family == "swin" else 0.2) if self.lr is None else self.lr
        return dataclasses.replace(self, apa_weight=float(apa_weight), lr=float(lr))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SynthesisConfig":
        """From a plain mapping (JSON); an unknown key is a ConfigError naming it."""
        reject_unknown("SynthesisConfig", data, (f.name for f in dataclasses.fields(cls)), PAPER_NAMES)
        return cls(**data)
