"""Scene captions for training (AddressCLIP's L_caption uses "caption + address" texts).

The paper captions every image with BLIP (large) prompted by "A street view of", keeping 10–30 words. No
captioning weights are available offline, so synthetic datasets use :class:`TemplateCaptioner`, which writes
BLIP-like captions from what the renderer knows about the view (its ``info`` dict). Captions describe the
scene only: they never name a street (the address is appended separately during training).

Any object with ``__call__(image, info) -> str`` is a :class:`Captioner`, so a neural captioner plugs in
without changes elsewhere. Example with a BLIP checkpoint already on disk (nothing is downloaded)::

    from transformers import BlipForConditionalGeneration, BlipProcessor

    class BlipCaptioner:
        def __init__(self, folder: str):
            self.processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
            self.model = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True).eval()

        def __call__(self, image, info):
            inputs = self.processor(image, "a street view of", return_tensors="pt")
            out = self.model.generate(**inputs, min_new_tokens=8, max_new_tokens=40)
            return enforce_word_limits(self.processor.decode(out[0], skip_special_tokens=True))

    build_synth(..., captioner=BlipCaptioner("/models/blip-image-captioning-large"))
"""
from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Protocol, runtime_checkable

from PIL import Image

MIN_WORDS = 10
MAX_WORDS = 30
PREFIX = "A street view of"


@runtime_checkable
class Captioner(Protocol):
    """Turns one rendered/photographed view into a caption; ``info`` may be empty for real photos."""

    def __call__(self, image: Image.Image, info: dict[str, Any]) -> str: ...


def word_count(text: str) -> int:
    return len(text.split())


def enforce_word_limits(caption: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str:
    """Cut a caption to `max_words`; pad a short one with a neutral clause up to `min_words`."""
    words = caption.strip().rstrip(".").split()
    pad = "in an urban area with buildings along the road".split()
    while len(words) < min_words:
        words += pad[: min_words - len(words)]
    return " ".join(words[:max_words]) + "."


_NUMBER = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
_KIND = {
    "apartments": "apartment building", "residential": "residential building", "house": "house",
    "detached": "detached house", "commercial": "commercial building", "retail": "shop building",
    "office": "office building", "church": "church", "cathedral": "cathedral", "school": "school building",
    "university": "university building", "hotel": "hotel", "public": "public building",
    "museum": "museum building", "industrial": "industrial building", "warehouse": "warehouse",
    "garage": "garage", "garages": "row of garages", "shed": "shed", "train_station": "station building",
    "civic": "civic building", "government": "government building", "hospital": "hospital building",
    "kindergarten": "kindergarten", "terrace": "row of terraced houses", "yes": "building",
}
# Kinds that are already nouns (the renderer reports normalised kinds such as "office building", "shop").
_NOUNS = {"building", "house", "shop", "church", "school", "hospital", "hotel", "station", "museum", "warehouse",
          "garage", "shed", "shelter", "pavilion", "greenhouse", "kiosk", "kindergarten", "cathedral"}
_WEATHER = {
    "clear": ["under a clear blue sky", "on a sunny day", "in bright sunshine"],
    "sunny": ["under a clear blue sky", "on a sunny day", "in bright sunshine"],
    "overcast": ["under an overcast sky", "on a grey cloudy day", "under heavy clouds"],
    "cloudy": ["under a cloudy sky", "on a cloudy day"],
    "rain": ["in the rain", "on a rainy day", "with wet pavement after rain"],
    "rainy": ["in the rain", "on a rainy day", "with wet pavement after rain"],
    "hazy": ["in hazy light", "on a hazy day", "through a light haze"],
    "haze": ["in hazy light", "on a hazy day", "through a light haze"],
    "fog": ["in light fog", "on a misty day"],
    "foggy": ["in light fog", "on a misty day"],
    "snow": ["in the snow", "on a snowy winter day"],
}
_TIME = {
    "morning": ["in the morning", "in the early morning light"],
    "day": ["during the day", "in daylight"],
    "noon": ["around midday", "during the day"],
    "midday": ["around midday", "at noon", "in the middle of the day"],
    "afternoon": ["in the afternoon", "late in the afternoon"],
    "evening": ["in the evening", "in the warm evening light"],
    "dusk": ["at dusk", "at sunset"],
    "night": ["at night", "under street lights at night"],
}


def _count_phrase(n: Any, one: str, many: str, rng: random.Random) -> str | None:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return None
    if n <= 0:
        return None
    if n == 1:
        return f"a {one}" if not one[0] in "aeiou" else f"an {one}"
    if n > 9:
        return rng.choice(["many", "lots of", "a row of"]) + f" {many}"
    return rng.choice([_NUMBER[n], _NUMBER[n], "a few" if n <= 4 else "several"]) + f" {many}"


def _kind_noun(kind: Any) -> str:
    """OSM tag ("apartments") or renderer kind ("office building") -> a noun phrase."""
    kind = str(kind or "yes").strip().lower()
    if kind in _KIND:
        return _KIND[kind]
    kind = kind.replace("_", " ")
    return kind if kind.split()[-1] in _NOUNS else f"{kind} building"


def _building_phrase(b: dict[str, Any], rng: random.Random, detailed: bool) -> str:
    kind = _kind_noun(b.get("kind"))
    words = []
    levels = b.get("levels")
    try:
        levels = int(round(float(levels)))
    except (TypeError, ValueError):
        levels = None
    if detailed and levels and 1 < levels < 10 and rng.random() < 0.8:
        words.append(f"{_NUMBER[levels]}-storey")
    elif levels and levels >= 10:
        words.append("tall")
    colour = b.get("colour")
    if colour and rng.random() < 0.9:
        words.append(str(colour).replace("_", " "))
    material = b.get("material")
    if detailed and material and str(material) not in ("unknown", "none") and rng.random() < 0.7:
        words.append(str(material).replace("_", " "))
    noun = " ".join(words + [kind])
    article = "an" if noun[0] in "aeiou" else "a"
    phrase = f"{article} {noun}"
    if b.get("shopfront"):
        phrase += rng.choice([" with shopfronts at street level", " with shop windows on the ground floor",
                              " with a row of shops"])
    return phrase


class TemplateCaptioner:
    """BLIP-style captions ("A street view of ...", 10–30 words) from a renderer's ``info`` dict.

    Deterministic: the same ``seed`` and ``info`` always give the same caption (the phrasing is drawn from a
    generator seeded by both, hashed stably across processes). Reads, all optional: ``buildings`` (list of
    dicts with kind, levels, colour, material, shopfront, coverage; the two with the largest coverage are
    described), ``cars``, ``trees``, ``pedestrians`` (counts), ``road_visible``, ``weather``, ``time_of_day``.
    ``synthetic_fill`` is ignored (it says where the renderer invented buildings; the caption describes what is
    shown either way). Never mentions a street name.
    """

    def __init__(self, seed: int = 0, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS):
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        self.seed, self.min_words, self.max_words = seed, min_words, max_words

    def _rng(self, info: dict[str, Any]) -> random.Random:
        blob = json.dumps(info, sort_keys=True, default=str).encode()
        return random.Random(int.from_bytes(hashlib.sha256(blob + str(self.seed).encode()).digest()[:8], "big"))

    def __call__(self, image: Image.Image | None, info: dict[str, Any]) -> str:
        info = info or {}
        rng = self._rng(info)
        # (text position, keep priority, text): when too long, the lowest priority clause goes first,
        # the remaining ones keep their natural order.
        clauses = [c for c in self._clauses(info, rng) if c[2]]
        while True:
            caption = " ".join([PREFIX] + [c[2] for c in sorted(clauses)])
            if word_count(caption) <= self.max_words or len(clauses) == 1:
                break
            clauses.remove(min(clauses[1:], key=lambda c: c[1]))
        return enforce_word_limits(caption, self.min_words, self.max_words)

    def _clauses(self, info: dict[str, Any], rng: random.Random) -> list[tuple[int, float, str | None]]:
        buildings = sorted(info.get("buildings") or [], key=lambda b: -float(b.get("coverage") or 0.0))
        buildings = [b for b in buildings if float(b.get("coverage") or 0.0) > 0.02]
        if buildings:
            subject = _building_phrase(buildings[0], rng, detailed=True)
        else:
            subject = rng.choice(["an open city street", "a wide street with no buildings in view",
                                  "an empty stretch of road in a city"])
        second = None
        if len(buildings) > 1:
            second = rng.choice(["next to", "beside"]) + " " + _building_phrase(buildings[1], rng, detailed=False)
        things = [
            _count_phrase(info.get("cars"), "parked car", "parked cars", rng),
            _count_phrase(info.get("trees"), "tree", "trees", rng),
            _count_phrase(info.get("pedestrians"), "pedestrian", "pedestrians", rng),
        ]
        things = [t for t in things if t]
        rng.shuffle(things)
        objects = None
        if things:
            joined = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
            objects = ("and" if " with " in f" {subject} {second or ''} " or rng.random() < 0.3 else "with") + " " + joined
        road = rng.choice(["along the road", "by the roadside", "seen from the road"]) if info.get("road_visible") else None
        weather = _WEATHER.get(str(info.get("weather", "")).lower())
        time = _TIME.get(str(info.get("time_of_day", "")).lower())
        weather_text = rng.choice(weather) if weather else None
        time_text = rng.choice(time) if time else None
        if weather_text and time_text and " day" in weather_text and " day" in time_text:
            time_text = None  # "on a sunny day during the day"
        w_first = rng.random() < 0.5
        # Random priorities (within bands) vary which details survive the length limit.
        return [
            (0, 10.0, subject),
            (1, 2 + rng.random(), second),
            (2, 4 + rng.random(), objects),
            (3, 1 + rng.random(), road),
            (4 if w_first else 5, 3 + rng.random(), weather_text),
            (5 if w_first else 4, 3 + rng.random(), time_text),
        ]
