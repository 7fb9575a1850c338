"""User-facing errors: each one becomes a single line on stderr and a non-zero exit."""


class MetasslError(Exception):
    """A problem with the user's input (config, data, checkpoint, paths)."""

    exit_code = 1


class ConfigError(MetasslError):
    """An unknown key, a wrong type or an out-of-range value in the configuration."""

    exit_code = 2


class NeedsUnlabeled(ConfigError):
    """An SSL method given a split with no unlabeled example."""


class DataError(MetasslError):
    """A missing, corrupt or malformed dataset file or array."""


class CheckpointError(MetasslError):
    """An unreadable, foreign or incompatible checkpoint or run directory."""


class TrainingDiverged(MetasslError):
    """The loss became NaN or infinite."""

    exit_code = 3
