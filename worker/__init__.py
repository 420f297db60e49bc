"""memscore: counterfactual memory attribution for AI agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("memscore")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

# Bumped whenever the scoring math changes, so stored runs say how they were scored.
# 2: responses located only after their own header (short answers no longer matched in
# role headers), messages after the last response not sent (a Qwen3-style template now
# keeps the last answer's reasoning), empty leading pieces of a split first character
# scored, and the scoring strategies (a run's strategy says whether rows are exact).
SCORER_VERSION = "2"

__all__ = ["SCORER_VERSION", "__version__"]
