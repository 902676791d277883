"""The old path of the run's plots, now minidp/run/plots.py: re-exports what scripts call."""
from minidp.run.plots import plot_spectrum  # noqa: F401
