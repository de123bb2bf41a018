"""CMU-MOSI from MMSA's feature pickles (`mosi/unaligned_50`, `mosi/aligned_50`)."""

from datasets import mmsa_builder


class Mosi(mmsa_builder.MmsaBuilder):
    """CMU-MOSI: 2,199 English opinion clips, sentiment in [-3, 3] (splits 1284/229/686)."""

    name = "mosi"
    BUILDER_CONFIGS = mmsa_builder.STOCK_CONFIGS["mosi"]
    DEFAULT_BUILDER_CONFIG_NAME = "unaligned_50"
    FAMILY = "mosi"
    TITLE = "CMU-MOSI"
    MANUAL_DOWNLOAD_INSTRUCTIONS = mmsa_builder.manual_instructions("CMU-MOSI", BUILDER_CONFIGS)
    CITATION = """@article{zadeh2016mosi,
    title={Multimodal Sentiment Intensity Analysis in Videos: Facial Gestures and Verbal Messages},
    author={Zadeh, Amir and Zellers, Rowan and Pincus, Eli and Morency, Louis-Philippe},
    journal={IEEE Intelligent Systems},
    volume={31},
    number={6},
    pages={82--88},
    year={2016}
}"""
