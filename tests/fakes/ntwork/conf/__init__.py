"""Package-wide settings. The names and values are the ones ntwork 0.1.3 publishes, because callers
read and write them (`set_wework_exe_path` stores into the two DEFAULT_* slots)."""

VERSION = "0.1.3"

# Loggers take their level from os.environ[LOG_KEY], falling back to LOG_LEVEL.
LOG_KEY = "NTWORK_LOG"
LOG_LEVEL = "DEBUG"

# None means "let the manager ask wcprobe" (version) / "the installed client" (path).
DEFAULT_WEWORK_EXE_PATH = None
DEFAULT_WEWORK_VERSION = None
