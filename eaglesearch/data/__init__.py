"""Data: sources (one module per format, ``data/sources``) and mixtures (``data/mixture.py``), LLaVA-format
conversations, the synthetic task generator, conversation templates, tokenisation with label masking,
problem-sample policies, image policies, collation, the streaming loader (``data/loader.py``).

The names below are imported on first access, so a process that only checks a spec (``eaglesearch validate``) does
not load torch or transformers through this package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "BatchStream": "loader", "ChatTemplate": "templates", "DataProblem": "llava", "DataReport": "policy",
    "EncodedSample": "policy", "EvalBatchItem": "dataset", "IGNORE_INDEX": "conversation", "Sample": "llava",
    "SyntheticDataset": "synthetic", "TEMPLATES": "templates", "TrainDataset": "dataset", "batches": "loader",
    "build_eval_items": "dataset", "collate_prompts": "dataset", "collate_train": "dataset",
    "encode_for_training": "conversation", "encode_prompt": "conversation", "get_template": "templates",
    "load_image": "dataset", "load_training_samples": "policy", "prepare_training_samples": "policy",
    "read_llava_json": "llava", "read_llava_records": "llava", "read_training_samples": "policy",
    "reference_answer": "conversation", "training_corpus": "conversation", "write_synthetic": "synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"eaglesearch.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IGNORE_INDEX", "TEMPLATES", "BatchStream", "ChatTemplate", "DataProblem", "DataReport", "EncodedSample",
    "EvalBatchItem", "Sample", "SyntheticDataset", "TrainDataset", "batches", "build_eval_items", "collate_prompts",
    "collate_train",
    "encode_for_training", "encode_prompt", "get_template", "load_image", "load_training_samples",
    "prepare_training_samples", "read_llava_json", "read_llava_records", "read_training_samples",
    "reference_answer", "training_corpus", "write_synthetic",
]
