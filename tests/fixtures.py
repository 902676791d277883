"""Tiny real-format assets for fast end-to-end tests: a random BERT checkpoint with a WordPiece vocab.txt,
and a small labelled sentiment TSV/CSV. Everything is written to a temporary folder by the test."""
from __future__ import annotations

from pathlib import Path

import numpy as np

POSITIVE = ["good", "great", "fine", "lovely", "happy", "superb", "nice", "best"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "worst", "ugly", "dull"]
FILLER = ["the", "movie", "was", "plot", "very", "a", "and", "it", "film", "acting", "story", "quite"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_sentences(n: int, seed: int = 0):
    """n sentences (filler words plus one or two sentiment words) and their labels (1 = positive)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(0, 2))
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 8))))
        cue = POSITIVE if label else NEGATIVE
        for _ in range(int(rng.integers(1, 3))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cue)))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.array(labels)


def write_tiny_bert(folder, *, hidden=16, layers=2, heads=2, intermediate=32, seed=0, dropout=0.0,
                    init_std=0.02) -> Path:
    """A random BERT sequence classifier in HF format (config.json, model.safetensors, vocab.txt)."""
    from models.hf import save_pretrained
    from models.config import EncoderConfig, init_params
    from models.roberta import SequenceClassifier

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = EncoderConfig(model_type="bert", vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=64,
                           type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0, num_labels=2,
                           hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    params = init_params(config, np.random.default_rng(seed), std=init_std)
    save_pretrained(SequenceClassifier(config, params, dtype="float64"), folder, dtype="float32")
    return folder


def write_tiny_tsv(path, n: int, seed: int = 0) -> Path:
    """An SST-2-layout TSV (sentence<TAB>label, with header)."""
    texts, labels = tiny_sentences(n, seed)
    path = Path(path)
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)))
    return path


class RandomTokens:
    """``n`` random token sequences of length T (no padding) with random binary labels, handed out as a
    minidp.data.batching.TokenizedDataset does (host arrays): a stand-in for data in DP-step tests."""

    def __init__(self, n: int, T: int, vocab_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.ids = rng.integers(5, vocab_size, size=(n, T))
        self.labels = rng.integers(0, 2, size=n)

    def __len__(self):
        return len(self.labels)

    def by_length(self, indices):
        return indices

    def batch(self, indices):
        ids = self.ids[indices]
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": self.labels[indices]}
