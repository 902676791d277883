"""minidp: differentially private fine-tuning of RoBERTa/BERT from scratch in NumPy/CuPy.

See README.md for the two set-up commands and docs/ for the derivations.
"""
__version__ = "0.1.0"
