"""The special tokens every eaglesearch tokenizer has (``tokenizer.py`` explains the conventions), declared without
importing ``tokenizers``/``transformers`` so that templates and checks can name them cheaply."""

from __future__ import annotations

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<|pad|>"
END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, END_OF_TEXT, IM_START, IM_END, IMAGE_TOKEN)
