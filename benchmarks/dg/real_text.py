"""Real cross-dataset DG on real transcripts: MOSI → MOSEI, MOSEI → MOSI, in-domain too.

Features come from `benchmarks/dg/real_text_features.py` (MiniLM-L6 token features of
the real MOSI and MOSEI transcripts with MMSA's splits). Text only (`--modalities=t`).
Each task trains MIDG, ERM and ERM + the same perturbation on the source (5 seeds,
selection on the source validation split) and scores each model once on the target's
test split and on the source's own test split (in-domain), the paper's Table 1 / Table 3
text rows. Hyper-parameters are fixed before any target is seen (README.md here).

    python benchmarks/dg/real_text.py --features_dir=/tmp/real_text

Writes benchmarks/dg/results/real_text_<tasks>.{json,md,png} (one set per `--tasks`, so the
two directions can run separately).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import tasks  # noqa: E402

# Text-only settings shared by both directions: the MOSI study's (benchmarks/results/
# mosi_real_text.md, chosen on MOSI validation), with budgets cut for CPU time before any
# target was seen: MOSI 20 epochs, patience 5; MOSEI (16 326 training clips) 6 epochs of 100
# steps (19 200 clips, 1.2 passes), patience 2.
COMMON_FLAGS = [
    "--modalities=t",
    "--batch_size=32",
    "--learning_rate=1e-3",
    "--hidden_dim=128",
    "--dropout=0.1",
]
SOURCES = {
    "mosi": ["--epochs=20", "--patience=5"],
    "mosei": ["--epochs=6", "--patience=2", "--steps_per_epoch=100"],
}


def pickle_source(features_dir, dataset):
    return f"pickle:{os.path.join(features_dir, f'{dataset}_minilm_l6_50.pkl')}@{dataset}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features_dir", default="/tmp/real_text")
    tasks.add_run_arguments(parser)
    parser.add_argument("--tasks", default="mosi,mosei", help="sources to train on")
    args = parser.parse_args()
    commit = common.git_commit_of(common.REPO)  # the code that runs, not a later one
    markdown, payload, groups = [], {}, {}
    for source in args.tasks.split(","):
        target = "mosei" if source == "mosi" else "mosi"
        titles = {
            pickle_source(args.features_dir, target): f"{source.upper()}→{target.upper()}",
            pickle_source(args.features_dir, source): f"{source.upper()} (in-domain)",
        }
        task = tasks.Task(
            name=f"{source}_text",
            flags=[
                f"--source={pickle_source(args.features_dir, source)}",
                *COMMON_FLAGS,
                *SOURCES[source],
            ],
            targets=list(titles),
            seeds=args.seeds,
        )
        results = tasks.run_task(task, args.workdir, tasks.models_to_train(args))
        payload[task.name] = results
        groups.update(tasks.accuracy_groups(results, titles))
        markdown.append(
            f"## Source {source.upper()} (text only), {results['seconds'] / 60:.1f} min\n\n"
            + tasks.task_markdown(results, titles)
        )
    payload["commit"] = commit
    text = (
        "# Real text DG: MOSI ↔ MOSEI (MiniLM-L6 token features of the real transcripts)\n\n"
        f"Command: `python benchmarks/dg/real_text.py --features_dir=<dir>` at commit "
        f"`{commit}`; seeds {args.seeds}; MOSI-family metrics, ACC = Non0_acc_2, "
        "F1 = Non0_F1_score (percent), mean ± population std; selection on the source "
        "validation split only.\n\n" + "\n".join(markdown)
    )
    name = "real_text_" + args.tasks.replace(",", "_")
    common.write_json(name, payload)
    common.plot_accuracy(name, "Real text DG (MiniLM-L6 features)", groups)
    print(common.write_markdown(name, text))
    print(text)


if __name__ == "__main__":
    main()
