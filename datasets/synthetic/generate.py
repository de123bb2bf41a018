"""Generator of the synthetic multi-domain sentiment data, in the MMSA pickle layout.

Every domain shares one latent sentiment per clip (the label, MOSI scale [-3, 3]) and
the same directions in feature space that express it: strongly in text, weaker in
audio and vision, and only at some time steps, so a model has to look across the
sequence. Domains differ by covariate shift (feature offsets and scales, sequence
length ranges) and by a spurious vision channel: in `domain_a` it is a clean copy of
the label, in `domain_b` pure noise, in `domain_c` anti-correlated with the label.
A model trained on `domain_a` that leans on that channel loses accuracy on the
others, which makes domain generalization measurable in seconds.

The output of `generate_domain` is a raw MMSA dict (`train`/`valid`/`test`, each with
`raw_text`, `id`, `text`, `text_bert`, `audio`, `vision`, `audio_lengths`,
`vision_lengths`, `annotations`, `classification_labels`, `regression_labels`), so it
can be written as a pickle and read back through the real loader.
"""

import dataclasses
import os
import pickle
import tempfile

import numpy as np

from midg_keras.constants import FILE_SPLITS

DEFAULT_SEED = 0

# (max length, feature dim) per modality: MOSI-like layout, small enough for CPU demos.
TEXT_SHAPE = (24, 32)
AUDIO_SHAPE = (60, 8)
VISION_SHAPE = (40, 12)
SPLIT_SIZES = {"train": 600, "valid": 150, "test": 300}
CLIPS_PER_VIDEO = 6
LABEL_STEP = 0.2  # MOSI labels are annotator averages: use a 0.2 grid.
ZERO_LABEL_FRACTION = 0.05  # Share of exactly neutral clips.
NEG_INF_RATE = 0.002  # COVAREP audio has occasional -inf; MMSA maps them to 0.
SPURIOUS_CHANNEL = VISION_SHAPE[1] - 1

_POSITIVE_WORDS = np.array(["great", "love", "good", "funny", "amazing", "enjoyed"])
_NEGATIVE_WORDS = np.array(["bad", "boring", "hate", "awful", "dull", "worst"])
_NEUTRAL_WORDS = np.array(
    ["the", "movie", "was", "it", "and", "plot", "really", "i", "think", "actor"]
)


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """How one domain departs from the shared generative process.

    Attributes:
        index: position of the domain, mixed into its random seed.
        letter: short tag used in clip ids (`synth_<letter>_0012$_$3`).
        spurious_sign: +1 the spurious vision channel copies the label, -1 it copies the
            negated label, 0 it is label-independent noise.
        shift: size of the per-domain mean offset added to every feature.
        scale: multiplicative scale applied to every feature.
        text_lengths, audio_lengths, vision_lengths: inclusive (low, high) ranges of
            true sequence lengths.
        description: one line for the TFDS config.
    """

    index: int
    letter: str
    spurious_sign: float
    shift: float
    scale: float
    text_lengths: tuple[int, int]
    audio_lengths: tuple[int, int]
    vision_lengths: tuple[int, int]
    description: str


DOMAINS = {
    "domain_a": DomainSpec(
        index=0,
        letter="a",
        spurious_sign=1.0,
        shift=0.0,
        scale=1.0,
        text_lengths=(14, 24),
        audio_lengths=(40, 60),
        vision_lengths=(28, 40),
        description="Source-like domain: long sequences; vision channel 11 leaks "
        "the label (spurious).",
    ),
    "domain_b": DomainSpec(
        index=1,
        letter="b",
        spurious_sign=0.0,
        shift=0.6,
        scale=1.4,
        text_lengths=(5, 14),
        audio_lengths=(12, 36),
        vision_lengths=(8, 24),
        description="Shifted domain: short sequences, offset and wider features; "
        "vision channel 11 is noise.",
    ),
    "domain_c": DomainSpec(
        index=2,
        letter="c",
        spurious_sign=-1.0,
        shift=-0.6,
        scale=0.7,
        text_lengths=(8, 20),
        audio_lengths=(24, 50),
        vision_lengths=(16, 34),
        description="Shifted domain: medium sequences, negative offset, narrower "
        "features; vision channel 11 anti-correlates with the label.",
    ),
}


def _unit(rng, dim):
    vector = rng.normal(size=dim)
    return vector / np.linalg.norm(vector)


def shared_directions(seed):
    """Sentiment directions common to all domains (the invariant signal)."""
    rng = np.random.default_rng([seed, 1_000])
    vision = np.zeros(VISION_SHAPE[1])
    vision[:SPURIOUS_CHANNEL] = _unit(rng, SPURIOUS_CHANNEL)
    return _unit(rng, TEXT_SHAPE[1]), _unit(rng, AUDIO_SHAPE[1]), vision


def _labels(rng, n):
    latent = np.clip(rng.normal(0.2, 1.4, size=n), -3.0, 3.0)
    latent[rng.random(n) < ZERO_LABEL_FRACTION] = 0.0
    return (np.round(latent / LABEL_STEP) * LABEL_STEP).astype(np.float32)


def _lengths(rng, n, bounds):
    low, high = bounds
    return rng.integers(low, high + 1, size=n)


def _valid_mask(lengths, max_len):
    return np.arange(max_len)[None, :] < lengths[:, None]


def _window_mask(rng, lengths, max_len, fraction):
    """A contiguous window covering `fraction` of each sequence, at a random place."""
    width = np.maximum(1, np.round(lengths * fraction)).astype(int)
    start = (rng.random(len(lengths)) * (lengths - width + 1)).astype(int)
    steps = np.arange(max_len)[None, :]
    return (steps >= start[:, None]) & (steps < (start + width)[:, None])


def _modality(rng, lengths, shape, direction, labels, where, strength, spec, offset):
    """Noise plus `strength * label/3` along `direction` at `where`, domain-shifted."""
    max_len, dim = shape
    valid = _valid_mask(lengths, max_len)
    noise = rng.normal(size=(len(lengths), max_len, dim))
    signal = (where & valid)[..., None] * (labels / 3.0)[:, None, None] * direction
    features = (noise + strength * signal) * spec.scale + offset
    return np.where(valid[..., None], features, 0.0).astype(np.float32), valid


def _raw_text(rng, labels, sentiment_tokens, text_lengths):
    """A few words per clip; sentiment words sit where the text signal is."""
    n, max_len = sentiment_tokens.shape
    polar = np.where(labels[:, None] > 0, 1, np.where(labels[:, None] < 0, -1, 0))
    pick = rng.integers(0, 1 << 16, size=(n, max_len))
    words = np.where(
        sentiment_tokens & (polar > 0),
        _POSITIVE_WORDS[pick % len(_POSITIVE_WORDS)],
        np.where(
            sentiment_tokens & (polar < 0),
            _NEGATIVE_WORDS[pick % len(_NEGATIVE_WORDS)],
            _NEUTRAL_WORDS[pick % len(_NEUTRAL_WORDS)],
        ),
    )
    # Positions 0 and length-1 are [CLS] and [SEP]; words fill the ones between.
    return np.array(
        [" ".join(row[1 : max(2, length - 1)]) for row, length in zip(words, text_lengths)],
        dtype=object,
    )


def _text_bert(rng, text_lengths):
    """(N, 3, L) BERT inputs as MMSA stores them: token ids, attention mask, segments."""
    n, max_len = len(text_lengths), TEXT_SHAPE[0]
    valid = _valid_mask(text_lengths, max_len)
    ids = rng.integers(1_000, 30_000, size=(n, max_len)).astype(np.float32)
    ids[:, 0] = 101.0
    ids[np.arange(n), text_lengths - 1] = 102.0
    ids = np.where(valid, ids, 0.0)
    return np.stack([ids, valid.astype(np.float32), np.zeros_like(ids)], axis=1)


def _split(rng, spec, directions, offsets, n, first_video):
    text_dir, audio_dir, vision_dir = directions
    labels = _labels(rng, n)
    text_lengths = _lengths(rng, n, spec.text_lengths)
    audio_lengths = _lengths(rng, n, spec.audio_lengths)
    vision_lengths = _lengths(rng, n, spec.vision_lengths)

    # Text: about a third of the word positions (not [CLS]/[SEP]) carry sentiment.
    steps = np.arange(TEXT_SHAPE[0])[None, :]
    inner = (steps >= 1) & (steps < (text_lengths - 1)[:, None])
    sentiment_tokens = inner & (rng.random((n, TEXT_SHAPE[0])) < 0.35)
    text, _ = _modality(
        rng,
        text_lengths,
        TEXT_SHAPE,
        text_dir,
        labels,
        sentiment_tokens,
        2.5,
        spec,
        offsets[0],
    )
    audio, audio_valid = _modality(
        rng,
        audio_lengths,
        AUDIO_SHAPE,
        audio_dir,
        labels,
        _window_mask(rng, audio_lengths, AUDIO_SHAPE[0], 0.3),
        1.2,
        spec,
        offsets[1],
    )
    audio[audio_valid & (rng.random(audio_valid.shape) < NEG_INF_RATE), 0] = -np.inf
    vision, vision_valid = _modality(
        rng,
        vision_lengths,
        VISION_SHAPE,
        vision_dir,
        labels,
        _window_mask(rng, vision_lengths, VISION_SHAPE[0], 0.4),
        1.0,
        spec,
        offsets[2],
    )
    # The spurious channel: per clip a near-copy of label/3 (or of noise), held over time.
    if spec.spurious_sign:
        leak = spec.spurious_sign * labels / 3.0 + rng.normal(0.0, 0.25, size=n)
    else:
        leak = rng.normal(0.0, 0.5, size=n)
    jitter = rng.normal(0.0, 0.05, size=vision_valid.shape)
    vision[..., SPURIOUS_CHANNEL] = np.where(vision_valid, leak[:, None] + jitter, 0.0).astype(
        np.float32
    )

    videos = first_video + np.arange(n) // CLIPS_PER_VIDEO
    clips = np.arange(n) % CLIPS_PER_VIDEO + 1
    ids = np.array(
        [f"synth_{spec.letter}_{video:04d}$_${clip}" for video, clip in zip(videos, clips)],
        dtype=object,
    )
    polarity = np.sign(labels).astype(int)
    return {
        "raw_text": _raw_text(rng, labels, sentiment_tokens, text_lengths),
        "audio": audio,
        "vision": vision,
        "id": ids,
        "text": text,
        "text_bert": _text_bert(rng, text_lengths),
        "audio_lengths": audio_lengths.tolist(),
        "vision_lengths": vision_lengths.tolist(),
        "annotations": np.array(["Negative", "Neutral", "Positive"], dtype=object)[polarity + 1],
        "classification_labels": (polarity + 1).astype(np.float32),
        "regression_labels": labels,
    }


def generate_domain(name, seed=DEFAULT_SEED, sizes=None):
    """Generates one synthetic domain as a raw MMSA dict.

    Args:
        name: a key of `DOMAINS` ("domain_a", "domain_b", "domain_c").
        seed: integer seed; the same (name, seed) always gives the same arrays. The
            sentiment directions depend on `seed` only, so all domains generated with
            one seed share the true signal.
        sizes: optional {"train", "valid", "test"} -> number of clips; defaults to
            `SPLIT_SIZES`.

    Returns:
        {"train", "valid", "test"} -> dict of MMSA keys (unaligned layout).

    Example:
        >>> data = generate_domain("domain_b")
        >>> data["train"]["audio"].shape
        (600, 60, 8)
    """
    if name not in DOMAINS:
        raise ValueError(f"Unknown synthetic domain {name!r}; choose one of {sorted(DOMAINS)}.")
    spec = DOMAINS[name]
    sizes = dict(SPLIT_SIZES if sizes is None else sizes)
    directions = shared_directions(seed)
    rng = np.random.default_rng([seed, spec.index])
    offsets = [
        spec.shift * rng.normal(size=dim)
        for dim in (TEXT_SHAPE[1], AUDIO_SHAPE[1], VISION_SHAPE[1])
    ]
    data, first_video = {}, 0
    for split in FILE_SPLITS:
        data[split] = _split(rng, spec, directions, offsets, sizes[split], first_video)
        first_video += -(-sizes[split] // CLIPS_PER_VIDEO)
    return data


def write_domain_pickle(path, name, seed=DEFAULT_SEED, sizes=None):
    """Writes one domain as an MMSA feature pickle (readable by `load_mmsa_pickle`)."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(
            generate_domain(name, seed=seed, sizes=sizes), f, protocol=pickle.HIGHEST_PROTOCOL
        )
    return path


def generate_splits(name, seed=DEFAULT_SEED, sizes=None):
    """One domain read back through the MMSA loader, as the real datasets are.

    Returns:
        {"train", "validation", "test"} -> `SplitArrays` (validated, -inf counted).
    """
    from midg_keras.data.mmsa import load_mmsa_pickle

    with tempfile.TemporaryDirectory(prefix="midg_synthetic_") as tmp:
        path = write_domain_pickle(os.path.join(tmp, f"{name}.pkl"), name, seed=seed, sizes=sizes)
        return load_mmsa_pickle(path, family="mosi")
