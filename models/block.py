"""Stage 2 of the classifier (models/roberta.py): one encoder block, layer l of L, forward and back.

Post-LN, as both papers and transformers; x (B, T, C) in, x2 (B, T, C) out, with the padding mask as
the additive attention bias (B, 1, 1, T):

    a  = attention(x)                                          (B, T, C)  attention.self.{query, key, value}
    x1 = LayerNorm(dropout(a Woᵀ + bo) + x)                    (B, T, C)  attention.output.{dense, LayerNorm}
    f  = gelu(x1 Wiᵀ + bi)                                     (B, T, F)  intermediate.dense
    x2 = LayerNorm(dropout(f Wfᵀ + bf) + x1)                   (B, T, C)  output.{dense, LayerNorm}

Backward reads these lines bottom up: each parameterised layer's backward returns dx and its per-example
records (``SequenceClassifier.layer_backward`` keeps those of trainable parameters); each residual adds
its branch's gradient back (dx1 += dsum2, dx += dsum1). A linear layer the LoRA spec targets runs as a
LoRA layer (minidp.nn.lora), forward and back, with its factors' records beside the base weight's.

The functions take the ``SequenceClassifier`` whose parameters, dropout and trainable set they use.
Shapes: B batch, T tokens, C hidden, F intermediate.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.nn import activations, attention, dropout, layernorm
from minidp.nn import lora as lora_layer


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


def _attention_params(model, lp: str) -> dict:
    """{"query" | "key" | "value": that projection's parameters} of the block whose names start with ``lp``."""
    return {name: model.module_params(f"{lp}attention.self.{name}") for name in attention.PROJECTIONS}


def forward(model, layer: int, x, attn_bias):
    """x (B, T, C) -> x2 (B, T, C) and the ``BlockCache`` backward reads."""
    cfg = model.config
    lp = f"{cfg.prefix}encoder.layer.{layer}."
    lora_attn = {name: model.lora_modules[f"{lp}attention.self.{name}"] for name in attention.PROJECTIONS
                 if f"{lp}attention.self.{name}" in model.lora_modules}
    ctx, attn_cache = attention.forward(_attention_params(model, lp), x, attn_bias, cfg.num_attention_heads,
                                        dropout_p=cfg.attention_probs_dropout_prob,
                                        rng=model.dropout_rng, training=model.training,
                                        lora=lora_attn)  # (B, T, C)
    h, attn_out_cache = model.linear(f"{lp}attention.output.dense", ctx)  # (B, T, C)
    h, attn_drop = model.apply_dropout(h, cfg.hidden_dropout_prob)  # (B, T, C)
    h += x  # residual
    x1, ln1_cache = layernorm.forward(model.module_params(f"{lp}attention.output.LayerNorm"), h,
                                      cfg.layer_norm_eps)  # (B, T, C)
    f, inter_cache = model.linear(f"{lp}intermediate.dense", x1)  # (B, T, F)
    f, gelu_cache = activations.gelu_forward(f)  # (B, T, F)
    h2, out_cache = model.linear(f"{lp}output.dense", f)  # (B, T, C)
    h2, out_drop = model.apply_dropout(h2, cfg.hidden_dropout_prob)  # (B, T, C)
    h2 += x1  # residual
    x2, ln2_cache = layernorm.forward(model.module_params(f"{lp}output.LayerNorm"), h2,
                                      cfg.layer_norm_eps)  # (B, T, C)
    return x2, BlockCache(attention=attn_cache, attn_out=attn_out_cache, attn_dropout=attn_drop,
                          attn_layernorm=ln1_cache, intermediate=inter_cache, gelu=gelu_cache,
                          output=out_cache, out_dropout=out_drop, out_layernorm=ln2_cache)


def backward(model, layer: int, c: BlockCache, dx2, records: dict):
    """dx2 (B, T, C) -> dx (B, T, C); the records of the block's trainable parameters go into ``records``."""
    lp = f"{model.config.prefix}encoder.layer.{layer}."
    run = model.layer_backward
    linear_backward = lora_layer.backward_any  # a linear layer, or a LoRA one where the module has factors
    # x2 = LayerNorm(dropout(gelu(x1 Wiᵀ + bi) Wfᵀ + bf) + x1)
    dsum2 = run(layernorm.backward, f"{lp}output.LayerNorm", c.out_layernorm, dx2, records)  # (B, T, C)
    dh2 = dropout.backward(c.out_dropout, dsum2)  # (B, T, C)
    df = run(linear_backward, f"{lp}output.dense", c.output, dh2, records)  # (B, T, F)
    df = activations.gelu_backward(c.gelu, df)  # (B, T, F)
    dx1 = run(linear_backward, f"{lp}intermediate.dense", c.intermediate, df, records)  # (B, T, C)
    del df
    dx1 += dsum2  # x1 also feeds the residual
    # x1 = LayerNorm(dropout(attention(x) Woᵀ + bo) + x)
    dsum1 = run(layernorm.backward, f"{lp}attention.output.LayerNorm", c.attn_layernorm, dx1,
                records)  # (B, T, C)
    dh = dropout.backward(c.attn_dropout, dsum1)  # (B, T, C)
    dctx = run(linear_backward, f"{lp}attention.output.dense", c.attn_out, dh, records)  # (B, T, C)
    dx, recs = attention.backward(_attention_params(model, lp), c.attention, dctx)  # (B, T, C)
    model.keep_records(f"{lp}attention.self", recs, records)
    dx += dsum1  # x also feeds the residual
    return dx
