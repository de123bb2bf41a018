"""The `synthetic` TFDS builder: the embedded default dataset, generated, no files.

Configs are domains (`synthetic/domain_a`, `domain_b`, `domain_c`) of one generative
process (see `datasets.synthetic.generate`): they share the true sentiment signal and
differ by covariate shift and by a vision channel that predicts the label in
`domain_a` only. Train on one domain and test on another to measure domain
generalization.
"""

import dataclasses

import tensorflow_datasets as tfds

from datasets import mmsa_builder
from datasets.synthetic import generate
from midg_keras.constants import SPLITS


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    """One synthetic domain.

    Attributes:
        seed: generator seed; all domains built with one seed share the sentiment signal.
    """

    seed: int = generate.DEFAULT_SEED


class Synthetic(tfds.core.GeneratorBasedBuilder):
    """MOSI-like synthetic clips (labels in [-3, 3]) in several shifted domains."""

    name = "synthetic"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: domain_a, domain_b, domain_c."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name=name, description=spec.description)
        for name, spec in generate.DOMAINS.items()
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "domain_a"

    def _info(self):
        return self.dataset_info_from_configs(
            description=(
                "Synthetic multimodal sentiment data in the MMSA layout (text, audio, vision "
                "sequences of variable length, MOSI label scale). Domains share the latent "
                "sentiment and differ by covariate shift and a spurious vision channel."
            ),
            features=mmsa_builder.features_dict(
                {
                    "text": generate.TEXT_SHAPE[1],
                    "audio": generate.AUDIO_SHAPE[1],
                    "vision": generate.VISION_SHAPE[1],
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        config = self.builder_config
        splits = generate.generate_splits(config.name, seed=config.seed)
        mmsa_builder.record_split_statistics(self.info.metadata, splits)
        return {name: self._generate_examples(splits[name]) for name in SPLITS}

    def _generate_examples(self, split_arrays):
        return mmsa_builder.keyed_examples(split_arrays)
