"""Draw the tray icons: a shape and a symbol per state, so colour is never the only signal.

green: circle with a check mark · amber: triangle with "!" · red: octagon with a cross ·
grey: hollow circle with a dash.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"green": (27, 127, 59), "amber": (214, 120, 0), "red": (179, 38, 30), "grey": (110, 114, 120)}
SIZE = 64


def icon_image(state: str, size: int = SIZE) -> Image.Image:
    """Return the RGBA icon for a state."""
    scale = 4  # draw large, then downsample for smooth edges
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS.get(state, COLOURS["grey"])
    white = (255, 255, 255, 255)
    pad = big * 0.04
    width = max(int(big * 0.11), 1)
    if state == "green":
        draw.ellipse((pad, pad, big - pad, big - pad), fill=colour)
        draw.line(
            [(big * 0.27, big * 0.52), (big * 0.43, big * 0.68), (big * 0.74, big * 0.34)],
            fill=white,
            width=width,
            joint="curve",
        )
    elif state == "amber":
        draw.polygon([(big / 2, pad), (big - pad, big - pad * 2), (pad, big - pad * 2)], fill=colour)
        draw.line([(big / 2, big * 0.32), (big / 2, big * 0.66)], fill=white, width=width)
        r = width * 0.6
        draw.ellipse((big / 2 - r, big * 0.76 - r, big / 2 + r, big * 0.76 + r), fill=white)
    elif state == "red":
        radius = big / 2 - pad
        points = [
            (
                big / 2 + radius * math.cos(math.pi / 8 + i * math.pi / 4),
                big / 2 + radius * math.sin(math.pi / 8 + i * math.pi / 4),
            )
            for i in range(8)
        ]
        draw.polygon(points, fill=colour)
        draw.line([(big * 0.32, big * 0.32), (big * 0.68, big * 0.68)], fill=white, width=width)
        draw.line([(big * 0.68, big * 0.32), (big * 0.32, big * 0.68)], fill=white, width=width)
    else:
        draw.ellipse((pad, pad, big - pad, big - pad), outline=colour, width=width, fill=(235, 235, 235, 255))
        draw.line([(big * 0.3, big / 2), (big * 0.7, big / 2)], fill=colour, width=width)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render_all(folder: Path, size: int = SIZE) -> list[Path]:
    """Write ``tray-<state>.png`` for every state into ``folder``; return the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for state in COLOURS:
        path = folder / f"tray-{state}.png"
        icon_image(state, size).save(path)
        written.append(path)
    return written
