"""Errors shared across modules."""


class NotApplicable(RuntimeError):
    """An experiment or baseline that cannot run in this setting; the message says why and what would make it
    run (e.g. MaPLe needs a transformer image tower; re-partitioning needs an OSM extract of the city)."""
