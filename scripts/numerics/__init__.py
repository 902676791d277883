"""Derivations of numerical constants used by minidp (each script prints what it derives and checks it)."""
