"""The old path of the subcommands, now minidp/run/commands/: re-exports what scripts call."""
