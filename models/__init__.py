"""Architectures built from minidp.nn, with their Hugging Face weight I/O.

    from models import load_pretrained, load_tokenizer
    model = load_pretrained(path, num_labels=2, dtype="float32", device="cpu", trainable="all")
"""
from models.hf import load_pretrained, save_pretrained
from models.roberta import EncoderConfig, SequenceClassifier, param_shapes


def load_tokenizer(path, *args, **kwargs):
    """The tokenizer of a checkpoint / tokenizer directory (minidp.data.tokenize.load_tokenizer)."""
    from minidp.data.tokenize import load_tokenizer as _load_tokenizer  # noqa: PLC0415  (lazy)

    return _load_tokenizer(path, *args, **kwargs)


__all__ = ["EncoderConfig", "SequenceClassifier", "load_pretrained", "load_tokenizer",
           "param_shapes", "save_pretrained"]
