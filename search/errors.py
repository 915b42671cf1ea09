"""The one exception for bad input to a search (config, option, file): one line, ``field: problem``, exit 2."""


class ConfigError(ValueError):
    """A bad config: ``str(err)`` is one line, ``field: problem``."""
