"""stronghold-init: inject short-lived, scoped credentials into a process at start."""

# Kept here rather than read from package metadata: importlib.metadata costs
# start-up time that every container start would pay.
__version__ = "0.1.0"
