"""minidp/run/flagspec.py: each config field is written once, and the command line is generated from it.

The parser's config flags, ``config_from_args``, its inverse and ``FIELD_FLAGS`` of `minidp train` and
`minidp federated` all come from the fields' ``flag(...)`` metadata: every flagged field is in the parser with
its help, default, choices and metavar; a config goes to flags and back unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from minidp.denoise.gradients import DenoiseSettings
from minidp.run.cli import build_parser
from minidp.run.commands import federated as federated_command
from minidp.run.commands import train as train_command
from minidp.run.commands.flags import finite_float
from minidp.run.config import (FIELD_FLAGS, TRAIN_FLAGS, DataConfig, DenoiseConfig, ModelConfig, OptimConfig,
                               PrivacyConfig, RunConfig, TrainConfig)
from minidp.errors import ConfigError
from minidp.run.federated.config import FEDERATED_FLAGS, FederatedConfig, FederationConfig, FedRunConfig
from minidp.run.flagspec import Flags, flag

COMMANDS = {"train": (TRAIN_FLAGS, {"--overwrite", "--resume", "--json"}),  # the flags that are no field
            "federated": (FEDERATED_FLAGS, {"--json"})}


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


def options(command: str) -> dict:
    """{"--clip": argparse action, ...} of one subcommand (help left out)."""
    return {action.option_strings[0]: action for action in subparser(command)._actions
            if action.option_strings and action.option_strings[0] != "-h"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flagged_field_is_in_the_parser_as_its_metadata_says(command):
    flags, hand_written = COMMANDS[command]
    actions = options(command)
    generated = {e.flag.name for e in flags.entries}
    assert set(actions) == generated | hand_written and not generated & hand_written
    for e in flags.entries:
        action = actions[e.flag.name]
        assert action.help == e.flag.help, e.flag.name
        assert action.dest == e.flag.dest
        assert action.required == e.flag.required
        if e.kind is bool:
            assert isinstance(action, argparse._StoreTrueAction) and action.default is False
            continue
        assert action.default == e.default and action.choices == e.flag.choices and action.metavar == e.flag.metavar
        assert action.type is {float: finite_float, int: int, str: None}[e.kind], e.flag.name


def test_every_train_field_has_a_flag_and_field_flags_is_generated():
    """Nothing of TrainConfig is left off the command line; FIELD_FLAGS names every field's flag."""
    fields = {f"{section.name}.{f.name}" for section in dataclasses.fields(TrainConfig)
              for f in dataclasses.fields(section.default_factory)}
    assert set(FIELD_FLAGS) == fields
    assert FIELD_FLAGS == {f"{e.section}.{e.name}": e.flag.name for e in TRAIN_FLAGS.entries}
    assert FIELD_FLAGS["privacy.max_grad_norm"] == "--clip" and FIELD_FLAGS["data.data_dir"] == "--data"
    assert FIELD_FLAGS["optim.warmup_fraction"] == "--warmup" and FIELD_FLAGS["denoise.method"] == "--denoise-method"
    assert FIELD_FLAGS["denoise.min_dim"] == "--denoise-min-dim" and FIELD_FLAGS["run.save_model"] == "--no-save-model"


def test_the_flag_defaults_are_the_field_defaults_but_where_a_rule_decides():
    """A flag defaults to its field's default, except the None that means "not given" (ε: 8 unless σ is
    given; epochs: 1 unless --steps; --device: $MINIDP_DEVICE; --model, --out: required)."""
    train = TrainConfig()
    decided = {"privacy.epsilon", "run.epochs", "model.device", "model.path"}
    for e in TRAIN_FLAGS.entries:
        field_default = getattr(getattr(train, e.section), e.name)
        if f"{e.section}.{e.name}" in decided:
            assert e.default is None
        elif e.kind is bool:
            assert field_default is e.flag.invert
        else:
            assert e.default == field_default, e.flag.name
    federated = FederatedConfig()
    for e in FEDERATED_FLAGS.entries:
        if e.kind is not bool and e.default is not None:
            assert e.default == getattr(getattr(federated, e.section), e.name), e.flag.name
    actions = options("federated")
    assert actions["--lora-rank"].default == 4 and actions["--lora-alpha"].default == 8.0  # train's: 8, 16
    assert options("train")["--lora-rank"].default == 8


def test_denoise_config_keeps_the_core_settings_defaults():
    """DenoiseConfig redeclares DenoiseSettings' fields for their flags: same names, order and defaults."""
    core = [(f.name, f.default) for f in dataclasses.fields(DenoiseSettings)]
    assert [(f.name, f.default) for f in dataclasses.fields(DenoiseConfig)][:len(core)] == core


def non_default_train_config() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(path="ckpt", trainable="lora", dtype="float64", device="cuda", max_length=64,
                          pooling="mean", lora_rank=4, lora_alpha=8.0, lora_targets="query,key", lora_dropout=0.1,
                          lora_modules_to_save="pooler", merge_lora=True),
        data=DataConfig(task="csv", data_dir="glue", train_file="t.csv", eval_file="e.csv", text_column="text",
                        text_pair_column="pair", label_column="label", eval_fraction=0.2, eval_limit=50,
                        validation_fraction=0.25),
        privacy=PrivacyConfig(epsilon=3.0, delta=1e-6, noise_multiplier=1.1, max_grad_norm=0.5,
                              clip_method="automatic", accountant="pld"),
        optim=OptimConfig(optimizer="sgd", lr=0.01, weight_decay=0.1, momentum=0.9, warmup_fraction=0.1),
        denoise=DenoiseConfig(kappa=1.5, norm_correction="noisy", fallback="zero", method="exact", min_dim=3,
                              denoise="rmt"),
        run=RunConfig(epochs=None, steps=10, batch_size=64, max_physical_batch=8, seed=7, eval_every=5,
                      eval_batch_size=16, out="out", diagnostics=True, plot=True, save_model=False, progress=False,
                      checkpoint_every=3),
    )


def argv_of(flags: Flags, config) -> list[str]:
    """The command line that describes ``config``: each flag whose value is not None (a switch: when on)."""
    argv = []
    for dest, value in flags.args_of(config).items():
        name = next(e.flag.name for e in flags.entries if e.flag.dest == dest)
        if isinstance(value, bool):
            argv += [name] if value else []
        elif value is not None:
            argv += [name, str(value)]
    return argv


def test_train_config_to_flags_and_back_is_the_identity():
    config = non_default_train_config()
    default = TrainConfig()
    unchanged = {f"{s}.{n}" for s, fields in config.to_dict().items() for n, v in fields.items()
                 if v == getattr(getattr(default, s), n)}
    assert unchanged == {"model.lora_adapter", "privacy.non_private"}  # the two that cannot change with the rest
    defaults = vars(subparser("train").parse_args([]))
    assert train_command.config_from_args(argparse.Namespace(**train_command._args_of(config, defaults))) == config
    args = build_parser().parse_args(["train", *argv_of(TRAIN_FLAGS, config)])
    assert train_command.config_from_args(args) == config


def test_train_rules_that_no_single_field_holds():
    parse = build_parser().parse_args
    plain = train_command.config_from_args(parse(["train", "--model", "m", "--device", "cpu"]))
    assert plain.privacy.epsilon == 8.0 and plain.run.epochs == 1.0 and plain.run.steps is None
    assert plain.run.save_model and plain.run.progress
    sigma = train_command.config_from_args(parse(["train", "--model", "m", "--noise-multiplier", "1", "--steps",
                                                  "3", "--no-save-model", "--no-progress"]))
    assert sigma.privacy.epsilon is None and sigma.run.epochs is None and sigma.run.steps == 3
    assert not sigma.run.save_model and not sigma.run.progress
    assert train_command.config_from_args(parse(["train", "--model", "m", "--non-private"])).privacy.epsilon is None
    with pytest.raises(SystemExit):
        parse(["train", "--model", "m", "--epochs", "1", "--steps", "2"])  # mutually exclusive


def non_default(value, kind, choices):
    if choices:
        return next(c for c in choices if c != value)
    if kind is bool:
        return not value
    if kind is float:
        return 0.5 if value is None else value + 0.25
    if kind is int:
        return 7 if value is None else value + 3
    return "x" if not value else value + "x"


def test_federated_config_to_flags_and_back_is_the_identity():
    config = FederatedConfig()
    for e in FEDERATED_FLAGS.entries:
        section = getattr(config, e.section)
        value = non_default(getattr(section, e.name), e.kind, e.flag.choices)
        config = dataclasses.replace(config, **{e.section: dataclasses.replace(section, **{e.name: value})})
    assert config.model.trainable == "lora"  # not a federated flag: FEDERATED_MODEL's
    back = federated_command.config_from_args(argparse.Namespace(**federated_command.args_of(config)))
    assert back == config
    args = build_parser().parse_args(["federated", *argv_of(FEDERATED_FLAGS, config)])
    assert federated_command.config_from_args(args) == config


@dataclasses.dataclass(frozen=True)
class Part:
    rate: float = flag("--rate", 0.5, help="a rate")
    count: int | None = flag("--count", None, exclusive="size")
    size: int = flag("--size", 3, cli_default=None, exclusive="size")
    name: str = flag("--name", "a", choices=("a", "b"), metavar="N")
    loud: bool = flag("--no-loud", True, invert=True)


@dataclasses.dataclass(frozen=True)
class Whole:
    part: Part = dataclasses.field(default_factory=Part)


def test_federated_errors_name_the_generated_flag():
    bad = dataclasses.replace(FederatedConfig(model=dataclasses.replace(FederatedConfig().model, path="m")),
                              run=FedRunConfig(out="o"), federation=FederationConfig(sample_rate=1.5))
    with pytest.raises(ConfigError, match=r"^federation\.sample_rate \(--client-rate\): 1\.5 must be in \(0, 1\]$"):
        bad.validate()


def test_a_toy_config_shows_the_generated_pieces():
    """flag(): value types from the annotations, --no-X switches, mutually exclusive flags, cli_default."""
    flags = Flags(Whole)
    parser = argparse.ArgumentParser()
    flags.add_to({"part": parser.add_argument_group("part")})
    args = vars(parser.parse_args(["--rate", "2", "--count", "4", "--no-loud"]))
    assert args == {"rate": 2.0, "count": 4, "size": None, "name": "a", "no_loud": True}
    assert flags.config(args) == Whole(Part(rate=2.0, count=4, size=None, loud=False))
    assert flags.args_of(Whole()) == {"rate": 0.5, "count": None, "size": 3, "name": "a", "no_loud": False}
    assert flags.field_flags() == {"part.rate": "--rate", "part.count": "--count", "part.size": "--size",
                                   "part.name": "--name", "part.loud": "--no-loud"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "1", "--size", "2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "inf"])  # finite_float
