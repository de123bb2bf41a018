"""The experiment configuration: one dataclass, the single source of every flag.

`train.py` turns each field into an absl flag (`midg_keras/flags.py`), so a flagfile,
`config.json` in a workdir and the library all speak the same names. Library code takes a
`Config` and never reads absl's global FLAGS.

The fields fall into groups (`GROUPS`: data, model, training, ...), each starting at the
field named in `GROUP_STARTS` and running in declaration order to the next; `--help` lists
the flags by group and `group_values("model")` gives a group as a dict. The list-valued
flags (`--seeds`, `--modalities`, `--baselines`) are parsed once, by `validate()`.
"""

import dataclasses
import json

from midg_keras.constants import (
    CONSISTENCY_MODES,
    MODALITY_LETTERS,
    POOLINGS,
    PREDICTION_HEADS,
)


def _field(default, help_text, choices=None):
    metadata = {"help": help_text}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


class ConfigError(ValueError):
    """A flag value no run can use; the message names the flag and the fix."""


MODES = ("train", "evaluate", "inspect", "export", "tune")
MODALITIES = tuple(MODALITY_LETTERS)
MODELS = ("midg", "erm", "erm_shift")
# Builders that read MMSA pickles from a manual dir (--manual_dirs keys).
MANUAL_BUILDERS = ("mosi", "mosei", "sims")

# Group name -> what its flags set, in the order `--help` lists them.
GROUPS = {
    "run": "What to do",
    "data": "Data",
    "model": "Model (docs/design.md §4)",
    "training": "Training (docs/design.md §8)",
    "output": "Outputs and export",
    "tuning": "Tuning (docs/design.md §9)",
}
# First field of each group: a group runs from there to the next group's first field.
GROUP_STARTS = {
    "mode": "run",
    "source": "data",
    "model": "model",
    "epochs": "training",
    "workdir": "output",
    "tuner": "tuning",
}


@dataclasses.dataclass(frozen=True)
class ParsedLists:
    """The list-valued flags, parsed by `Config.validate`."""

    seeds: tuple  # ints: --seeds, or (--seed,) when it is empty
    models: tuple  # --model first, then each --baselines entry not equal to it
    modalities: tuple  # letters of --modalities, in the order given


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of a run; field metadata carries the flag help and choices."""

    # What to run on.
    mode: str = _field("train", "What to do.", MODES)
    source: str = _field(
        "synthetic/domain_a",
        "Training data: comma-separated `<builder>/<config>` or `pickle:PATH[@mosi|mosei|sims]`.",
    )
    target: str = _field(
        "",
        "Test data: comma-separated unseen domains in the --source syntax, each scored once "
        "with the model selected on the source (the first one is metrics.json's `test` and "
        "export's label scale); empty = the first source's own test split.",
    )
    label_csv: str = _field(
        "",
        "An MMSA label.csv whose labels (and transcripts) replace those of the --source "
        "pickle, joined by clip id; rows with mode `none` (in no standard fold, e.g. 399 of "
        "MOSEI's) are skipped. Needs one pickle: --source; targets keep their own labels.",
    )
    data_dir: str = _field("", "TFDS data_dir (default: TFDS' own, ~/tensorflow_datasets).")
    manual_dir: str = _field(
        "", "Folder holding the MMSA pickles for the mosi/mosei/sims builders."
    )
    manual_dirs: str = _field(
        "",
        "A folder per builder, e.g. `mosi=/data/MOSI,mosei=/data/MOSEI` (MOSI's and MOSEI's "
        "files share names); builders not named here read --manual_dir.",
    )
    nan_to_num: bool = _field(False, "Map NaN/inf features to 0 (counted) instead of failing.")
    trust_pickle: bool = _field(
        False,
        "Unpickle feature files (pickle: sources, the builders' manual dirs) with plain pickle, "
        "which runs any code a file names. Off: only what MMSA files hold (dicts, lists, "
        "strings, numbers, numpy arrays) loads, and any other global is refused.",
    )
    harmonize: str = _field(
        "none",
        "Feature dims differing between source and target: `none` fails, `pad` zero-pads or "
        "truncates target features to the source dims (lossy).",
        ("none", "pad"),
    )
    modalities: str = _field("t,a,v", "Comma-separated non-empty subset of t,a,v.")

    # Model (docs/design.md §4).
    model: str = _field(
        "midg",
        "`midg`, the `erm` late-fusion baseline, or `erm_shift` (ERM also trained on the same "
        "simulated out-of-domain inputs as MIDG).",
        MODELS,
    )
    baselines: str = _field(
        "",
        "Comma-separated models (e.g. `erm,erm_shift`) also trained on the same data and "
        "seeds and reported beside --model.",
    )
    hidden_dim: int = _field(128, "Width d of every representation.")
    encoder_layers: int = _field(1, "Transformer blocks per modality encoder.")
    num_heads: int = _field(4, "Attention heads (encoders and CM-Adapter).")
    av_stride: str = _field(
        "auto",
        "Audio/vision projection stride: `auto` = smallest stride leaving <= max_frames frames, "
        "or an integer.",
    )
    max_frames: int = _field(128, "Frame budget per audio/vision sequence for av_stride=auto.")
    dropout: float = _field(0.1, "Dropout rate everywhere.")
    input_dropout: float = _field(
        0.0,
        "Training only: dropout on the raw input features of every modality, before its "
        "encoder (MMSA's MulT drops its text features at 0.5 on MOSI); 0 = off.",
    )
    pooling: str = _field(
        "mean",
        "How each modality's sequence is pooled to one vector: `mean` over its real steps "
        "(paper), or `attention` (learned weights over the steps, per modality and stream).",
        POOLINGS,
    )
    token_dropout: float = _field(
        0.0,
        "Training only: drop each text token (word feature) with this probability before the "
        "text encoder, a clip keeping at least one (0 = off).",
    )
    num_experts: int = _field(4, "MoIE experts K.")
    router_top_k: int = _field(0, "0 = dense mixture; k > 0 = top-k routing + load-balance loss.")
    router_aux_weight: float = _field(0.01, "Weight of the router load-balance loss.")
    decouple: str = _field(
        "kl_recon_club",
        "Decoupling loss L_DIS: KL to N(0, I) priors (`kl_recon*`) or the cross-stream priors "
        "of Eq. 2 as printed (`cross_kl_recon*`), plus reconstruction and/or CLUB.",
        ("kl_recon", "club", "kl_recon_club", "cross_kl_recon", "cross_kl_recon_club"),
    )
    club_weight: float = _field(1.0, "Weight of the CLUB mutual-information bound in L_DIS.")
    use_moie: bool = _field(True, "Ablation: MoIE (off = concat + MLP fusion).")
    use_cm_adapter: bool = _field(True, "Ablation: CM-Adapter (off = pooled concat + MLP).")
    use_decoupling: bool = _field(
        False,
        "Information-entropy decoupling (Eqs. 1-3; off = A_im = A_om = A_m). Off by default: on "
        "the development shift (synthetic domain_c) its Gaussian bottleneck cost 8 points of "
        "target accuracy (benchmarks/dg/results/diagnostics_after.md).",
    )
    alpha: float = _field(1.0, "Weight of L_in (Eq. 7).")
    beta: float = _field(1.0, "Weight of L_out (Eq. 7).")
    gamma: float = _field(
        0.1,
        "Weight of L_DIS. Its terms are per token and per feature dimension (KL in nats/dim, "
        "reconstruction MSE/dim), summed over modalities; the reported decoupling_loss also "
        "holds the CLUB net's own negative log-likelihood.",
    )
    shift_crop: float = _field(
        0.5,
        "Simulated out-of-domain inputs: keep a random sub-sequence of U(1-crop, 1) of each "
        "clip (0 = off).",
    )
    shift_frame_drop: float = _field(
        0.2, "Simulated out-of-domain inputs: drop each frame/token with this probability."
    )
    shift_channel_drop: float = _field(
        0.2,
        "Simulated out-of-domain inputs: zero each feature channel for a whole clip with this "
        "probability.",
    )
    shift_stats: float = _field(
        1.0,
        "Simulated out-of-domain inputs: strength of the per-clip feature-statistics "
        "perturbation (DSU; 0 = off).",
    )
    adv_weight: float = _field(
        0.0,
        "Weight of the discriminator's cross-entropy (Eq. 4): clean vs simulated out-of-domain "
        "representation O, reversed into everything ŷ2 is computed from. 0 by default: on the "
        "development shift (synthetic domain_c) it lowered target accuracy "
        "(benchmarks/dg/README.md).",
    )
    consistency_weight: float = _field(
        0.0,
        "Weight of the consistency penalty between ŷ2 on clean and on shifted inputs (0 by "
        "default: every mode lowered domain_c accuracy, benchmarks/dg/README.md).",
    )
    consistency: str = _field(
        "to_shifted",
        "Consistency penalty: `pairwise` (pull both predictions together), `to_shifted` (pull "
        "the clean prediction to the shifted one, held constant) or `vrex` (squared "
        "difference of the two risks).",
        CONSISTENCY_MODES,
    )
    grl_max: float = _field(
        1.0,
        "Maximum gradient-reversal strength lambda (reached by the DANN schedule): how strongly "
        "the reversed discriminator gradient pushes the representation O towards invariance.",
    )
    grl_schedule: str = _field("dann", "Lambda schedule.", ("dann", "constant"))
    reg_loss: str = _field(
        "mse",
        "Regression loss, also the model-selection loss (`val_prediction_loss`): `mse`, or "
        "`l1` (what MMSA's MulT trains with; it optimizes MAE directly).",
        ("mse", "l1"),
    )
    prediction_head: str = _field(
        "regression",
        "What each score head predicts: `regression`, one number trained with --reg_loss, or "
        "`distribution`, softmax probabilities over --head_bins bins of the label scale trained "
        "towards a Gaussian around the label (--label_sigma) and read out by their median "
        "(docs/design.md §4.6). --reg_loss stays the selection loss either way.",
        PREDICTION_HEADS,
    )
    head_bins: int = _field(
        61,
        "Bins of a distribution head over the common label scale [-1, 1] (61: every 0.1 on "
        "MOSI's [-3, 3]).",
    )
    label_sigma: float = _field(
        0.083,
        "Spread of a distribution head's Gaussian target on the common scale [-1, 1] "
        "(0.083: a quarter point on MOSI's [-3, 3]).",
    )
    inference_path: str = _field(
        "out",
        "Prediction used for evaluation and serving (paper §4.3: out).",
        ("out", "blend", "in"),
    )
    domain_labels: str = _field(
        "stream",
        "Discriminator target: `stream` (clean vs simulated out-of-domain input) or `source` "
        "(which source dataset; needs several sources).",
        ("stream", "source"),
    )

    # Training (docs/design.md §8).
    epochs: int = _field(30, "Maximum epochs.")
    batch_size: int = _field(32, "Batch size.")
    learning_rate: float = _field(1e-3, "AdamW (peak) learning rate.")
    lr_schedule: str = _field(
        "constant",
        "Learning rate after the warmup: `constant`, or `cosine` decay to 0 over the remaining "
        "steps of --epochs.",
        ("constant", "cosine"),
    )
    warmup_epochs: float = _field(
        0.0, "Linear learning-rate warmup from 0 over this many epochs (fractions allowed)."
    )
    ema_momentum: float = _field(
        0.0,
        "Exponential moving average of the weights (Keras' `use_ema`) with this momentum, "
        "e.g. 0.99; the averaged weights are validated, selected, saved and exported (0 = off).",
    )
    weight_decay: float = _field(1e-4, "AdamW weight decay.")
    clipnorm: float = _field(1.0, "Gradient clipping by global norm (0 = off).")
    patience: int = _field(8, "Early stopping on source validation loss (0 = off).")
    seed: int = _field(1111, "Random seed (used when --seeds is empty).")
    seeds: str = _field("", "Comma-separated seeds; results are mean ± std over them.")
    deterministic: bool = _field(False, "TF op determinism (bit-identical reruns, slower).")
    mixed_precision: str = _field(
        "auto",
        "`auto` = mixed_float16 on GPU, float32 on CPU.",
        ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    distribute: str = _field("none", "tf.distribute strategy.", ("none", "mirrored", "multiworker"))
    inter_op_threads: int = _field(
        0, "TensorFlow inter-op threads; 0 = TensorFlow's default (one per core)."
    )
    shuffle_buffer: int = _field(
        20000,
        "Shuffle buffer (examples) of TFDS sources, capped at 1 GiB of examples; pickle "
        "sources shuffle in place (0 = no shuffle).",
    )
    steps_per_epoch: int = _field(0, "Cap on steps per epoch (0 = the whole split).")
    verbose: int = _field(1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line/epoch.")

    # Outputs.
    workdir: str = _field("runs/default", "Where every output of the run goes.")
    overwrite: bool = _field(
        False,
        "Train into a --workdir that holds a finished run (or an interrupted one with other "
        "flags): the outputs of this command's runs (its models x seeds) and results.md are "
        "deleted first; other files and runs stay. Without it such a workdir is refused.",
    )
    export_dir: str = _field("", "SavedModel export root (`<export_dir>/<version>/`).")
    export_version: int = _field(0, "SavedModel version (0 = next free one).")

    # Tuning (docs/design.md §9).
    tuner: str = _field("random", "keras-tuner algorithm.", ("random", "bayesian", "hyperband"))
    max_trials: int = _field(10, "Tuner trials.")
    executions_per_trial: int = _field(1, "Fits per trial (averaged).")
    search_space: str = _field(
        "",
        "Semicolon-separated `name=choice:v1|v2` / `name=float:lo:hi[:log]` / `name=int:lo:hi`.",
    )

    def modality_list(self):
        """--modalities as letters (`t`, `a`, `v`), in the order given."""
        return list(self.parsed_lists().modalities)

    def model_list(self):
        """--model first, then each --baselines entry not equal to it."""
        return list(self.parsed_lists().models)

    def manual_dir_map(self) -> dict[str, str]:
        """--manual_dirs as {builder: folder}."""
        pairs = (item.partition("=") for item in self.manual_dirs.split(",") if item.strip())
        return {name.strip(): folder.strip() for name, _, folder in pairs}

    def seed_list(self):
        """--seeds as ints, or [--seed] when it is empty."""
        return list(self.parsed_lists().seeds)

    def group_values(self, group: str) -> dict:
        """{flag name: value} of the fields of `group` (a key of `GROUPS`)."""
        return {name: getattr(self, name) for name in group_fields(group)}

    def model_settings(self, names) -> dict:
        """{name: value} of the model-group flags in `names` (a model's hyper-parameters)."""
        model_group = group_fields("model")
        unknown = [name for name in names if name not in model_group]
        if unknown:
            raise ValueError(f"not flags of the model group: {unknown}")
        return {name: getattr(self, name) for name in names}

    def parsed_lists(self) -> ParsedLists:
        """The list-valued flags, parsed once (by `validate`, or at the first call)."""
        if "_parsed_lists" not in self.__dict__:  # a cache, not a field: Config is frozen
            object.__setattr__(self, "_parsed_lists", self._parse_lists())
        return self._parsed_lists

    def _parse_lists(self) -> ParsedLists:
        modalities = tuple(m.strip() for m in self.modalities.split(",") if m.strip())
        if (
            not modalities
            or any(m not in MODALITIES for m in modalities)
            or len(set(modalities)) != len(modalities)
        ):
            raise ConfigError(
                f"--modalities={self.modalities!r}: give a non-empty subset of t,a,v, e.g. t,a,v or t."
            )
        try:
            seeds = tuple(int(s) for s in self.seeds.split(",") if s.strip()) or (self.seed,)
        except ValueError:
            raise ConfigError(f"--seeds={self.seeds!r}: give comma-separated integers.") from None
        models = [self.model]
        for name in (n.strip() for n in self.baselines.split(",")):
            if name and name not in models:
                models.append(name)
        unknown = [m for m in models if m not in MODELS]
        if unknown:
            raise ConfigError(
                f"--baselines={self.baselines!r}: unknown model(s) {unknown}; use {', '.join(MODELS)}."
            )
        return ParsedLists(seeds=seeds, models=tuple(models), modalities=modalities)

    def validate(self):
        """Raises ConfigError with a one-line message for values no run can use."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"--{f.name}={value!r}: choose one of {', '.join(choices)}.")
        self.parsed_lists()
        if self.av_stride != "auto":
            try:
                stride = int(self.av_stride)
            except ValueError:
                stride = 0
            if stride < 1:
                raise ConfigError(f"--av_stride={self.av_stride!r}: use `auto` or an integer >= 1.")
        positive = ("hidden_dim", "num_heads", "max_frames", "num_experts", "epochs", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name}={getattr(self, name)}: must be >= 1.")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"--hidden_dim={self.hidden_dim} must be divisible by --num_heads={self.num_heads}."
            )
        if not 0 <= self.router_top_k <= self.num_experts:
            raise ConfigError(
                f"--router_top_k={self.router_top_k}: must be in [0, --num_experts={self.num_experts}]."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout={self.dropout}: must be in [0, 1).")
        for name in ("shift_crop", "shift_frame_drop", "shift_channel_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name}={getattr(self, name)}: must be in [0, 1) (0 = off).")
        for name in ("input_dropout", "token_dropout", "ema_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name}={getattr(self, name)}: must be in [0, 1) (0 = off).")
        if not 0.0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(
                f"--warmup_epochs={self.warmup_epochs}: must be in [0, --epochs={self.epochs}]."
            )
        for name in ("shift_stats", "adv_weight", "consistency_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}={getattr(self, name)}: must be >= 0 (0 = off).")
        if self.head_bins < 2:
            raise ConfigError(f"--head_bins={self.head_bins}: must be >= 2.")
        if self.label_sigma <= 0:
            raise ConfigError(f"--label_sigma={self.label_sigma}: must be > 0.")
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta == 0:
            raise ConfigError("--alpha and --beta must be >= 0 and not both 0.")
        for item in self.manual_dirs.split(","):
            name, equals, folder = item.partition("=")
            if item.strip() and (name.strip() not in MANUAL_BUILDERS or not equals or not folder):
                raise ConfigError(
                    f"--manual_dirs={self.manual_dirs!r}: give comma-separated builder=FOLDER "
                    f"with builder one of {', '.join(MANUAL_BUILDERS)}, "
                    "e.g. mosi=/data/MOSI,mosei=/data/MOSEI."
                )
        if self.label_csv and (
            len(self.source.split(",")) != 1 or not self.source.strip().startswith("pickle:")
        ):
            raise ConfigError(
                f"--label_csv joins one label.csv to one feature file: give one "
                f"--source=pickle:PATH (got {self.source!r})."
            )
        if self.domain_labels == "source" and len(self.source.split(",")) < 2:
            raise ConfigError(
                "--domain_labels=source needs several comma-separated --source datasets."
            )
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **overrides) -> "Config":
        values = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def field_group(name: str) -> str:
    """The group (a key of `GROUPS`) of the `Config` field `name`."""
    return _FIELD_GROUPS[name]


def group_fields(group: str) -> tuple:
    """Names of the `Config` fields of `group`, in declaration order."""
    return tuple(name for name, g in _FIELD_GROUPS.items() if g == group)


def _field_groups() -> dict:
    groups, group = {}, None
    for field in dataclasses.fields(Config):
        group = GROUP_STARTS.get(field.name, group)
        groups[field.name] = group
    return groups


_FIELD_GROUPS = _field_groups()
