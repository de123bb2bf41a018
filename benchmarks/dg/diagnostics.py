"""Which parts of MIDG move the served prediction? Ablations on the demo's DG task.

Trains the demo task (`configs/synthetic_demo.flags`: synthetic domain_a -> domain_b) once
per variant below, same seeds, and tabulates the served target numbers (mean ± std and
per seed). No choice is made from these numbers: the issue asks for them as a picture of
what each part contributes (`before` = the code before the simulated out-of-domain stream).

    python benchmarks/dg/diagnostics.py --tag=after                      # this checkout
    python benchmarks/dg/diagnostics.py --tag=before --variants=before --repo=<checkout at dbb7898>

Writes benchmarks/dg/results/diagnostics_<tag>.{json,md}.
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

# The first build (symmetric streams, adversary inside the experts): what moves ŷ2?
VARIANTS_BEFORE = {
    "MIDG (defaults, serves ŷ2)": [],
    "MIDG --inference_path=in (ŷ1)": ["--inference_path=in"],
    "MIDG --inference_path=blend": ["--inference_path=blend"],
    "MIDG --use_moie=false": ["--use_moie=false"],
    "MIDG --adv_weight=0": ["--adv_weight=0"],
    "MIDG --use_decoupling=false": ["--use_decoupling=false"],
    "ERM (late fusion)": ["--model=erm"],
}
# The simulated out-of-domain stream: which part helps (the choices were made on domain_c).
NO_SHIFT = ["--shift_crop=0", "--shift_frame_drop=0", "--shift_channel_drop=0", "--shift_stats=0"]
VARIANTS_AFTER = {
    "MIDG (defaults)": [],
    "MIDG + adversary --adv_weight=0.1": ["--adv_weight=0.1"],
    "MIDG + consistency (to_shifted, weight 1)": ["--consistency_weight=1"],
    "MIDG without simulated shift (strengths 0)": NO_SHIFT,
    "MIDG --use_decoupling=false": ["--use_decoupling=false"],
    "MIDG --use_cm_adapter=false": ["--use_cm_adapter=false"],
}
TARGETS = ("synthetic/domain_b", "synthetic/domain_c")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="after")
    parser.add_argument("--repo", default=common.REPO, help="checkout whose train.py runs")
    parser.add_argument("--seeds", default="1111,1112,1113")
    parser.add_argument("--workdir", default="/tmp/midg_dg/diagnostics")
    parser.add_argument("--extra", default="", help="flags added to every variant")
    parser.add_argument("--variants", default="after", choices=("before", "after"))
    args = parser.parse_args()
    commit = common.git_commit_of(args.repo)  # the code that runs, not a later one
    rows, payload = [], {"tag": args.tag, "seeds": args.seeds, "variants": {}}
    variants = VARIANTS_BEFORE if args.variants == "before" else VARIANTS_AFTER
    for title, flags in variants.items():
        slug = "".join(c if c.isalnum() else "_" for c in title)[:48]
        workdir = os.path.join(args.workdir, args.tag, slug)
        run_args = [
            "--flagfile=configs/synthetic_demo.flags",
            "--baselines=",
            f"--seeds={args.seeds}",
            f"--workdir={workdir}",
            "--verbose=0",
            *flags,
            *args.extra.split(),
        ]
        # A rerun of a tag starts afresh; --overwrite would do it, but --repo may predate it.
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        seconds = common.run_train(run_args, os.path.join(workdir, "train.log"), repo=args.repo)
        per_seed = common.per_seed_metrics(workdir)
        # The first build's runs have one target and no `test_by_target`.
        scored = next(iter(per_seed.values())).get("test_by_target", {})
        targets = [t for t in TARGETS if t in scored]
        record = {"flags": flags, "seconds": seconds}
        cells = []
        for target in targets or [None]:
            acc = {s: common.test_metrics(m, target)["Non0_acc_2"] for s, m in per_seed.items()}
            mae = {s: common.test_metrics(m, target)["MAE"] for s, m in per_seed.items()}
            record[target or "test"] = {"acc": acc, "mae": mae}
            (am, asd), (mm, msd) = common.mean_std(acc.values()), common.mean_std(mae.values())
            per = " ".join(f"{100 * acc[s]:.1f}" for s in sorted(acc))
            cells.append(f"{100 * am:.2f} ± {100 * asd:.2f} | {mm:.4f} ± {msd:.4f} | {per}")
        valid_mae = {s: m["valid"]["MAE"] for s, m in per_seed.items()}
        record["valid_mae"] = valid_mae
        payload["variants"][title] = record
        columns = [t.split("/")[-1] for t in targets] or ["domain_b"]
        rows.append(
            f"| {title} | {common.mean_std(valid_mae.values())[0]:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    text = (
        f"# Diagnostics ({args.tag}): what moves MIDG's served prediction\n\n"
        f"Demo task synthetic/domain_a → domain_b, seeds {args.seeds}, code at commit "
        f"`{commit}`; command: `python benchmarks/dg/diagnostics.py --tag={args.tag}"
        f"{' --repo=<checkout at ' + commit + '>' if args.repo != common.REPO else ''}`.\n"
        "ACC = Non0_acc_2 on each target's test split (percent), selection on domain_a "
        "validation only. No choice was made from domain_b; choices were made on domain_c "
        "(benchmarks/dg/README.md).\n\n"
        "| variant | source valid MAE | "
        + " | ".join(f"{c} ACC | {c} MAE | {c} ACC per seed" for c in columns)
        + " |\n|---|---:|"
        + "---:|---:|---|" * len(columns)
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    payload["commit"] = commit
    common.write_json(f"diagnostics_{args.tag}", payload)
    print(common.write_markdown(f"diagnostics_{args.tag}", text))
    print(text)


if __name__ == "__main__":
    main()
