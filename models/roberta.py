"""RoBERTa and BERT encoders with sequence-classification heads, built from the layers in ``minidp.nn``.

The classifier reads top to bottom; each stage is a small module with its equations, forward then backward:

    models/inputs.py       ids, mask, token types (B, T) and labels (B,): converted and checked on the host
    models/embeddings.py   x0 = dropout(LayerNorm(word[ids] + position[pos] + token_type[types]))   (B, T, C)
    models/block.py        x_{l+1} = block_l(x_l), l = 0..L-1: self-attention + feed-forward, post-LN  (B, T, C)
    models/head.py         logits = out(dropout(tanh(dense(dropout(pool(x_L))))))                    (B, K)
    this module            SequenceClassifier: the parameters, which of them train, the stages in order
                           (forward), in reverse (backward_records), and the per-example losses and records

Forward keeps each stage's cache in a ``ModelCache``; ``backward_records`` walks the stages in reverse,
dropping each cache once used, and returns per-example records ``{hf_name: Record}`` for the trainable
parameters only (minidp/per_example.py). The batch is summed in exactly one place (``Record.weighted_sum``):
``loss_and_grads`` sums with weight 1/B; the DP step clips first (minidp/privacy/clipping.py).

One model class serves both families; they differ only in the position ids (models/embeddings.py) and in
the head (models/head.py). Pooling (``pooling=``, minidp.nn.pooling): "cls" reads position 0 (transformers'
heads); "mean" feeds the head the mean of the real tokens' last hidden states (sentence-transformers' mean
pooling). Only that selection changes: the head's layers and names stay.

Parameters are a flat dict ``{hf_name: array}`` keyed exactly as the transformers state_dict of the
*ForSequenceClassification model (docs/design.md §2).

LoRA (``lora=LoraSpec(...)``, models/lora.py): the targeted encoder linear layers become LoRA layers
(minidp.nn.lora); their factors join ``params`` as ``<module>.lora_A.weight`` (r, d_in) and
``<module>.lora_B.weight`` (d_out, r), and ``trainable="lora"`` trains the factors and what PEFT's SEQ_CLS trains
of the head: ``classifier.*``, plus the spec's ``modules_to_save`` (BERT: "pooler").

Shape alphabet: B batch, T tokens, C hidden, H heads, D = C/H, F intermediate, V vocabulary, K labels,
L layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from minidp.backend import get_xp, resolve_device, resolve_dtype, to_device
from minidp.errors import ConfigError, DataError
from minidp.nn import attention, dropout, loss
from minidp.nn import lora as lora_layer
from minidp.nn import pooling as pooling_layer
from minidp.per_example import weighted_sums
from models import block, embeddings, head, inputs
from models.config import (TRAINABLE_CHOICES, EncoderConfig, head_param_names, lora_head_param_names,
                           lora_param_shapes, param_shapes)
from models.embeddings import EmbeddingsCache
from models.head import HeadCache
from models.lora import LoraSpec, is_factor


@dataclass
class ModelCache:
    """Everything backward needs, stage by stage; backward empties it as it goes."""

    shape: tuple  # (B, T)
    embeddings: EmbeddingsCache | None
    blocks: list = field(default_factory=list)  # [block.BlockCache] for layers 0..L-1
    head: HeadCache | None = None


class SequenceClassifier:
    """A RoBERTa or BERT encoder with its sequence-classification head (see the module docstring).

    params: {hf_name: array} on ``device`` in ``dtype`` (device None: $MINIDP_DEVICE, else "cpu");
    trainable: the names that get records/gradients.
    lora: a ``LoraSpec`` to give the targeted linear layers a LoRA branch (``params`` then holds its factors).
    pooling: "cls" (position 0) | "mean" (the real tokens' mean) feeds the head (minidp.nn.pooling).
    Eval mode (no dropout) by default; ``train()`` turns dropout on, drawing from ``dropout_rng``.

    Sections, in order: 1. train/eval mode and which parameters train; 2. the per-layer helpers the stage modules call;
    3. inputs; 4. forward; 5. backward; 6. per-example records, losses and gradients; 7. merging LoRA.
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

    # ------------------------------------------------------------------ 1. mode and which parameters train

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

    def trains(self, name: str) -> bool:
        """Whether the parameter ``name`` gets records/gradients."""
        return name in self._trainable

    # ------------------------------------------------------------------ 2. per-layer helpers (for the stages)

    def module_params(self, module: str) -> dict:
        """{"weight", "bias"} of one module, e.g. "roberta.encoder.layer.0.output.dense" (+ LoRA factors)."""
        p = {"weight": self.params[f"{module}.weight"], "bias": self.params[f"{module}.bias"]}
        if module in self.lora_modules:
            for factor in (lora_layer.LORA_A, lora_layer.LORA_B):
                p[factor] = self.params[f"{module}.{factor}"]
        return p

    def linear(self, module: str, x):
        """The linear layer ``module`` (with its LoRA branch, if it has one) on x (B, T, d_in): (y, cache)."""
        return lora_layer.forward_any(self.module_params(module), x, self.lora_modules.get(module),
                                      rng=self.dropout_rng, training=self.training)

    def apply_dropout(self, x, p):
        """(dropout(x), mask or None): identity in eval mode."""
        return dropout.forward(x, p, self.dropout_rng, self.training)

    def keep_records(self, module: str, records: dict, out: dict) -> None:
        """Copy the records of trainable parameters into ``out`` under their full HF names."""
        for local, record in records.items():
            name = f"{module}.{local}"
            if name in self._trainable:
                out[name] = record

    def layer_backward(self, layer_backward, module: str, cache, dy, records: dict):
        """One parameterised layer's backward: dx, with its per-example records kept under ``module``'s names.

        ``layer_backward(params, cache, dy) -> (dx, records)`` is the layer's own backward (linear, LoRA,
        LayerNorm); this keeps a stage's backward one call per layer, its forward read in reverse."""
        dx, recs = layer_backward(self.module_params(module), cache, dy)
        self.keep_records(module, recs, records)
        return dx

    # ------------------------------------------------------------------ 3. inputs

    def prepare_inputs(self, input_ids, attention_mask=None, token_type_ids=None):
        """Convert and validate: -> ids, mask, token types, all int64 (B, T) on the device (models/inputs.py)."""
        return inputs.prepare_inputs(self.config, self.device, input_ids, attention_mask, token_type_ids)

    def position_ids(self, ids):
        """(B, T) position ids. RoBERTa: pad + cumsum(ids != pad) at real tokens, pad at padding; BERT 0..T-1."""
        return embeddings.position_ids(self.config, ids)

    # ------------------------------------------------------------------ 4. forward

    def _forward(self, input_ids, attention_mask, token_type_ids, keep_cache: bool):
        ids, mask, types = self.prepare_inputs(input_ids, attention_mask, token_type_ids)
        attn_bias = attention.mask_bias(mask, self.dtype)  # (B, 1, 1, T)
        x, emb_cache = embeddings.forward(self, ids, types)  # (B, T, C)
        cache = ModelCache(shape=tuple(ids.shape), embeddings=emb_cache if keep_cache else None)
        for layer in range(self.config.num_hidden_layers):
            x, block_cache = block.forward(self, layer, x, attn_bias)  # (B, T, C)
            if keep_cache:
                cache.blocks.append(block_cache)
            del block_cache
        logits, cache.head = head.forward(self, x, mask)  # (B, K)
        return logits, cache

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Logits (B, K); keeps no caches."""
        logits, _ = self._forward(input_ids, attention_mask, token_type_ids, keep_cache=False)
        return logits

    __call__ = forward

    def forward_with_cache(self, input_ids, attention_mask=None, token_type_ids=None):
        """Logits (B, K) and the ``ModelCache`` that ``backward_records`` consumes."""
        return self._forward(input_ids, attention_mask, token_type_ids, keep_cache=True)

    # ------------------------------------------------------------------ 5. backward

    def backward_records(self, cache: ModelCache, dlogits) -> dict:
        """dlogits (B, K) -> {hf_name: Record} for the trainable parameters. Empties ``cache``.

        Walks the head, then the blocks from the top down, dropping each block's cache once used, and
        stops at the lowest stage holding a trainable parameter (no embedding backward when no embedding
        parameter trains).
        """
        L = self.config.num_hidden_layers
        records: dict = {}
        if self._lowest_stage > L:
            return records
        if cache.head is None:
            raise ValueError("this cache has been consumed already (backward_records runs once per forward)")
        head_cache, cache.head = cache.head, None
        dx = head.backward(self, head_cache, dlogits, records, need_dx=self._lowest_stage < L)  # (B, T, C)
        del head_cache
        if dx is None:
            cache.blocks.clear()
            cache.embeddings = None
            return records
        if len(cache.blocks) != L:
            raise ValueError("backward_records needs a cache from forward_with_cache")
        for layer in range(L - 1, max(self._lowest_stage, 0) - 1, -1):
            block_cache = cache.blocks.pop()  # free this block's cache once its backward is done
            dx = block.backward(self, layer, block_cache, dx, records)  # (B, T, C)
            del block_cache
        cache.blocks.clear()
        if self._lowest_stage < 0:
            embeddings.backward(self, cache.embeddings, dx, records)
        cache.embeddings = None
        return records

    # ------------------------------------------------------------------ 6. per-example records, losses, gradients

    def per_example_records(self, input_ids, attention_mask, labels, token_type_ids=None):
        """Forward, per-example cross-entropy (NOT divided by B), backward: (losses (B,), records).

        L = Σ_i loss_i, so example i's rows of every dy are ∂loss_i/∂y_i and each record keeps example i's
        gradient apart (docs/layers.md). The DP step clips these (minidp.privacy.clipping.clip_and_sum)."""
        logits, cache = self.forward_with_cache(input_ids, attention_mask, token_type_ids)
        y = inputs.prepare_labels(labels, logits.shape[0], self.num_labels, self.device)
        losses, loss_cache = loss.forward(logits, y)  # (B,)
        ones = self.xp.ones(losses.shape, dtype=losses.dtype)  # d(Σ_i loss_i)/d loss_i
        records = self.backward_records(cache, loss.backward(loss_cache, ones))
        return losses, records

    def loss_and_grads(self, input_ids, attention_mask, labels, token_type_ids=None):
        """(mean cross-entropy as a float, {hf_name: gradient of the mean}) for the trainable parameters."""
        logits, cache = self.forward_with_cache(input_ids, attention_mask, token_type_ids)
        y = inputs.prepare_labels(labels, logits.shape[0], self.num_labels, self.device)
        mean, loss_cache = loss.mean_forward(logits, y)
        records = self.backward_records(cache, loss.backward(loss_cache, loss.mean_dloss(loss_cache)))
        return float(mean), weighted_sums(records, None)  # Σ_i ∇_i (loss_i / B)

    def per_example_grads(self, input_ids, attention_mask, labels, token_type_ids=None) -> dict:
        """{hf_name: (B, *shape)} ∇ loss_i for every example (the materialised reference path)."""
        _, records = self.per_example_records(input_ids, attention_mask, labels, token_type_ids)
        return {name: record.per_example() for name, record in records.items()}

    # ------------------------------------------------------------------ 7. merging LoRA

    def merge_lora(self) -> "SequenceClassifier":
        """A plain model (no LoRA layers) computing the same logits: W ← W + (α/r)·B A in every LoRA layer.

        As PEFT's ``merge_and_unload``; the new model shares nothing with this one and trains "all". It is of
        this model's class, so a model from ``load_pretrained`` merges into one with ``save_pretrained``.
        """
        params = {name: value for name, value in self.params.items() if not is_factor(name)}
        for module, settings in self.lora_modules.items():
            params[f"{module}.weight"] = lora_layer.merged_weight(self.module_params(module), settings.scaling)
        merged = type(self)(self.config, params, dtype=self.dtype, device=self.device,
                            dropout_rng=self.dropout_rng, pooling=self.pooling)
        merged.init_report, merged.source_dir = list(self.init_report), self.source_dir
        merged.extra_config = dict(self.extra_config)
        return merged
