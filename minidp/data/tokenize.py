"""Text -> padded id arrays, through the ``tokenizers`` package (the Rust library behind HF fast tokenizers).

    tok = load_tokenizer(model_dir)
    batch = tok(texts, text_pairs=None, max_length=128)
    batch["input_ids"]       # (B, T) int64, T = longest encoding in the batch (<= max_length)
    batch["attention_mask"]  # (B, T) int64, 1 for real tokens, 0 for padding
    batch["token_type_ids"]  # (B, T) int64, BERT-style (WordPiece) tokenizers only: 0 for A, 1 for B

``model_dir`` holds one of (first match wins):
  tokenizer.json            a serialized ``tokenizers`` pipeline (e.g. MiniLM's, or one written by ``save``)
  vocab.json + merges.txt   RoBERTa byte-level BPE: ``<s> A </s>`` and ``<s> A </s></s> B </s>``, pad = 1
  vocab.txt                 BERT WordPiece: ``[CLS] A [SEP] B [SEP]``, lower-cased unless
                            tokenizer_config.json says ``"do_lower_case": false``

Pairs are truncated longest-first (drop from the longer sequence until the pair fits), as in HF.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend

from minidp.errors import DataError

ROBERTA_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}
BERT_SPECIALS = {"cls": "[CLS]", "pad": "[PAD]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}
MODEL_MAX_LENGTH = 512  # written to tokenizer_config.json: both model families have 512 positions


class Tokenizer:
    """A ``tokenizers.Tokenizer`` with minidp's calling convention (numpy arrays, no padding state).

    kind:          "roberta" (byte-level BPE, no token type ids) or "bert" (WordPiece, with type ids)
    pad_token_id:  the id used for padding
    vocab_size:    number of ids, added special tokens included
    """

    def __init__(
        self, backend, *, kind: str, lowercase: bool | None = None, pad_token: str | None = None, source: str = ""
    ):
        if kind not in ("roberta", "bert"):
            raise DataError(f"{source}: tokenizer kind {kind!r} is not 'roberta' or 'bert'")
        self._tk = backend
        self._tk.no_padding()  # padding happens in __call__, to the longest in each batch
        self._tk.no_truncation()
        self.kind = kind
        self.lowercase = lowercase
        self.source = source
        self.specials = dict(ROBERTA_SPECIALS if kind == "roberta" else BERT_SPECIALS)
        if pad_token is not None:
            self.specials["pad"] = pad_token
        pad_id = self._tk.token_to_id(self.specials["pad"])
        if pad_id is None:
            raise DataError(f"{source}: the vocabulary has no padding token {self.specials['pad']!r}")
        self.pad_token_id = int(pad_id)
        self.vocab_size = int(self._tk.get_vocab_size(with_added_tokens=True))

    @property
    def returns_token_type_ids(self) -> bool:
        return self.kind == "bert"

    def encode(self, text: str, text_pair: str | None = None) -> list[int]:
        """The ids of one text (or pair), special tokens included, no truncation or padding."""
        return list(self._tk.encode(text, text_pair).ids)

    def __call__(self, texts, text_pairs=None, max_length: int = 128) -> dict[str, np.ndarray]:
        """Encode a batch; see the module docstring for the returned arrays."""
        if isinstance(texts, str):
            texts = [texts]
            text_pairs = None if text_pairs is None else [text_pairs]
        texts = list(texts)
        if max_length < 2 + 2 * (text_pairs is not None):
            raise DataError(f"max_length={max_length} leaves no room for text besides the special tokens")
        self._tk.enable_truncation(max_length=int(max_length), strategy="longest_first")
        try:
            if text_pairs is None:
                encodings = self._tk.encode_batch(texts)
            else:
                text_pairs = list(text_pairs)
                if len(text_pairs) != len(texts):
                    raise DataError(f"{len(texts)} texts but {len(text_pairs)} text pairs")
                encodings = self._tk.encode_batch(list(zip(texts, text_pairs)))
        finally:
            self._tk.no_truncation()

        B = len(encodings)
        T = max((len(e.ids) for e in encodings), default=0)
        input_ids = np.full((B, T), self.pad_token_id, dtype=np.int64)  # (B, T)
        attention_mask = np.zeros((B, T), dtype=np.int64)  # (B, T)
        token_type_ids = np.zeros((B, T), dtype=np.int64)  # (B, T); padding has type 0
        for b, enc in enumerate(encodings):
            n = len(enc.ids)
            input_ids[b, :n] = enc.ids
            attention_mask[b, :n] = 1
            token_type_ids[b, :n] = enc.type_ids
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.returns_token_type_ids:
            batch["token_type_ids"] = token_type_ids
        return batch

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tk.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def save(self, out_dir) -> Path:
        """Write tokenizer.json and a minimal tokenizer_config.json (loadable by AutoTokenizer)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._tk.save(str(out_dir / "tokenizer.json"))
        s = self.specials
        if self.kind == "roberta":
            config = {
                "tokenizer_class": "RobertaTokenizer",
                "bos_token": s["cls"], "eos_token": s["sep"], "cls_token": s["cls"], "sep_token": s["sep"],
                "unk_token": s["unk"], "pad_token": s["pad"], "mask_token": s["mask"],
                "add_prefix_space": False, "trim_offsets": True,
            }
        else:
            config = {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": bool(self.lowercase) if self.lowercase is not None else True,
                "cls_token": s["cls"], "sep_token": s["sep"], "unk_token": s["unk"],
                "pad_token": s["pad"], "mask_token": s["mask"],
            }
        config["model_max_length"] = MODEL_MAX_LENGTH
        (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        return out_dir

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, source={self.source!r})"


def load_tokenizer(path) -> Tokenizer:
    """The tokenizer stored in directory ``path`` (see the module docstring for the files it reads)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: tokenizer directory not found")
    if (path / "tokenizer.json").is_file():
        return _from_tokenizer_json(path / "tokenizer.json")
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        return _roberta_bpe(path / "vocab.json", path / "merges.txt")
    if (path / "vocab.txt").is_file():
        return _bert_wordpiece(path / "vocab.txt", _do_lower_case(path))
    raise DataError(
        f"{path}: no tokenizer files (expected tokenizer.json, vocab.json + merges.txt, or vocab.txt); "
        f"found {sorted(p.name for p in path.iterdir())}"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable JSON ({type(err).__name__}: {err})") from None


def _do_lower_case(folder: Path) -> bool:
    """``do_lower_case`` from tokenizer_config.json when present, else True (uncased BERT)."""
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return True
    return bool(_read_json(config_path).get("do_lower_case", True))


def _from_tokenizer_json(path: Path) -> Tokenizer:
    spec = _read_json(path)  # a clear error for broken JSON before the Rust parser sees it
    try:
        backend = Backend.from_str(json.dumps(spec))
    except Exception as err:  # the Rust side raises plain Exception subclasses
        raise DataError(f"{path}: not a tokenizers pipeline ({err})") from None
    model_type = (spec.get("model") or {}).get("type")
    if model_type == "WordPiece":
        kind = "bert"
        lowercase = bool((spec.get("normalizer") or {}).get("lowercase", False))
    elif model_type == "BPE":
        kind, lowercase = "roberta", None
    else:
        raise DataError(f"{path}: model type {model_type!r} is not BPE (RoBERTa) or WordPiece (BERT)")
    pad_token = (spec.get("padding") or {}).get("pad_token")  # the file's own padding token, if it names one
    return Tokenizer(backend, kind=kind, lowercase=lowercase, pad_token=pad_token, source=str(path))


def _roberta_bpe(vocab_path: Path, merges_path: Path) -> Tokenizer:
    """RoBERTa's pipeline: byte-level pre-tokenizer (no prefix space), BPE, <s> A </s></s> B </s>."""
    vocab = _read_json(vocab_path)
    try:
        merges = [
            tuple(line.split(" "))
            for line in merges_path.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")
        ]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{merges_path}: unreadable ({err})") from None
    bad = [m for m in merges if len(m) != 2]
    if bad:
        raise DataError(f"{merges_path}: merges must be 'a b' pairs; found {' '.join(bad[0])!r}")
    for name in ("cls", "sep", "pad"):
        if ROBERTA_SPECIALS[name] not in vocab:
            raise DataError(f"{vocab_path}: no {ROBERTA_SPECIALS[name]!r} token")

    backend = Backend(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing(  # (sep, cls) positionally: the keyword
        (ROBERTA_SPECIALS["sep"], vocab[ROBERTA_SPECIALS["sep"]]),  # name of cls differs across versions
        (ROBERTA_SPECIALS["cls"], vocab[ROBERTA_SPECIALS["cls"]]),
        trim_offsets=True,
        add_prefix_space=False,
    )
    backend.add_special_tokens(
        [AddedToken(ROBERTA_SPECIALS[k], special=True, normalized=False) for k in ("cls", "pad", "sep", "unk")]
        # RoBERTa's <mask> absorbs the space before it, as in the original checkpoint's tokenizer
        + [AddedToken(ROBERTA_SPECIALS["mask"], lstrip=True, special=True, normalized=False)]
    )
    return Tokenizer(backend, kind="roberta", source=f"{vocab_path} + {merges_path.name}")


def _bert_wordpiece(vocab_path: Path, lowercase: bool) -> Tokenizer:
    """BERT's pipeline: BertNormalizer (clean, Chinese chars, optional lower-casing) + WordPiece."""
    try:
        tokens = vocab_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{vocab_path}: unreadable ({err})") from None
    vocab = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))  # one id per line, as BertTokenizer numbers them
    for name in ("cls", "sep", "pad", "unk"):
        if BERT_SPECIALS[name] not in vocab:
            raise DataError(f"{vocab_path}: no {BERT_SPECIALS[name]!r} token")

    backend = Backend(models.WordPiece(vocab=vocab, unk_token=BERT_SPECIALS["unk"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    cls, sep = BERT_SPECIALS["cls"], BERT_SPECIALS["sep"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    backend.add_special_tokens(
        [AddedToken(BERT_SPECIALS[k], special=True, normalized=False) for k in BERT_SPECIALS if BERT_SPECIALS[k] in vocab]
    )
    return Tokenizer(backend, kind="bert", lowercase=lowercase, source=str(vocab_path))
