"""Generated MMSA feature files in the exact layouts of the real ones.

The real feature pickles (thuiar/MMSA, MMSA-FET) are hosted off GitHub, so loaders,
TFDS builders and the CLI are tested on files that copy their layout: the same keys,
dtypes, ranks, id format (`"<video>$_$<clip>"`), `text_bert` rows (input ids,
attention mask, segment ids), zero padding after the true lengths, `audio_lengths` /
`vision_lengths` as Python lists (stock unaligned files) or arrays (MMSA-FET), and the
`-inf` values that COVAREP leaves in MOSI audio. Only the values are random, and the
sizes are small by default (pass `dims=STOCK_DIMS[layout]`, `lengths=STOCK_LENGTHS[layout]`
for the real shapes).
"""

import os
import pickle

import numpy as np

LAYOUTS = (
    "mosi_unaligned",
    "mosi_aligned",
    "mosei_unaligned",
    "mosei_aligned",
    "sims_unaligned",
    "mmsa_fet",
)
MODALITIES = ("text", "audio", "vision")

# Feature dims and padded sequence lengths of the stock MMSA files (docs/design.md §3.1).
STOCK_DIMS = {
    "mosi_unaligned": {"text": 768, "audio": 5, "vision": 20},
    "mosi_aligned": {"text": 768, "audio": 5, "vision": 20},
    "mosei_unaligned": {"text": 768, "audio": 74, "vision": 35},
    "mosei_aligned": {"text": 768, "audio": 74, "vision": 35},
    "sims_unaligned": {"text": 768, "audio": 33, "vision": 709},
}
STOCK_LENGTHS = {
    "mosi_unaligned": {"text": 50, "audio": 375, "vision": 500},
    "mosi_aligned": {"text": 50, "audio": 50, "vision": 50},
    "mosei_unaligned": {"text": 50, "audio": 500, "vision": 500},
    "mosei_aligned": {"text": 50, "audio": 50, "vision": 50},
    "sims_unaligned": {"text": 39, "audio": 400, "vision": 55},
}
STOCK_SIZES = {
    "mosi": (1284, 229, 686),
    "mosei": (16326, 1871, 4659),
    "sims": (1368, 456, 457),
}

# Small defaults so tests run in milliseconds; audio/vision dims stay stock where small.
_SMALL_DIMS = {
    "mosi_unaligned": {"text": 16, "audio": 5, "vision": 20},
    "mosi_aligned": {"text": 16, "audio": 5, "vision": 20},
    "mosei_unaligned": {"text": 16, "audio": 74, "vision": 35},
    "mosei_aligned": {"text": 16, "audio": 74, "vision": 35},
    "sims_unaligned": {"text": 16, "audio": 33, "vision": 24},
    "mmsa_fet": {"text": 16, "audio": 12, "vision": 10},
}
_SMALL_LENGTHS = {
    "mosi_unaligned": {"text": 8, "audio": 12, "vision": 16},
    "mosi_aligned": {"text": 8, "audio": 8, "vision": 8},
    "mosei_unaligned": {"text": 8, "audio": 16, "vision": 16},
    "mosei_aligned": {"text": 8, "audio": 8, "vision": 8},
    "sims_unaligned": {"text": 7, "audio": 16, "vision": 6},
    "mmsa_fet": {"text": 8, "audio": 10, "vision": 12},
}
_FILE_SPLITS = ("train", "valid", "test")
_WORDS = "i really liked this movie but the ending was sad and a bit too long".split()
_HANZI = "我觉得这个电影真的很好看但是结局有点难过"
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
# The configuration MMSA-FET stores next to its features.
_FET_CONFIG = {
    "audio": {"tool": "librosa", "sample_rate": 16000, "args": {"mfcc": {"n_mfcc": 12}}},
    "video": {"tool": "openface", "fps": 25, "average_over": 3, "args": {"action_units": True}},
    "text": {"model": "bert", "device": "cpu", "pretrained": "bert-base-uncased"},
}


def make_fake_mmsa(layout, sizes=(8, 4, 4), seed=0, dims=None, lengths=None):
    """Builds a raw MMSA feature dict (what `pickle.load` returns for a real file).

    Args:
        layout: one of `LAYOUTS`. `mosi_*`/`mosei_*`/`sims_unaligned` copy the stock MMSA
            files (`Processed/aligned_50.pkl`, `unaligned_50.pkl`, `unaligned_39.pkl`);
            `mmsa_fet` copies MMSA-FET output: a top-level `config` key, float64 features,
            length arrays, no `classification_labels`, MOSI-scale labels.
        sizes: samples in `train`, `valid`, `test`.
        seed: seed of the generator; equal arguments give equal files.
        dims: modality (`text`, `audio`, `vision`) -> feature dim, overriding the small
            defaults (e.g. `STOCK_DIMS[layout]`).
        lengths: modality -> padded sequence length, overriding the small defaults.
            Aligned layouts default audio and vision to the text length.

    Returns:
        `{"train": {...}, "valid": {...}, "test": {...}}` (plus `config` for `mmsa_fet`).

    Example:
        >>> raw = make_fake_mmsa("mosi_unaligned", sizes=(4, 2, 2))
        >>> raw["train"]["audio"].shape, len(raw["train"]["audio_lengths"])
        ((4, 12, 5), 4)
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"sizes must be three positive sample counts, got {sizes!r}")
    dims = {**_SMALL_DIMS[layout], **(dims or {})}
    seq = dict(_SMALL_LENGTHS[layout])
    if "aligned" in layout and "unaligned" not in layout and lengths and "text" in lengths:
        seq.update(audio=lengths["text"], vision=lengths["text"])
    seq.update(lengths or {})
    rng = np.random.default_rng(seed)
    raw = {}
    first_video = 0
    for split, n in zip(_FILE_SPLITS, sizes):
        raw[split] = _make_split(layout, n, dims, seq, rng, first_video)
        first_video += n
    if layout == "mmsa_fet":
        raw["config"] = {key: dict(value) for key, value in _FET_CONFIG.items()}
    return raw


def write_pickle(obj, path):
    """Writes `obj` as MMSA does (plain pickle, highest protocol); returns the path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _make_split(layout, n, dims, seq, rng, first_video):
    family = layout.split("_")[0]
    aligned = "aligned" in layout and "unaligned" not in layout
    fet = layout == "mmsa_fet"
    feature_dtype = np.float64 if fet else np.float32

    ids, raw_text = _make_ids_and_text(family, n, rng, first_video)
    text_length = _random_lengths(rng, n, seq["text"], low=min(2, seq["text"]))
    text_bert = _make_text_bert(rng, text_length, seq["text"], feature_dtype)
    # BERT outputs exist at padded positions too, so text is dense.
    text = rng.normal(size=(n, seq["text"], dims["text"])).astype(feature_dtype)

    modality_lengths = {}
    features = {}
    for modality in ("audio", "vision"):
        if aligned and seq[modality] == seq["text"]:
            length = text_length
        else:
            length = _random_lengths(rng, n, seq[modality], low=1)
        values = rng.normal(size=(n, seq[modality], dims[modality]))
        if modality == "vision":
            values = np.abs(values)  # Facet / OpenFace intensities are non-negative.
        values[np.arange(seq[modality])[None, :] >= length[:, None]] = 0.0
        features[modality] = values.astype(feature_dtype)
        modality_lengths[modality] = length
    if family == "mosi":
        _add_neg_inf(rng, features["audio"], modality_lengths["audio"])

    bound = 1.0 if family == "sims" else 3.0
    label = _random_labels(rng, n, bound)
    split = {
        "id": np.array(ids, dtype=object),
        "raw_text": np.array(raw_text, dtype=object),
        "audio": features["audio"],
        "vision": features["vision"],
        "text": text,
        "text_bert": text_bert,
    }
    if not aligned:
        split["audio_lengths"] = [int(x) for x in modality_lengths["audio"]]
        split["vision_lengths"] = [int(x) for x in modality_lengths["vision"]]
    split["annotations"] = np.array(
        [("Negative", "Neutral", "Positive")[int(np.sign(y)) + 1] for y in label], dtype=object
    )
    if fet:
        # MMSA-FET builds every key with np.array(list): unicode ids, int lengths,
        # float64 labels; it no longer writes classification_labels.
        split["id"] = np.array(ids)
        split["raw_text"] = np.array(raw_text)
        split["annotations"] = split["annotations"].astype(str)
        split["audio_lengths"] = np.array(split["audio_lengths"])
        split["vision_lengths"] = np.array(split["vision_lengths"])
        split["regression_labels"] = label.astype(np.float64)
    else:
        split["classification_labels"] = (np.sign(label) + 1).astype(np.float32)
        split["regression_labels"] = label
    if family == "sims":
        for letter in "TAV":
            noise = rng.integers(-1, 2, size=n) * 0.2
            unimodal = np.clip(np.round((label + noise) * 5) / 5, -1.0, 1.0)
            split[f"regression_labels_{letter}"] = unimodal.astype(np.float32)
    return split


def _make_ids_and_text(family, n, rng, first_video):
    ids, texts = [], []
    clips_per_video = 3
    for i in range(n):
        video_number = first_video + i // clips_per_video
        clip = i % clips_per_video + 1
        if family == "sims":
            ids.append(f"video_{video_number + 1:04d}$_${clip:04d}")
            texts.append("".join(rng.choice(list(_HANZI), size=int(rng.integers(4, 12)))))
        else:
            video = "".join(np.random.default_rng(video_number).choice(list(_ID_CHARS), 11))
            ids.append(f"{video}$_${clip}")
            texts.append(" ".join(rng.choice(_WORDS, size=int(rng.integers(2, 9)))))
    return ids, texts


def _random_lengths(rng, n, maximum, low):
    """True lengths in [low, maximum]; the first sample always fills the padding."""
    length = rng.integers(max(low, (maximum + 1) // 2), maximum + 1, size=n)
    length[0] = maximum
    return length.astype(np.int64)


def _make_text_bert(rng, text_length, max_length, dtype):
    """(N, 3, L): token ids ([CLS] ... [SEP], 0 padding), attention mask, segment ids."""
    n = len(text_length)
    positions = np.arange(max_length)[None, :]
    mask = (positions < text_length[:, None]).astype(dtype)
    token_ids = rng.integers(1000, 30000, size=(n, max_length)).astype(dtype)
    token_ids[:, 0] = 101
    token_ids[np.arange(n), text_length - 1] = 102
    token_ids[mask == 0] = 0
    segment_ids = np.zeros((n, max_length), dtype=dtype)
    return np.stack([token_ids, mask, segment_ids], axis=1)


def _add_neg_inf(rng, audio, audio_length):
    """COVAREP writes -inf for some frames of MOSI audio (MMSA's loader zeroes them)."""
    n, _, dim = audio.shape
    for i in range(0, n, 2):
        frame = rng.integers(0, audio_length[i])
        audio[i, frame, rng.integers(0, dim)] = -np.inf


def _random_labels(rng, n, bound):
    """Averaged annotator scores: multiples of 0.2 within [-bound, bound]."""
    steps = int(round(bound * 5))
    return (rng.integers(-steps, steps + 1, size=n) / 5.0).astype(np.float32)
