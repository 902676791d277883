"""Federated DP fine-tuning of LoRA adapters with client-level DP (docs/federated.md).

    partition.py     clients' shards: iid, or label skew by Dirichlet(α)
    client.py        E local non-private LoRA steps from the global adapter -> the update Δ
    autoencoder.py   a linear / small-MLP gradient auto-encoder: forward/backward pairs and training
    codec.py         updates <-> what a client sends (identity, or latents of one auto-encoder per factor
                     shape); stage 1: DR-Encoder (Gaussian prior from statistics) and FedCG-style training
    aggregation.py   client-level Gaussian mechanism: clip each whole contribution, sum, noise, divide by qK
    server.py        the server's post-processing: RMT on stacked factor latents / updates, decode, apply
    run.py           the federated run: config, privacy plan, stage 1, rounds, run directory
"""
