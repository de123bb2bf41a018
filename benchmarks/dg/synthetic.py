"""Synthetic DG benchmark: train on domain_a, test once on the unseen domain_b and domain_c.

MIDG vs ERM vs ERM + the same simulated out-of-domain perturbation, 5 seeds, one
training per model and seed (selection on domain_a's validation split), each scored once
on both targets. `domain_c` is the development shift every default was chosen on;
`domain_b` is held out (benchmarks/dg/README.md says what was chosen on what).

    python benchmarks/dg/synthetic.py

Writes benchmarks/dg/results/synthetic.{json,md,png}.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import tasks  # noqa: E402

TARGETS = {
    "synthetic/domain_b": "domain_b (held out)",
    "synthetic/domain_c": "domain_c (dev)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tasks.add_run_arguments(parser)
    parser.add_argument("--extra", default="", help="flags added to the run (space-separated)")
    args = parser.parse_args()
    commit = common.git_commit_of(common.REPO)  # the code that runs, not a later one
    task = tasks.Task(
        name="synthetic_a_to_bc",
        flags=["--flagfile=configs/synthetic_demo.flags", *args.extra.split()],
        targets=list(TARGETS),
        seeds=args.seeds,
    )
    results = tasks.run_task(task, args.workdir, tasks.models_to_train(args))
    results["commit"] = commit
    text = (
        "# Synthetic DG: domain_a → domain_b (held out), domain_c (development shift)\n\n"
        f"Command: `python benchmarks/dg/synthetic.py` at commit `{results['commit']}` "
        f"({results['seconds'] / 60:.1f} min wall on 2 CPU cores). Seeds {args.seeds}; "
        "ACC = Non0_acc_2, F1 = Non0_F1_score (percent), mean ± population std; selection on "
        "domain_a validation only; each target test split scored once per model and seed.\n\n"
        + tasks.task_markdown(results, TARGETS)
    )
    common.write_json("synthetic", results)
    common.plot_accuracy(
        "synthetic", "Synthetic DG (source domain_a)", tasks.accuracy_groups(results, TARGETS)
    )
    print(common.write_markdown("synthetic", text))
    print(text)


if __name__ == "__main__":
    main()
