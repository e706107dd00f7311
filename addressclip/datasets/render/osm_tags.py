"""OSM tag values: clean strings, numbers in values, and carriageway width and class by ``highway`` tag."""
from __future__ import annotations

import math
import re
from typing import Any

# Full carriageway width (m) by OSM highway class.
_ROAD_WIDTH = {
    "motorway": 14.0, "trunk": 12.0, "primary": 12.0, "secondary": 10.0, "tertiary": 8.5,
    "unclassified": 7.0, "residential": 6.5, "living_street": 5.0, "service": 4.5, "road": 6.0,
    "busway": 7.0, "motorway_link": 6.0, "trunk_link": 6.0, "primary_link": 6.0, "secondary_link": 6.0,
    "tertiary_link": 6.0, "pedestrian": 6.0, "footway": 2.5, "path": 2.0, "cycleway": 2.5, "steps": 2.0,
    "track": 3.0, "bridleway": 2.0, "corridor": 2.0,
}
_DRIVABLE = {
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential", "living_street",
    "service", "road", "busway", "motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link",
}
_MAIN_ROADS = {"motorway", "trunk", "primary", "secondary", "tertiary"}


def _tag(value: Any) -> str | None:
    """A clean string tag, or None for missing values (None, NaN, pandas NA, empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return None
    text = str(value).strip()
    return text or None


def road_width(highway: Any) -> float:
    """Carriageway width (m) for an OSM highway class; 6 m for unknown roads, 2.5 m for other ways."""
    tag = (_tag(highway) or "road").lower()
    return _ROAD_WIDTH.get(tag, 6.0 if tag in _DRIVABLE else 2.5)


def is_drivable(highway: Any) -> bool:
    return (_tag(highway) or "road").lower() in _DRIVABLE


def _first_number(value: Any) -> float | None:
    """First number in an OSM value such as '5', '3.5', '12 m', '5;6'."""
    text = _tag(value)
    if text is None:
        return None
    match = re.search(r"\d+(?:\.\d+)?", text.replace(",", "."))
    return float(match.group()) if match else None
