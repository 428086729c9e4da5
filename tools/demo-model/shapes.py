"""Synthetic photos of coloured shapes, the demo model's data set (numpy + Pillow, seeded).

A photo: photo-like size (320x240, 300x300, 240x320, 400x300 or 256x192), a low-saturation
background with a random gradient and Gaussian noise, and one antialiased shape of a class's
colour (jittered) with random centre, size and rotation. The shape always lies inside the
central 224/256 of the photo, so the seed's centre crop never cuts it.

Classes pair every colour with two shapes and every shape with two colours, so the classifier
has to see both colour and form.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

# (synset id, colour, shape). The synset line is "<id> <colour> <shape>".
CLASSES = [
    ('n00000001', 'red', 'circle'),
    ('n00000002', 'red', 'square'),
    ('n00000003', 'green', 'triangle'),
    ('n00000004', 'green', 'star'),
    ('n00000005', 'blue', 'circle'),
    ('n00000006', 'blue', 'triangle'),
    ('n00000007', 'yellow', 'star'),
    ('n00000008', 'yellow', 'square'),
]

COLOURS = {
    'red': (215, 35, 35),
    'green': (35, 160, 55),
    'blue': (35, 75, 215),
    'yellow': (240, 205, 25),
}

SIZES = [(320, 240), (300, 300), (240, 320), (400, 300), (256, 192)]
SUPERSAMPLE = 4


def synset_line(cls):
    sid, colour, shape = CLASSES[cls]
    return '%s %s %s' % (sid, colour, shape)


def file_stem(cls):
    _, colour, shape = CLASSES[cls]
    return '%s-%s' % (colour, shape)


def _polygon(shape, cx, cy, r, angle):
    if shape == 'square':
        pts = [(r, math.pi / 4 + k * math.pi / 2) for k in range(4)]  # r: half-diagonal
    elif shape == 'triangle':
        pts = [(r, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    elif shape == 'star':
        pts = [(r if k % 2 == 0 else 0.45 * r, -math.pi / 2 + k * math.pi / 5) for k in range(10)]
    else:
        raise ValueError(shape)
    return [(cx + q * math.cos(a + angle), cy + q * math.sin(a + angle)) for q, a in pts]


def _mask(shape, w, h, cx, cy, r, angle):
    """Antialiased coverage mask (float32 0..1) of one shape, drawn supersampled."""
    s = SUPERSAMPLE
    img = Image.new('L', (w * s, h * s), 0)
    d = ImageDraw.Draw(img)
    if shape == 'circle':
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        d.polygon([(x * s, y * s) for x, y in _polygon(shape, cx, cy, r, angle)], fill=255)
    img = img.resize((w, h), Image.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def render(cls, rng, noise_max=14.0, size=None):
    """Returns (PIL RGB image, params dict) for class index `cls`, drawing from `rng`."""
    _, colour, shape = CLASSES[cls]
    w, h = size if size else SIZES[rng.randint(len(SIZES))]
    # Background: grey with a small tint, a linear gradient and Gaussian noise.
    base = rng.uniform(70, 235) + rng.uniform(-18, 18, size=3)
    grad = rng.uniform(-35, 35, size=(2, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = (base[None, None, :] + (xx / w - 0.5)[..., None] * grad[0] +
          (yy / h - 0.5)[..., None] * grad[1])
    noise = rng.uniform(0.0, noise_max)
    bg = bg + rng.standard_normal((h, w, 3)).astype(np.float32) * noise
    # Shape: size relative to the shorter side, kept inside the centre crop (15/16 .. 1/16).
    short = min(w, h)
    r = rng.uniform(0.17, 0.32) * short
    mx, my = w / 16.0 + r + 2, h / 16.0 + r + 2
    cx = rng.uniform(mx, w - mx)
    cy = rng.uniform(my, h - my)
    angle = rng.uniform(0, 2 * math.pi)
    col = np.clip(np.array(COLOURS[colour], np.float32) + rng.uniform(-25, 25, size=3), 0, 255)
    shade = rng.standard_normal((h, w, 1)).astype(np.float32) * (noise * 0.5)
    m = _mask(shape, w, h, cx, cy, r, angle)[..., None]
    img = bg * (1 - m) + (col[None, None, :] + shade) * m
    img = np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)
    return Image.fromarray(img, 'RGB'), {'size': (w, h), 'r': r, 'noise': noise}
