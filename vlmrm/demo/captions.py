"""Describe simulator states in words, with paraphrase variety (training data of the demo model).

The vocabulary covers the paper's prompts: "pole vertically upright on top of the cart",
"pole and cart", "a car at the peak of the mountain, next to the yellow flag" and
"a car in the mountain".
"""

from __future__ import annotations

import math
import random

CARTPOLE_GOAL = "pole vertically upright on top of the cart"
CARTPOLE_BASELINE = "pole and cart"
MOUNTAINCAR_GOAL = "a car at the peak of the mountain, next to the yellow flag"
MOUNTAINCAR_BASELINE = "a car in the mountain"
FLAG_POSITION = 0.45

_POLE = [  # (max |angle| in degrees, phrasings); {side} is left or right
    (6, [CARTPOLE_GOAL, "the pole stands straight up on the cart",
         "an upright pole balanced on top of a cart", "a pole held vertically on the cart"]),
    (15, ["the pole leans slightly to the {side}", "a pole tilted a little to the {side}",
          "a nearly upright pole leaning {side}"]),
    (35, ["the pole leans to the {side}", "a pole tilted to the {side} on the cart",
          "a pole falling over to the {side}"]),
    (70, ["the pole leans far to the {side}", "a pole almost fallen to the {side}",
          "a steeply tilted pole, falling {side}"]),
    (110, ["the pole lies flat, pointing {side}", "a fallen pole lying horizontally",
           "a horizontal pole sticking out to the {side}"]),
    (181, ["the pole hangs down below the cart", "an upside-down pole under the cart",
           "a pole pointing down to the ground"]),
]
_CART = [(-0.8, "on the left of the track"), (0.8, "in the middle of the track"),
         (math.inf, "on the right of the track")]

_CAR = [  # (max position, phrasings)
    (-0.95, ["a car high on the left hill, far from the flag",
             "a car on the far left slope of the mountain"]),
    (-0.7, ["a car on the left slope, far from the flag", "a car climbing the left hill"]),
    (-0.3, ["a car at the bottom of the valley", "a car in the valley between the hills",
            "a car down in the valley of the mountain"]),
    (0.1, ["a car on the lower right slope", "a car leaving the valley towards the flag"]),
    (0.4, ["a car high on the right hill, close to the flag",
           "a car climbing the right slope, near the flag"]),
    (math.inf, [MOUNTAINCAR_GOAL, "the car reached the yellow flag on the hilltop",
                "a car beside the flag at the top of the mountain"]),
]


def cartpole_caption(x: float, theta: float, rng: random.Random) -> str:
    """A caption for cart position ``x`` and pole angle ``theta`` (radians, positive = right)."""
    if rng.random() < 0.1:
        return rng.choice([CARTPOLE_BASELINE, "a cart with a pole", "a pole on a cart"])
    degrees = abs(math.degrees(math.atan2(math.sin(theta), math.cos(theta))))
    side = "right" if math.sin(theta) > 0 else "left"
    phrases = next(p for limit, p in _POLE if degrees < limit)
    text = rng.choice(phrases).format(side=side)
    if rng.random() < 0.4:
        where = next(w for limit, w in _CART if x < limit)
        text = f"{text}, the cart {where}"
    return text


def mountaincar_caption(position: float, rng: random.Random) -> str:
    """A caption for the car's ``position`` on the track ([-1.2, 0.6]; the flag is at 0.45)."""
    if rng.random() < 0.1:
        return rng.choice([MOUNTAINCAR_BASELINE, "a car on a hill", "a car on a mountain road"])
    phrases = next(p for limit, p in _CAR if position < limit)
    return rng.choice(phrases)
