"""Architectures built from minidp.nn, with their Hugging Face weight I/O.

    from models import load_pretrained, load_tokenizer
    model = load_pretrained(path, num_labels=2, dtype="float32", device=None, trainable="all")  # None: $MINIDP_DEVICE
"""
from minidp.data.tokenize import load_tokenizer  # a checkpoint's tokenizer: the same loader as minidp's
from models.hf import load_pretrained, save_pretrained

__all__ = ["load_pretrained", "load_tokenizer", "save_pretrained"]
