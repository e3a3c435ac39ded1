"""The one exception users can cause. The CLI turns it into one line and exit code 2."""


class ConvforgeError(Exception):
    """A problem the user can fix: bad path, corrupt file, wrong option, no GPU.

    The message is one line that names the thing and the fix.
    """


class ConfigError(ConvforgeError):
    """A bad option, config key, layer name or value."""


class DataError(ConvforgeError):
    """A missing, empty, corrupt or unreadable dataset or image."""
