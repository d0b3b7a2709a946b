"""Data: sources (one module per format, ``data/sources``) and mixtures (``data/mixture.py``), LLaVA-format
conversations, the synthetic task generator, conversation templates, tokenisation with label masking,
problem-sample policies, image policies, collation, the streaming loader (``data/loader.py``)."""

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
from eaglesearch.data.llava import DataProblem, Sample, read_llava_json, read_llava_records
from eaglesearch.data.loader import BatchStream, batches
from eaglesearch.data.policy import (
    DataReport,
    EncodedSample,
    load_training_samples,
    prepare_training_samples,
    read_training_samples,
)
from eaglesearch.data.synthetic import SyntheticDataset, write_synthetic
from eaglesearch.data.templates import TEMPLATES, ChatTemplate, get_template

__all__ = [
    "IGNORE_INDEX", "TEMPLATES", "BatchStream", "ChatTemplate", "DataProblem", "DataReport", "EncodedSample",
    "EvalBatchItem", "Sample", "SyntheticDataset", "TrainDataset", "batches", "build_eval_items", "collate_prompts",
    "collate_train",
    "encode_for_training", "encode_prompt", "get_template", "load_image", "load_training_samples",
    "prepare_training_samples", "read_llava_json", "read_llava_records", "read_training_samples",
    "reference_answer", "training_corpus", "write_synthetic",
]
