"""CMU-MOSEI from MMSA's feature pickles (`mosei/unaligned_50`, `mosei/aligned_50`)."""

from datasets import mmsa_builder


class Mosei(mmsa_builder.MmsaBuilder):
    """CMU-MOSEI: English opinion clips, sentiment in [-3, 3] (MMSA splits 16326/1871/4659)."""

    name = "mosei"
    BUILDER_CONFIGS = mmsa_builder.STOCK_CONFIGS["mosei"]
    DEFAULT_BUILDER_CONFIG_NAME = "unaligned_50"
    FAMILY = "mosei"
    TITLE = "CMU-MOSEI"
    MANUAL_DOWNLOAD_INSTRUCTIONS = mmsa_builder.manual_instructions("CMU-MOSEI", BUILDER_CONFIGS)
    CITATION = """@inproceedings{zadeh2018mosei,
    title={Multimodal Language Analysis in the Wild: {CMU-MOSEI} Dataset and Interpretable Dynamic Fusion Graph},
    author={Zadeh, AmirAli Bagher and Liang, Paul Pu and Poria, Soujanya and Cambria, Erik and Morency, Louis-Philippe},
    booktitle={Proceedings of ACL},
    pages={2236--2246},
    year={2018}
}"""
