"""Each configuration field written once: the dataclass field carries its command-line flag.

    @dataclass(frozen=True)
    class PrivacyConfig:
        max_grad_norm: float = flag("--clip", 1.0, help="C: per-example gradient norm bound")

``flag`` is ``dataclasses.field`` with a ``Flag`` (name, help, choices, metavar, ...) in its metadata. From
those fields ``Flags`` GENERATES everything a command line needs, so a new field is one line, not five:

    FLAGS = Flags(TrainConfig)
    FLAGS.add_to(groups)        # one add_argument per flagged field, into its help group
    FLAGS.config(vars(args))    # the TrainConfig the parsed flags describe
    FLAGS.args_of(config)       # the inverse: {argparse dest: value}
    FLAGS.field_flags()         # {"privacy.max_grad_norm": "--clip", ...}: error messages name both

A flag's value type comes from the field's annotation: float -> ``finite_float`` (inf and nan refused),
int -> int, str -> str, bool -> a switch (``store_true``; ``invert=True`` for a ``--no-X`` switch that sets
a field whose default is True to False). ``--help`` lists the flags group by group, each group in field order.
Rules that involve more than one field (``--epsilon``'s default of 8 unless ``--noise-multiplier``, ...)
stay written out in the command's ``config_from_args``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass

from minidp.run.commands.flags import finite_float

SAME = object()  # a Flag's cli_default when the flag defaults to the field's own default
VALUE_TYPES = {float: finite_float, int: int, str: None, bool: None}  # argparse's ``type=`` per field type


@dataclass(frozen=True)
class Flag:
    """How one config field appears on the command line."""

    name: str  # "--clip"
    help: str | None = None
    choices: tuple | None = None
    metavar: str | None = None
    cli_default: object = SAME  # the flag's default where it is not the field's (e.g. None: "not given")
    group: str | None = None  # the help group (a section name) when not the field's own section
    invert: bool = False  # a bool field whose switch turns it off: --no-save-model -> run.save_model = False
    exclusive: str | None = None  # flags with the same key are mutually exclusive (--epochs / --steps)
    required: bool = False

    @property
    def dest(self) -> str:
        """argparse's attribute name: "--no-save-model" -> "no_save_model"."""
        return self.name.lstrip("-").replace("-", "_")


def flag(name: str, default=MISSING, *, default_factory=MISSING, **spec) -> dataclasses.Field:
    """A dataclass field with default ``default`` (or ``default_factory``) that is the flag ``name``;
    ``spec``: the other ``Flag`` attributes (help, choices, metavar, cli_default, group, invert, ...)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"flag": Flag(name, **spec)})


def flag_of(section_cls, name: str) -> Flag:
    """The ``Flag`` of ``section_cls``'s field ``name``."""
    return next(f for f in dataclasses.fields(section_cls) if f.name == name).metadata["flag"]


def reuse(section_cls, name: str, **changes) -> Flag:
    """Another command's flag for ``section_cls.name``, with ``changes`` (e.g. its own help)."""
    return dataclasses.replace(flag_of(section_cls, name), **changes)


@dataclass(frozen=True)
class Entry:
    """One row of the generated table: the field ``section.name``, its flag, value type and flag default."""

    section: str  # "privacy"
    name: str  # "max_grad_norm"
    flag: Flag
    kind: type  # float | int | str | bool
    default: object  # the flag's default


class Flags:
    """The flags of one command, generated from the fields of its config class (sections of dataclasses).

    ``shared``: {section: {field: Flag}} for a section borrowed from another command (federated's model and
    data are train's ``ModelConfig`` and ``DataConfig``): only these of its fields are flags, in this order.
    ``base``: {section: {field: value}}: the values of that section's fields before the flags are applied
    (federated's model: trainable "lora", rank 4); a flag without a ``cli_default`` defaults to them too.
    """

    def __init__(self, config_cls, shared: dict | None = None, base: dict | None = None):
        self.config_cls = config_cls
        self.sections = typing.get_type_hints(config_cls)  # {"model": ModelConfig, ...}
        self.base = base or {}
        self.entries: list[Entry] = []
        for section in dataclasses.fields(config_cls):
            section_cls = self.sections[section.name]
            fields = {f.name: f for f in dataclasses.fields(section_cls)}
            kinds = typing.get_type_hints(section_cls)
            if shared and section.name in shared:
                flags = shared[section.name]
            else:
                flags = {name: f.metadata["flag"] for name, f in fields.items() if "flag" in f.metadata}
            for name, spec in flags.items():
                kind = _value_type(kinds[name])
                default = spec.cli_default
                if default is SAME:
                    default = self.base.get(section.name, {}).get(name, fields[name].default)
                if kind is bool:
                    default = False  # a switch: given or not (``invert``: given sets the field to False)
                    if fields[name].default is not spec.invert:
                        raise TypeError(f"{section.name}.{name}: a {spec.name} switch needs the field's default "
                                        f"to be {spec.invert}")
                if default is MISSING:
                    raise TypeError(f"{section.name}.{name}: {spec.name} needs a default (or cli_default)")
                self.entries.append(Entry(section.name, name, spec, kind, default))

    def add_to(self, groups: dict) -> None:
        """One ``add_argument`` per entry, group by group: ``groups`` maps a section name to its argparse
        argument group; an entry goes to ``groups[flag.group or section]``, in table order."""
        missing = {e.flag.group or e.section for e in self.entries} - set(groups)
        if missing:
            raise KeyError(f"no argument group for the flags of {sorted(missing)}")
        exclusive = {}
        for key, group in groups.items():
            for e in self.entries:
                if (e.flag.group or e.section) != key:
                    continue
                target = group
                if e.flag.exclusive:
                    if e.flag.exclusive not in exclusive:
                        exclusive[e.flag.exclusive] = group.add_mutually_exclusive_group()
                    target = exclusive[e.flag.exclusive]
                if e.kind is bool:
                    target.add_argument(e.flag.name, action="store_true", help=e.flag.help)
                else:
                    target.add_argument(e.flag.name, type=VALUE_TYPES[e.kind], default=e.default,
                                        choices=e.flag.choices, metavar=e.flag.metavar, required=e.flag.required,
                                        help=e.flag.help)

    def config(self, values: dict):
        """The config the flag values ``values`` ({dest: value}, e.g. ``vars(args)``) describe."""
        sections = {name: dict(self.base.get(name, {})) for name in self.sections}
        for e in self.entries:
            value = values[e.flag.dest]
            sections[e.section][e.name] = (not value) if e.flag.invert else value
        return self.config_cls(**{name: self.sections[name](**fields) for name, fields in sections.items()})

    def args_of(self, config) -> dict:
        """The inverse of ``config``: the flag values ({dest: value}) that describe ``config``."""
        args = {}
        for e in self.entries:
            value = getattr(getattr(config, e.section), e.name)
            args[e.flag.dest] = (not value) if e.flag.invert else value
        return args

    def field_flags(self) -> dict:
        """{"section.field": "--flag"} of every flagged field."""
        return {f"{e.section}.{e.name}": e.flag.name for e in self.entries}


def _value_type(annotation) -> type:
    """float for ``float`` and ``float | None``; likewise int, str, bool."""
    kinds = [t for t in (typing.get_args(annotation) or (annotation,)) if t is not type(None)]
    if len(kinds) != 1 or kinds[0] not in VALUE_TYPES:
        raise TypeError(f"a flag's field must be float, int, str or bool (or that | None), not {annotation}")
    return kinds[0]
