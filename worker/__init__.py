"""memscore: counterfactual memory attribution for AI agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memscore")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

# Bumped whenever the scoring math changes, so stored runs say how they were scored.
SCORER_VERSION = "1"

__all__ = ["SCORER_VERSION", "__version__"]
