"""Code that minidp writes beside its exports for transformers to run (``trust_remote_code=True``).

Kept apart from minidp/ and models/ because it imports torch and transformers, which minidp never does: minidp
only copies these files as text (models/hf.py finds this folder without importing anything in it).

    modeling_minidp.py   the mean-pooling sequence classifier of a model exported with pooling "mean"
"""
