"""CH-SIMS from MMSA's feature pickle (`sims/unaligned_39`), with unimodal labels."""

from datasets import mmsa_builder


class Sims(mmsa_builder.MmsaBuilder):
    """CH-SIMS: 2,281 Chinese clips, labels in [-1, 1] plus T/A/V labels (1368/456/457)."""

    name = "sims"
    BUILDER_CONFIGS = mmsa_builder.STOCK_CONFIGS["sims"]
    DEFAULT_BUILDER_CONFIG_NAME = "unaligned_39"
    FAMILY = "sims"
    TITLE = "CH-SIMS"
    MANUAL_DOWNLOAD_INSTRUCTIONS = mmsa_builder.manual_instructions("CH-SIMS", BUILDER_CONFIGS)
    CITATION = """@inproceedings{yu2020chsims,
    title={{CH-SIMS}: A {Chinese} Multimodal Sentiment Analysis Dataset with Fine-grained Annotation of Modality},
    author={Yu, Wenmeng and Xu, Hua and Meng, Fanyang and Zhu, Yilin and Ma, Yixiao and Wu, Jiele and Zou, Jiyun and Yang, Kaicheng},
    booktitle={Proceedings of ACL},
    pages={3718--3727},
    year={2020}
}"""
