"""`--mode=inspect`: what a user checks first on their own files."""

from midg_keras.constants import MODALITY_KEYS, SPLITS
from midg_keras.data.sources import Source, split_stats


def describe_source(source: Source) -> str:
    """Per split: sample count, dims, max/mean lengths, label range, fixed `-inf` values;
    then the sha256 of each input file (as `sha256sum` prints it)."""
    lines = [f"source {source.name} (label family {source.family}, scale ±{source.label_scale:g})"]
    for split in SPLITS:
        stats = split_stats(source, split)
        if not stats["examples"]:
            lines.append(f"  {split:<10} 0 examples")
            continue
        shapes = ", ".join(
            f"{key} max {stats['max_lengths'][key]} (mean {stats['mean_lengths'][key]:.1f}) "
            f"x {stats['dims'][key]}"
            for key in MODALITY_KEYS
        )
        lines.append(
            f"  {split:<10} {stats['examples']:>6} examples | {shapes} | labels "
            f"[{stats['label_min']:g}, {stats['label_max']:g}], {stats['label_zero']} zero | "
            f"-inf fixed: {stats['fixed_neg_inf']}"
        )
    lines += [f"  sha256 {digest}  {path}" for path, digest in source.input_sha256.items()]
    return "\n".join(lines)
