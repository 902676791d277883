"""RoBERTa and BERT encoders with sequence-classification heads, built from the layers in ``minidp.nn``.

One model class serves both families; they differ only in
- position ids: RoBERTa counts real tokens from padding_idx+1 and gives padding the id padding_idx
  (transformers' ``create_position_ids_from_input_ids``); BERT uses 0..T-1;
- the head: RoBERTa (``RobertaForSequenceClassification``) reads <s> and applies
  dropout -> classifier.dense -> tanh -> dropout -> classifier.out_proj; BERT
  (``BertForSequenceClassification``) applies bert.pooler.dense -> tanh on [CLS], then dropout -> classifier.

Pooling (``pooling=``, minidp.nn.pooling): "cls" reads position 0 as above (transformers' heads); "mean" feeds
the head the mean of the real tokens' last hidden states instead, z_i = Σ_t m_it h_it / max(1, Σ_t m_it)
(sentence-transformers' mean pooling). Only that selection changes: the head's layers and names stay.

Encoder block (post-LN, as both papers and transformers):
    a  = attention(x)                                   self-attention with padding mask (minidp.nn.attention)
    x1 = LayerNorm(dropout(a Woᵀ + bo) + x)             attention.output.{dense, LayerNorm}
    x2 = LayerNorm(dropout(gelu(x1 Wiᵀ + bi) Wfᵀ + bf) + x1)   intermediate.dense, output.{dense, LayerNorm}

Parameters are a flat dict ``{hf_name: array}`` keyed exactly as the transformers state_dict of the
*ForSequenceClassification model (docs/design.md §2). Backward returns per-example records ``{hf_name: Record}``
for the trainable parameters only; the batch is summed in exactly one place (``Record.weighted_sum``).

LoRA (``lora=LoraSpec(...)``, models/lora.py): the targeted encoder linear layers become LoRA layers
(minidp.nn.lora); their factors join ``params`` as ``<module>.lora_A.weight`` (r, d_in) and
``<module>.lora_B.weight`` (d_out, r), and ``trainable="lora"`` trains the factors and what PEFT's SEQ_CLS trains
of the head: ``classifier.*``, plus the spec's ``modules_to_save`` (BERT: "pooler").

Shape alphabet: B batch, T tokens, C hidden, H heads, D = C/H, F intermediate, V vocabulary, K labels,
L layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minidp.backend import array_module, get_xp, resolve_device, resolve_dtype, to_device, to_host
from minidp.errors import ConfigError, DataError
from minidp.nn import activations, attention, dropout, embedding, layernorm, linear, loss
from minidp.nn import lora as lora_layer
from minidp.nn import pooling as pooling_layer
from minidp.per_example import weighted_sums
from minidp.privacy.clipping import clip_and_sum  # the one clipping path (training uses it too)
from models.config import (TRAINABLE_CHOICES, EncoderConfig, head_param_names, lora_head_param_names,
                           lora_param_shapes, param_shapes)
from models.config import init_params  # noqa: F401  (re-exported: `from models.roberta import init_params` still works)
from models.lora import LoraSpec, is_factor



# --------------------------------------------------------------------------------------------- caches


@dataclass
class EmbeddingsCache:
    word: object  # embedding.EmbeddingCache, ids (B, T)
    position: object  # embedding.EmbeddingCache, position ids (B, T)
    token_type: object  # embedding.EmbeddingCache, token-type ids (B, T)
    layernorm: object  # LayerNormCache
    dropout: object  # scaled mask (B, T, C) or None


@dataclass
class BlockCache:
    attention: object  # AttentionCache (q, k, v, probs, Q/K/V input)
    attn_out: object  # LinearCache (LoraCache with a LoRA branch): input = attention context (B, T, C)
    attn_dropout: object  # (B, T, C) mask or None
    attn_layernorm: object  # LayerNormCache of x1
    intermediate: object  # LinearCache / LoraCache: input x1 (B, T, C)
    gelu: object  # (pre-activation (B, T, F), Φ (B, T, F))
    output: object  # LinearCache / LoraCache: input gelu output (B, T, F)
    out_dropout: object  # (B, T, C) mask or None
    out_layernorm: object  # LayerNormCache of x2


@dataclass
class HeadCache:
    pooling: object  # PoolingCache: the (B, T, C) -> (B, C) selection (position 0, or the real tokens' mean)
    in_dropout: object  # (B, C) mask or None (RoBERTa only)
    dense: object  # LinearCache (B, C)
    tanh: object  # (B, C) tanh output
    out_dropout: object  # (B, C) mask or None
    out: object  # LinearCache (B, C)


@dataclass
class ModelCache:
    """Everything backward needs, layer by layer; backward empties it as it goes."""

    shape: tuple  # (B, T)
    embeddings: EmbeddingsCache | None
    blocks: list = field(default_factory=list)  # [BlockCache] for layers 0..L-1
    head: HeadCache | None = None


# --------------------------------------------------------------------------------------------- model


class SequenceClassifier:
    """A RoBERTa or BERT encoder with its sequence-classification head (see module docstring).

    params: {hf_name: array} on ``device`` in ``dtype`` (device None: $MINIDP_DEVICE, else "cpu");
    trainable: the names that get records/gradients.
    lora: a ``LoraSpec`` to give the targeted linear layers a LoRA branch (``params`` then holds its factors).
    pooling: "cls" (position 0) | "mean" (the real tokens' mean) feeds the head (minidp.nn.pooling).
    Eval mode (no dropout) by default; ``train()`` turns dropout on, drawing from ``dropout_rng``.
    """

    def __init__(self, config: EncoderConfig, params: dict, *, trainable="all", dtype="float32",
                 device=None, dropout_rng=None, lora: LoraSpec | None = None, pooling: str = "cls"):
        if pooling not in pooling_layer.POOLING_CHOICES:
            raise ConfigError(f"pooling={pooling!r}: use one of {pooling_layer.POOLING_CHOICES}")
        self.config = config
        self.pooling = pooling
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.xp = get_xp(self.device)
        self.lora = lora
        self.lora_modules: dict = {}  # {module path: LoraSettings} of the layers with a LoRA branch
        shapes = param_shapes(config)
        if lora is not None:
            settings = lora_layer.LoraSettings(scaling=lora.scaling, dropout=float(lora.dropout))
            factors = lora_param_shapes(config, lora)
            lora_head_param_names(config, lora.modules_to_save)  # ConfigError now for a module the head lacks
            self.lora_modules = {name.rsplit(".", 2)[0]: settings for name in factors}
            shapes.update(factors)
        missing = [name for name in shapes if name not in params]
        if missing:
            raise DataError(f"parameters missing: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        wrong = [(n, tuple(params[n].shape), shapes[n]) for n in shapes if tuple(params[n].shape) != tuple(shapes[n])]
        if wrong:
            name, found, expected = wrong[0]
            raise DataError(f"parameter {name!r} has shape {found}, expected {expected}")
        self.params = {name: to_device(params[name], self.device, self.dtype) for name in shapes}
        self.dropout_rng = dropout_rng
        self.training = False
        self.init_report: list = []  # names initialised at load time (filled by models.hf)
        self.source_dir = None  # the checkpoint directory this was loaded from, if any
        self.extra_config: dict = {}  # config.json fields kept verbatim for save_pretrained
        self.lora_source = None  # the PEFT adapter directory the LoRA factors were read from, if any
        self.set_trainable(trainable)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def set_trainable(self, trainable="all") -> None:
        """"all" | "no-embeddings" (all but ``*.embeddings.*``) | "classifier" (the head: RoBERTa classifier.*,
        BERT pooler + classifier) | "lora" (the LoRA factors, ``classifier.*`` and the LoRA spec's
        ``modules_to_save``, as PEFT's SEQ_CLS: BERT's pooler only when named) | a list of parameter names."""
        names = list(self.params)
        emb_prefix = f"{self.config.prefix}embeddings."
        if isinstance(trainable, str):
            if trainable == "all":
                chosen = names
            elif trainable == "no-embeddings":
                chosen = [n for n in names if not n.startswith(emb_prefix)]
            elif trainable == "classifier":
                chosen = head_param_names(self.config)
            elif trainable == "lora":
                if self.lora is None:
                    raise ConfigError("trainable='lora' needs a model with LoRA layers (load_pretrained(..., "
                                      "lora={'r': 8, 'alpha': 16, 'targets': ['query', 'value']}))")
                chosen = [n for n in names if is_factor(n)] + lora_head_param_names(self.config,
                                                                                     self.lora.modules_to_save)
            else:
                raise ConfigError(f"trainable={trainable!r}: use one of {TRAINABLE_CHOICES} or a list of names")
        else:
            requested = list(trainable)
            unknown = [n for n in requested if n not in self.params]
            if unknown:
                raise ConfigError(f"trainable: unknown parameter name(s) {unknown[:5]} "
                                  f"(names look like {names[0]!r})")
            chosen = [n for n in names if n in set(requested)]
            if not chosen:
                raise ConfigError("trainable: the list of parameter names is empty (nothing would train)")
        self.trainable = chosen
        self._trainable = set(chosen)
        # The lowest stage backward must reach: -1 embeddings, 0..L-1 a block, L the head only.
        L = self.config.num_hidden_layers
        self._lowest_stage = L + 1  # nothing trains: no backward at all
        for name in chosen:
            if name.startswith(emb_prefix):
                stage = -1
            elif name.startswith(f"{self.config.prefix}encoder.layer."):
                stage = int(name.split(".")[3])
            else:
                stage = L
            self._lowest_stage = min(self._lowest_stage, stage)

    def _p(self, module: str) -> dict:
        """{"weight", "bias"} of one module, e.g. "roberta.encoder.layer.0.output.dense" (+ LoRA factors)."""
        p = {"weight": self.params[f"{module}.weight"], "bias": self.params[f"{module}.bias"]}
        if module in self.lora_modules:
            for factor in (lora_layer.LORA_A, lora_layer.LORA_B):
                p[factor] = self.params[f"{module}.{factor}"]
        return p

    def _linear_forward(self, module: str, x):
        """The linear layer ``module`` (with its LoRA branch, if it has one) on x (B, T, d_in)."""
        return lora_layer.forward_any(self._p(module), x, self.lora_modules.get(module), rng=self.dropout_rng,
                                      training=self.training)

    def _keep(self, module: str, records: dict, out: dict) -> None:
        """Copy the records of trainable parameters into ``out`` under their full HF names."""
        for local, record in records.items():
            name = f"{module}.{local}"
            if name in self._trainable:
                out[name] = record

    def _backward(self, layer_backward, module: str, cache, dy, records: dict):
        """One parameterised layer's backward: dx, with its per-example records kept under ``module``'s names.

        ``layer_backward(params, cache, dy) -> (dx, records)`` is the layer's own backward (linear, LoRA,
        LayerNorm); this keeps the model's backward one call per layer, the forward read in reverse."""
        dx, recs = layer_backward(self._p(module), cache, dy)
        self._keep(module, recs, records)
        return dx

    def _dropout(self, x, p):
        return dropout.forward(x, p, self.dropout_rng, self.training)

    # ------------------------------------------------------------------ inputs

    def _ids(self, x, what: str, shape=None):
        """Token-like input as an int64 (B, T) HOST array, checked there (see ``prepare_inputs``)."""
        arr = to_host(x)  # host input (what the data pipeline gives): no copy; a device input: one copy
        if arr.dtype.kind not in "iub":
            if arr.dtype.kind == "f" and arr.size and bool((arr == np.round(arr)).all()):
                pass  # integral floats (e.g. from a float mask) are accepted
            elif arr.size:
                raise DataError(f"{what}: expected integer ids, found dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if shape is None and arr.ndim != 2:
            raise DataError(f"{what}: expected shape (batch, tokens), found {tuple(arr.shape)}")
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise DataError(f"{what}: shape {tuple(arr.shape)} does not match input_ids {tuple(shape)}")
        return arr

    def prepare_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        """Convert and validate: -> ids, mask, token types, all int64 (B, T) on the device.

        Validated on the host, before the upload: on a GPU, checking device arrays would cost a device ->
        host copy per check."""
        cfg = self.config
        ids = self._ids(input_ids, "input_ids")
        B, T = ids.shape
        if B == 0 or T == 0:
            raise DataError(f"input_ids: empty batch of shape {(B, T)}")
        if T > cfg.max_tokens:
            raise DataError(f"input_ids: sequence length T={T} exceeds the position table limit "
                            f"{cfg.max_tokens} (max_position_embeddings={cfg.max_position_embeddings})")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= cfg.vocab_size:
            bad = high if high >= cfg.vocab_size else low
            raise DataError(f"input_ids: token id {bad} is outside the vocabulary (max id {high}, "
                            f"vocab_size={cfg.vocab_size}); does the tokenizer match the model?")
        if attention_mask is None:
            mask = np.ones((B, T), dtype=np.int64)
        else:
            mask = self._ids(attention_mask, "attention_mask", shape=(B, T))
        if token_type_ids is None:
            types = np.zeros((B, T), dtype=np.int64)
        else:
            types = self._ids(token_type_ids, "token_type_ids", shape=(B, T))
            if int(types.min()) < 0 or int(types.max()) >= cfg.type_vocab_size:
                raise DataError(f"token_type_ids: id {int(types.max())} is outside "
                                f"[0, type_vocab_size={cfg.type_vocab_size})")
        return tuple(to_device(arr, self.device) for arr in (ids, mask, types))  # checked: now upload

    def _labels(self, labels, B: int):
        """Labels (B,) int64 on the device, checked on the host before the upload."""
        y = to_host(labels).astype(np.int64, copy=False).reshape(-1)
        if y.shape[0] != B:
            raise DataError(f"labels: {y.shape[0]} labels for a batch of {B}")
        if int(y.min()) < 0 or int(y.max()) >= self.num_labels:
            raise DataError(f"labels: values must be in [0, num_labels={self.num_labels}), "
                            f"found {int(y.min())}..{int(y.max())}")
        return to_device(y, self.device)

    def position_ids(self, ids):
        """(B, T) position ids. RoBERTa: pad + cumsum(ids != pad) at real tokens, pad at padding; BERT 0..T-1."""
        xp = array_module(ids)
        B, T = ids.shape
        if self.config.model_type == "roberta":
            pad = self.config.pad_token_id
            real = (ids != pad).astype(np.int64)  # (B, T)
            return xp.cumsum(real, axis=1) * real + pad  # (B, T)
        return xp.broadcast_to(xp.arange(T, dtype=np.int64), (B, T))  # (B, T)

    # ------------------------------------------------------------------ forward

    def _embeddings_forward(self, ids, types):
        cfg, P = self.config, self.params
        pre = f"{cfg.prefix}embeddings."
        word, word_cache = embedding.forward({"weight": P[f"{pre}word_embeddings.weight"]}, ids)  # (B, T, C)
        pos, pos_cache = embedding.forward({"weight": P[f"{pre}position_embeddings.weight"]},
                                           self.position_ids(ids))  # (B, T, C)
        typ, typ_cache = embedding.forward({"weight": P[f"{pre}token_type_embeddings.weight"]}, types)  # (B, T, C)
        x = word + pos  # (B, T, C)
        x += typ
        x, ln_cache = layernorm.forward(self._p(f"{pre}LayerNorm"), x, cfg.layer_norm_eps)  # (B, T, C)
        x, drop_cache = self._dropout(x, cfg.hidden_dropout_prob)  # (B, T, C)
        return x, EmbeddingsCache(word=word_cache, position=pos_cache, token_type=typ_cache,
                                  layernorm=ln_cache, dropout=drop_cache)

    def _block_forward(self, layer: int, x, attn_bias):
        cfg = self.config
        lp = f"{cfg.prefix}encoder.layer.{layer}."
        p_attn = {name: self._p(f"{lp}attention.self.{name}") for name in attention.PROJECTIONS}
        lora_attn = {name: self.lora_modules[f"{lp}attention.self.{name}"] for name in attention.PROJECTIONS
                     if f"{lp}attention.self.{name}" in self.lora_modules}
        ctx, attn_cache = attention.forward(p_attn, x, attn_bias, cfg.num_attention_heads,
                                            dropout_p=cfg.attention_probs_dropout_prob,
                                            rng=self.dropout_rng, training=self.training,
                                            lora=lora_attn)  # (B, T, C)
        h, attn_out_cache = self._linear_forward(f"{lp}attention.output.dense", ctx)  # (B, T, C)
        h, attn_drop = self._dropout(h, cfg.hidden_dropout_prob)  # (B, T, C)
        h += x  # residual
        x1, ln1_cache = layernorm.forward(self._p(f"{lp}attention.output.LayerNorm"), h,
                                          cfg.layer_norm_eps)  # (B, T, C)
        f, inter_cache = self._linear_forward(f"{lp}intermediate.dense", x1)  # (B, T, F)
        f, gelu_cache = activations.gelu_forward(f)  # (B, T, F)
        h2, out_cache = self._linear_forward(f"{lp}output.dense", f)  # (B, T, C)
        h2, out_drop = self._dropout(h2, cfg.hidden_dropout_prob)  # (B, T, C)
        h2 += x1  # residual
        x2, ln2_cache = layernorm.forward(self._p(f"{lp}output.LayerNorm"), h2, cfg.layer_norm_eps)  # (B, T, C)
        return x2, BlockCache(attention=attn_cache, attn_out=attn_out_cache, attn_dropout=attn_drop,
                              attn_layernorm=ln1_cache, intermediate=inter_cache, gelu=gelu_cache,
                              output=out_cache, out_dropout=out_drop, out_layernorm=ln2_cache)

    def _head_forward(self, hidden, mask):
        cfg = self.config
        dense, out = cfg.head_names()
        z, pool_cache = pooling_layer.forward(hidden, mask, self.pooling)  # (B, C): <s> / [CLS], or the mean
        in_drop = None
        if cfg.model_type == "roberta":
            z, in_drop = self._dropout(z, cfg.head_dropout)  # (B, C)
        z, dense_cache = linear.forward(self._p(dense), z)  # (B, C)
        z, tanh_cache = activations.tanh_forward(z)  # (B, C)
        z, out_drop = self._dropout(z, cfg.head_dropout)  # (B, C)
        logits, out_cache = linear.forward(self._p(out), z)  # (B, K)
        return logits, HeadCache(pooling=pool_cache, in_dropout=in_drop, dense=dense_cache, tanh=tanh_cache,
                                 out_dropout=out_drop, out=out_cache)

    def _forward(self, input_ids, attention_mask, token_type_ids, keep_cache: bool):
        ids, mask, types = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        attn_bias = attention.mask_bias(mask, self.dtype)  # (B, 1, 1, T)
        x, emb_cache = self._embeddings_forward(ids, types)  # (B, T, C)
        cache = ModelCache(shape=tuple(ids.shape), embeddings=emb_cache if keep_cache else None)
        for layer in range(self.config.num_hidden_layers):
            x, block_cache = self._block_forward(layer, x, attn_bias)  # (B, T, C)
            if keep_cache:
                cache.blocks.append(block_cache)
            del block_cache
        logits, cache.head = self._head_forward(x, mask)  # (B, K)
        return logits, cache

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Logits (B, K); keeps no caches."""
        logits, _ = self._forward(input_ids, attention_mask, token_type_ids, keep_cache=False)
        return logits

    __call__ = forward

    def forward_with_cache(self, input_ids, attention_mask=None, token_type_ids=None):
        """Logits (B, K) and the ``ModelCache`` that ``backward_records`` consumes."""
        return self._forward(input_ids, attention_mask, token_type_ids, keep_cache=True)

    # ------------------------------------------------------------------ backward

    def _head_backward(self, cache: HeadCache, dlogits, records: dict, need_dx: bool):
        """dlogits (B, K) -> dh (B, T, C) at the top block's output (None when no block trains)."""
        cfg = self.config
        dense, out = cfg.head_names()
        # logits = z Woutᵀ + b
        dz = self._backward(linear.backward, out, cache.out, dlogits, records)  # (B, C)
        if not need_dx and dense + ".weight" not in self._trainable and dense + ".bias" not in self._trainable:
            return None
        dz = dropout.backward(cache.out_dropout, dz)  # (B, C)
        dz = activations.tanh_backward(cache.tanh, dz)  # (B, C)
        dcls = self._backward(linear.backward, dense, cache.dense, dz, records)  # (B, C)
        if not need_dx:
            return None
        dpooled = dropout.backward(cache.in_dropout, dcls)  # (B, C)
        return pooling_layer.backward(cache.pooling, dpooled)  # (B, T, C): position 0, or every real token

    def _block_backward(self, layer: int, c: BlockCache, dx2, records: dict):
        """``_block_forward`` in reverse; the records of its trainable parameters go into ``records``."""
        lp = f"{self.config.prefix}encoder.layer.{layer}."
        linear_backward = lora_layer.backward_any  # a linear layer, or a LoRA one where the module has factors
        # x2 = LayerNorm(dropout(gelu(x1 Wiᵀ + bi) Wfᵀ + bf) + x1)
        dsum2 = self._backward(layernorm.backward, f"{lp}output.LayerNorm", c.out_layernorm, dx2,
                               records)  # (B, T, C)
        dh2 = dropout.backward(c.out_dropout, dsum2)  # (B, T, C)
        df = self._backward(linear_backward, f"{lp}output.dense", c.output, dh2, records)  # (B, T, F)
        df = activations.gelu_backward(c.gelu, df)  # (B, T, F)
        dx1 = self._backward(linear_backward, f"{lp}intermediate.dense", c.intermediate, df, records)  # (B, T, C)
        del df
        dx1 += dsum2  # x1 also feeds the residual
        # x1 = LayerNorm(dropout(attention(x) Woᵀ + bo) + x)
        dsum1 = self._backward(layernorm.backward, f"{lp}attention.output.LayerNorm", c.attn_layernorm, dx1,
                               records)  # (B, T, C)
        dh = dropout.backward(c.attn_dropout, dsum1)  # (B, T, C)
        dctx = self._backward(linear_backward, f"{lp}attention.output.dense", c.attn_out, dh, records)  # (B, T, C)
        p_attn = {name: self._p(f"{lp}attention.self.{name}") for name in attention.PROJECTIONS}
        dx, recs = attention.backward(p_attn, c.attention, dctx)  # (B, T, C)
        self._keep(f"{lp}attention.self", recs, records)
        dx += dsum1  # x also feeds the residual
        return dx

    def _embeddings_backward(self, c: EmbeddingsCache, dx, records: dict):
        cfg = self.config
        pre = f"{cfg.prefix}embeddings."
        dx = dropout.backward(c.dropout, dx)  # (B, T, C)
        dsum = self._backward(layernorm.backward, f"{pre}LayerNorm", c.layernorm, dx, records)  # (B, T, C)
        # x = word[ids] + position[pos] + type[types]: each table receives dsum at the rows it read.
        # Tables built with padding_idx (word: both families; position: RoBERTa) get no gradient at that
        # row, as torch.nn.Embedding(padding_idx=...) — the mask zeroes those tokens' contributions.
        pad = cfg.pad_token_id
        tables = [("word_embeddings", c.word, True),
                  ("position_embeddings", c.position, cfg.model_type == "roberta"),
                  ("token_type_embeddings", c.token_type, False)]
        for table, emb_cache, has_padding_idx in tables:
            name = f"{pre}{table}.weight"
            if name not in self._trainable:
                continue
            g = dsum
            if has_padding_idx:  # (multiplied even when nothing is padding: asking would cost a host copy)
                keep = emb_cache.ids != pad  # (B, T)
                g = dsum * keep[:, :, None].astype(dsum.dtype)  # (B, T, C)
            _, recs = embedding.backward({"weight": self.params[name]}, emb_cache, g)
            self._keep(f"{pre}{table}", recs, records)

    def backward_records(self, cache: ModelCache, dlogits) -> dict:
        """dlogits (B, K) -> {hf_name: Record} for the trainable parameters. Empties ``cache``.

        Walks the head, then the blocks from the top down, dropping each block's cache once used, and
        stops at the lowest stage holding a trainable parameter (no embedding backward when no embedding
        parameter trains).
        """
        cfg = self.config
        L = cfg.num_hidden_layers
        records: dict = {}
        if self._lowest_stage > L:
            return records
        if cache.head is None:
            raise ValueError("this cache has been consumed already (backward_records runs once per forward)")
        head, cache.head = cache.head, None
        dx = self._head_backward(head, dlogits, records, need_dx=self._lowest_stage < L)  # (B, T, C)
        del head
        if dx is None:
            cache.blocks.clear()
            cache.embeddings = None
            return records
        if len(cache.blocks) != L:
            raise ValueError("backward_records needs a cache from forward_with_cache")
        for layer in range(L - 1, max(self._lowest_stage, 0) - 1, -1):
            block = cache.blocks.pop()  # free this block's cache once its backward is done
            dx = self._block_backward(layer, block, dx, records)  # (B, T, C)
            del block
        cache.blocks.clear()
        if self._lowest_stage < 0:
            self._embeddings_backward(cache.embeddings, dx, records)
        cache.embeddings = None
        return records

    # ------------------------------------------------------------------ losses and gradients

    def per_example_records(self, input_ids, attention_mask, labels, token_type_ids=None):
        """Forward, per-example cross-entropy (NOT divided by B), backward: (losses (B,), records)."""
        logits, cache = self.forward_with_cache(input_ids, attention_mask, token_type_ids)
        y = self._labels(labels, logits.shape[0])
        losses, loss_cache = loss.forward(logits, y)  # (B,)
        ones = self.xp.ones(losses.shape, dtype=losses.dtype)  # d(Σ_i loss_i)/d loss_i
        records = self.backward_records(cache, loss.backward(loss_cache, ones))
        return losses, records

    def loss_and_grads(self, input_ids, attention_mask, labels, token_type_ids=None):
        """(mean cross-entropy as a float, {hf_name: gradient of the mean}) for the trainable parameters."""
        logits, cache = self.forward_with_cache(input_ids, attention_mask, token_type_ids)
        y = self._labels(labels, logits.shape[0])
        mean, loss_cache = loss.mean_forward(logits, y)
        records = self.backward_records(cache, loss.backward(loss_cache, loss.mean_dloss(loss_cache)))
        return float(mean), weighted_sums(records, None)  # Σ_i ∇_i (loss_i / B)

    def per_example_grads(self, input_ids, attention_mask, labels, token_type_ids=None) -> dict:
        """{hf_name: (B, *shape)} ∇ loss_i for every example (the materialised reference path)."""
        _, records = self.per_example_records(input_ids, attention_mask, labels, token_type_ids)
        return {name: record.per_example() for name, record in records.items()}

    def clipped_grad_sum(self, input_ids, attention_mask, labels, max_grad_norm, token_type_ids=None, *,
                         clip_method: str = "flat", gamma: float = 0.01):
        """({hf_name: Σ_i c_i ∇_i loss_i}, per-example norms (B,)) with ‖∇_i‖ over all trainable parameters.

        flat: c_i = min(1, C / (‖∇_i‖ + 1e-6)) (Abadi et al. 2016); automatic: c_i = C / (‖∇_i‖ + gamma)
        (Bu et al. 2023, "automatic clipping"). One backward pass; norms by book-keeping (docs/design.md §2).
        """
        _, records = self.per_example_records(input_ids, attention_mask, labels, token_type_ids)
        sums, norms, _, _ = clip_and_sum(records, max_grad_norm, method=clip_method, gamma=gamma)
        return sums, norms

    def merge_lora(self) -> "SequenceClassifier":
        """A plain model (no LoRA layers) computing the same logits: W ← W + (α/r)·B A in every LoRA layer.

        As PEFT's ``merge_and_unload``; the new model shares nothing with this one and trains "all". It is of
        this model's class, so a model from ``load_pretrained`` merges into one with ``save_pretrained``.
        """
        params = {name: value for name, value in self.params.items() if not is_factor(name)}
        for module, settings in self.lora_modules.items():
            params[f"{module}.weight"] = lora_layer.merged_weight(self._p(module), settings.scaling)
        merged = type(self)(self.config, params, dtype=self.dtype, device=self.device,
                                    dropout_rng=self.dropout_rng, pooling=self.pooling)
        merged.init_report, merged.source_dir = list(self.init_report), self.source_dir
        merged.extra_config = dict(self.extra_config)
        return merged
