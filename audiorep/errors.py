"""The one base class of every error that is the user's to fix.

Each layer raises its own subclass (AudioError, DatasetError, ConfigError, ...) with a message that names the
problem and the fix. The `audiorep` command prints such an error as one line and exits with status 2; anything
else is a bug and keeps its traceback. Imports nothing, so every layer may import it.
"""


class AudiorepError(Exception):
    """A problem with what the user gave (a file, a flag, a config, a checkpoint): message = problem + fix."""
