"""Everything that runs and records a run, on top of the DP core (minidp/*) and the models (models/).

    train.py        the run: plan the privacy, build, loop, summarise
    config.py       the run configuration (frozen dataclasses), validated before any work
    rundir.py       the run directory's files and which of them the guarantee covers
    checkpoint.py   atomic checkpoints for exact resume
    metrics.py      accuracy, F1, binomial intervals
    plots.py        plots of a run (matplotlib, optional)
    audit/          the empirical audit: the canaries, the attack, the two audits
    federated/      federated LoRA with client-level DP: a simulator that runs the core on many clients
    commands/       one module per subcommand;  cli.py: the `minidp` entry point over them

Imports point one way: minidp/run/ -> models/ -> the core; the core never imports models/ or minidp/run/.
"""
