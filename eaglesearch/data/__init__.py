"""Data: LLaVA-format conversations, the synthetic task generator, tokenisation with label masking, collation."""

from eaglesearch.data.conversation import (
    IGNORE_INDEX,
    encode_for_training,
    encode_prompt,
    reference_answer,
    training_corpus,
)
from eaglesearch.data.dataset import (
    EvalBatchItem,
    TrainDataset,
    build_eval_items,
    collate_prompts,
    collate_train,
    load_image,
)
from eaglesearch.data.llava import Sample, read_llava_json
from eaglesearch.data.synthetic import SyntheticDataset, write_synthetic

__all__ = [
    "IGNORE_INDEX", "EvalBatchItem", "Sample", "SyntheticDataset", "TrainDataset", "build_eval_items",
    "collate_prompts", "collate_train", "encode_for_training", "encode_prompt", "load_image", "read_llava_json",
    "reference_answer", "training_corpus", "write_synthetic",
]
