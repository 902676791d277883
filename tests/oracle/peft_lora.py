"""Test oracle: PEFT LoRA on the tiny random transformers classifiers of ``hf_models``.

Only tests import this (peft, torch and transformers are oracles, never dependencies of minidp/ or models/).

    peft_model = build_peft_classifier("roberta", r=4, alpha=8, targets=["query", "value"])  # random factors
    peft_model.save_pretrained(DIR)                      # the adapter minidp reads with lora={"adapter": DIR}
    per_ex = peft_per_example_grads(peft_model, batch)   # {minidp name: (B, *shape)} by torch autograd
"""
from __future__ import annotations

from tests.helpers import require_module
from tests.oracle.hf_models import build_hf_classifier, torch_loss_and_grads, torch_per_example_grads

def build_peft_classifier(family: str, *, r: int, alpha: float, targets, seed: int = 0, base=None,
                          modules_to_save=None):
    """``peft.get_peft_model`` on ``build_hf_classifier(family, seed=seed)`` (or on ``base``), float64, eval mode.

    ``modules_to_save``: None is PEFT's SEQ_CLS default (the classifier alone; BERT's pooler stays frozen);
    ["pooler"] also trains BERT's pooler. The factors A and B are random (B is not 0, so every gradient
    formula is exercised) and the head copies that PEFT trains are perturbed away from the base model's head.
    """
    torch = require_module("torch")
    peft = require_module("peft")
    base = build_hf_classifier(family, seed=seed) if base is None else base
    config = peft.LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha, target_modules=list(targets),
                             lora_dropout=0.0, modules_to_save=modules_to_save)
    model = peft.get_peft_model(base, config)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:  # the factors and the trained head copy
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    model.eval()
    return model


def minidp_name(peft_name: str) -> str:
    """PEFT's parameter name -> minidp's: no ``base_model.model.``, no adapter name, no head-copy wrapper."""
    name = peft_name.removeprefix("base_model.model.")
    name = name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
    return name.replace(".modules_to_save.default.", ".")


def trainable_names(peft_model) -> set:
    """minidp names of the parameters PEFT trains."""
    return {minidp_name(n) for n, p in peft_model.named_parameters() if p.requires_grad}


def peft_loss_and_grads(peft_model, batch):
    """(mean loss, {minidp name: gradient of the mean}) by torch autograd through PEFT."""
    loss, grads = torch_loss_and_grads(peft_model, batch)
    return loss, {minidp_name(n): g for n, g in grads.items()}


def peft_per_example_grads(peft_model, batch) -> dict:
    """{minidp name: (B, *shape)}: ∇ loss_i of the trainable parameters, one example at a time."""
    return {minidp_name(n): g for n, g in torch_per_example_grads(peft_model, batch).items()}
