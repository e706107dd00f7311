"""Dimensions and thresholds shared by the renderer's stages (metres unless stated)."""
from __future__ import annotations

FLOOR_HEIGHT = 3.2        # metres per storey, used when only building:levels is known
SIDEWALK_WIDTH = 3.0      # between the kerb and the building line
KERB_WIDTH = 0.25
QUERY_RADIUS = 150.0      # only buildings this close are drawn; fog hides the rest
NEAR = 0.3                # near-plane distance (m): nearer hits are clipped
MIN_HEIGHT = 3.0          # keeps roofs above the default eye height, so roofs never need drawing
MAX_LAYERS = 16           # nearest hits kept per image column
FILLER_GAP = 25.0         # a street stretch with no real building this close gets filler lots ...
FILLER_CLEARANCE = 8.0    # ... that keep this far from any real building
MAX_INFO_BUILDINGS = 6
MIN_BUILDING_COVERAGE = 0.003   # fraction of the image for a building to be listed in `info`
MIN_OBJECT_COVERAGE = 0.0005    # ... for a car, tree or person to be counted
