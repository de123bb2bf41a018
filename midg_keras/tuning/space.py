"""The `--search_space` syntax: which `Config` fields a tuning search varies, and how.

A search space is a semicolon-separated list of `name=kind:spec` items; `name` is any
hyper-parameter flag (a `Config` field that is not about data, run control or outputs):

    name=choice:v1|v2|...     one of the listed values, parsed as the flag's type
                              (bools: true|false), e.g. `hidden_dim=choice:64|128`
    name=int:lo:hi[:step]     an integer in [lo, hi] on a grid of `step` (default 1)
    name=float:lo:hi[:log]    a float in [lo, hi], sampled log-uniformly with `:log`

Example (one flagfile line; spaces around items are ignored):

    --search_space=hidden_dim=choice:64|128; num_experts=int:2:8:2; alpha=float:0.5:2;
        learning_rate=float:1e-4:3e-3:log; dropout=float:0:0.3; use_moie=choice:true|false

Fields not in the space keep their flag values. A space whose values could form a config
`Config.validate()` rejects (e.g. a hidden_dim not divisible by a num_heads choice) is
refused before the search starts, so no trial can fail on it.
"""

import dataclasses
import itertools
import math

from midg_keras.config import Config, ConfigError

# Flags that are not hyper-parameters: data, run control, precision/distribution, outputs.
NOT_TUNABLE = frozenset(
    {
        "mode", "source", "target", "label_csv", "data_dir", "manual_dir", "nan_to_num",
        "trust_pickle", "harmonize", "model", "baselines", "epochs", "patience", "seed", "seeds",
        "deterministic", "mixed_precision", "distribute", "shuffle_buffer", "steps_per_epoch",
        "verbose", "workdir", "export_dir", "export_version", "tuner", "max_trials",
        "executions_per_trial", "search_space",
    }
)  # fmt: skip
# Exhaustive combination check up to this many combinations (each is one validate()).
MAX_CHECKED_COMBINATIONS = 200_000
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def tunable_names():
    return sorted(name for name in _FIELDS if name not in NOT_TUNABLE)


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched flag: `kind` is `choice`, `int` or `float`."""

    name: str
    kind: str
    values: tuple = ()  # choice
    low: float = 0
    high: float = 0
    step: int = 1  # int
    log: bool = False  # float

    def register(self, hp):
        """Declares this parameter in keras-tuner's `hp`; returns its value as the flag's type."""
        if self.kind == "choice" and isinstance(self.values[0], bool):
            # keras-tuner's Choice stores bools as 0/1: use its Boolean (or Fixed) instead.
            both = len(self.values) == 2
            value = hp.Boolean(self.name) if both else hp.Fixed(self.name, self.values[0])
        elif self.kind == "choice":
            value = hp.Choice(self.name, list(self.values))
        elif self.kind == "int":
            value = hp.Int(self.name, int(self.low), int(self.high), step=self.step)
        else:
            sampling = "log" if self.log else "linear"
            value = hp.Float(self.name, self.low, self.high, sampling=sampling)
        return type(_FIELDS[self.name].default)(value)

    def corner_values(self):
        """Every value a discrete parameter takes; a float's two ends."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, self.step))
        return [self.low, self.high]


def _parse_scalar(name, text, item):
    kind = type(_FIELDS[name].default)
    text = text.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"--search_space item {item!r}: {text!r} is not a valid {kind.__name__} for --{name}."
        ) from None


def _number(text, item, cast=float):
    try:
        value = cast(text)
    except ValueError:
        raise ConfigError(f"--search_space item {item!r}: {text!r} is not a number.") from None
    if not math.isfinite(value):
        raise ConfigError(f"--search_space item {item!r}: {text!r} is not finite.")
    return value


def _parse_item(item):
    name, equals, spec = item.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ConfigError(
            f"--search_space item {item!r}: write `name=choice:a|b`, `name=int:lo:hi[:step]` "
            "or `name=float:lo:hi[:log]`."
        )
    if name not in _FIELDS:
        raise ConfigError(f"--search_space item {item!r}: there is no flag --{name}.")
    if name in NOT_TUNABLE:
        raise ConfigError(
            f"--search_space item {item!r}: --{name} is not a hyper-parameter; tunable flags: "
            f"{', '.join(tunable_names())}."
        )
    kind, _, rest = spec.strip().partition(":")
    field_type = type(_FIELDS[name].default)
    if kind == "choice":
        values = tuple(_parse_scalar(name, v, item) for v in rest.split("|") if v.strip())
        if not values or len(set(values)) != len(values):
            raise ConfigError(
                f"--search_space item {item!r}: list distinct values, e.g. choice:a|b."
            )
        return Param(name, "choice", values=values)
    parts = [p.strip() for p in rest.split(":")]
    if kind == "int":
        if field_type is not int or len(parts) not in (2, 3):
            raise ConfigError(
                f"--search_space item {item!r}: int ranges are `int:lo:hi[:step]`, for integer "
                "flags only."
            )
        low, high = _number(parts[0], item, int), _number(parts[1], item, int)
        step = _number(parts[2], item, int) if len(parts) == 3 else 1
        if low > high or step < 1:
            raise ConfigError(f"--search_space item {item!r}: need lo <= hi and step >= 1.")
        return Param(name, "int", low=low, high=high, step=step)
    if kind == "float":
        log = len(parts) == 3 and parts[2] == "log"
        if field_type is not float or len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ConfigError(
                f"--search_space item {item!r}: float ranges are `float:lo:hi[:log]`, for float "
                "flags only."
            )
        low, high = _number(parts[0], item), _number(parts[1], item)
        if low >= high or (log and low <= 0):
            raise ConfigError(f"--search_space item {item!r}: need lo < hi (and lo > 0 with :log).")
        return Param(name, "float", low=low, high=high, log=log)
    raise ConfigError(
        f"--search_space item {item!r}: unknown kind {kind!r}; use choice, int or float."
    )


def parse_search_space(spec: str, base: Config = None):
    """Parses `--search_space` into a list of `Param`; checks it against `base`.

    Raises:
        ConfigError: a malformed item, an unknown or non-tunable flag, a repeated flag,
            an empty space, or values that make `base` invalid (one line naming them).
    """
    params = [_parse_item(item) for item in spec.split(";") if item.strip()]
    if not params:
        raise ConfigError(
            "--mode=tune needs --search_space, e.g. "
            "--search_space='hidden_dim=choice:64|128;learning_rate=float:1e-4:3e-3:log'."
        )
    names = [p.name for p in params]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--search_space names {', '.join(repeated)} more than once.")
    if base is not None:
        check_combinations(params, base)
    return params


def check_combinations(params, base: Config):
    """Validates `base` with every combination of the params' values (floats: both ends)."""
    corners = [p.corner_values() for p in params]
    if math.prod(len(c) for c in corners) > MAX_CHECKED_COMBINATIONS:
        combinations = ({p.name: value} for p, values in zip(params, corners) for value in values)
    else:
        combinations = (
            dict(zip([p.name for p in params], combo)) for combo in itertools.product(*corners)
        )
    for combination in combinations:
        try:
            base.replace(**combination).validate()
        except ConfigError as error:
            values = ", ".join(f"{k}={v}" for k, v in combination.items())
            raise ConfigError(
                f"--search_space can produce an invalid config ({values}): {error} "
                "Narrow the space so every combination is valid."
            ) from None
