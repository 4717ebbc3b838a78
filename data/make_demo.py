"""Generate the synthetic audio-visual demo set of lvs-keras (data/demo).

Every frame shows two or three large objects of distinct classes on a cluttered background; the audio is the
sound of exactly one of them, picked uniformly, and that object's box is the ground truth. Which object sounds
cannot be told from the picture (it is not the largest, the topmost, the most central nor in a fixed place more
often than chance), so localisation needs the audio.

Six classes, each a (shape, colour) pair with its own sound (a harmonic tone at its own base frequency, with its
own amplitude-modulation rhythm):

    red disc, green square, blue triangle, yellow cross, magenta ring, cyan diamond

Layout written to --out_dir:

    train/demo_00001.jpg + train/demo_00001.wav, ...        (training pairs)
    test/demo_test_0001.jpg + test/demo_test_0001.wav, ...  (held-out pairs)
    train_annotations.json, test_annotations.json           (vggss.json's format: a list of
                                                             {"file", "class", "bbox": [[xmin, ymin, xmax, ymax]]},
                                                             coordinates normalised to 0..1)
    test.csv                                                (one test id a line, like vggss_test.csv)

The output is deterministic: the same arguments give byte-identical files, and item K of a split is the same
whatever the counts (each item draws from its own numpy generator seeded by (seed, split, K)).

Run from the repository root (this exact command regenerates the committed data/demo):

    python data/make_demo.py --out_dir data/demo --train_count 460 --test_count 110 --seed 0

Smaller set elsewhere:

    python data/make_demo.py --out_dir /tmp/demo --train_count 50 --test_count 10
"""

import argparse
import colorsys
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io.wavfile
from PIL import Image, ImageDraw
from tqdm import tqdm


@dataclass(frozen=True)
class ObjectClass:
    """One class of sounding object: how it looks and how it sounds."""

    name: str
    shape: str
    hue: float  # 0..1, HSV hue of its colour
    base_frequency: float  # Hz, the fundamental (the loudest partial)
    harmonics: tuple  # relative amplitudes of partials 1, 2, 3, ...
    modulation_rate: float  # Hz, amplitude-modulation rhythm
    modulation_depth: float  # 0..1


# Base frequencies and modulation rates are multiples of 2 Hz, so a 0.5 s clip holds whole cycles and tiles seamlessly.
CLASSES = (
    ObjectClass("red disc", "disc", 0.0, 210.0, (1.0, 0.55, 0.3), 4.0, 0.8),
    ObjectClass("green square", "square", 1.0 / 3.0, 300.0, (1.0, 0.2), 10.0, 0.6),
    ObjectClass("blue triangle", "triangle", 2.0 / 3.0, 440.0, (1.0, 0.6, 0.45, 0.3), 2.0, 0.9),
    ObjectClass("yellow cross", "cross", 1.0 / 6.0, 640.0, (1.0, 0.35), 14.0, 0.7),
    ObjectClass("magenta ring", "ring", 5.0 / 6.0, 930.0, (1.0, 0.5, 0.2), 6.0, 0.5),
    ObjectClass("cyan diamond", "diamond", 0.5, 1350.0, (1.0, 0.3), 8.0, 1.0),
)
CLASS_NAMES = tuple(object_class.name for object_class in CLASSES)

SPLITS = {"train": 0, "test": 1}
SUPERSAMPLE = 2  # objects and clutter are drawn at twice the size, then box-filtered down (anti-aliasing)
BOX_SIDE_RANGE = (0.5, 0.58)  # shorter side of an object's box, as a fraction of the frame
INWARD_JITTER = 0.04  # how far (fraction of the frame) an object may move from its corner towards the centre
ROTATION_DEGREES = 15.0
OBJECT_SATURATION_RANGE = (0.8, 1.0)
OBJECT_VALUE_RANGE = (0.8, 1.0)
OBJECT_HUE_JITTER = 0.025
CLUTTER_SATURATION_MAX = 0.3  # background, blobs, lines and distractors are never strongly coloured
NOISE_STD = 0.02  # white noise added to the sound (full scale is 1)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SceneObject:
    """One object of a frame; objects of a frame are listed in drawing order (the last one is on top)."""

    class_index: int
    class_name: str
    box: tuple  # (xmin, ymin, xmax, ymax), normalised to 0..1
    cell: int  # 2x2 grid cell: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
    colour: tuple  # (r, g, b) 0..255 as drawn


@dataclass(frozen=True)
class DemoItem:
    """A generated pair and what it contains."""

    image: np.ndarray  # image_size x image_size x 3 uint8
    audio: np.ndarray  # samples int16, mono
    objects: tuple  # of SceneObject, in drawing order
    sounding_index: int  # index into objects of the object that makes the sound

    @property
    def sounding_object(self):
        return self.objects[self.sounding_index]


def item_name(split, index):
    """File stem of item `index` (1-based) of a split.

    Args:
        split: "train" or "test".
        index: 1-based item number.

    Returns:
        "demo_00001"-style names for train, "demo_test_0001"-style names for test.
    """
    if split == "train":
        return f"demo_{index:05d}"
    if split == "test":
        return f"demo_test_{index:04d}"
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def _item_rng(index, seed, split):
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def _clutter_colour(rng):
    """A weakly saturated colour (greys, beiges, slates): never mistaken for a class colour."""
    hue = rng.uniform(0.0, 1.0)
    saturation = rng.uniform(0.0, CLUTTER_SATURATION_MAX)
    value = rng.uniform(0.3, 0.85)
    return tuple(int(round(channel * 255)) for channel in colorsys.hsv_to_rgb(hue, saturation, value))


def _unit_polygon(shape):
    """Outline of a shape in unit coordinates (its unrotated box is [-1, 1] x [-1, 1])."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == "triangle":
        return np.array([[0, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == "diamond":
        return np.array([[0, -1], [1, 0], [0, 1], [-1, 0]], dtype=np.float64)
    if shape == "cross":
        arm = 0.36
        return np.array(
            [[-arm, -1], [arm, -1], [arm, -arm], [1, -arm], [1, arm], [arm, arm],
             [arm, 1], [-arm, 1], [-arm, arm], [-1, arm], [-1, -arm], [-arm, -arm]],
            dtype=np.float64,
        )
    raise ValueError(f"no polygon for shape {shape!r}")


def _shape_mask(shape, size, center, half_extent, angle, ring_inner=0.5):
    """Draw one filled shape into a size x size 'L' mask.

    Args:
        shape: one of disc, ring, square, triangle, diamond, cross.
        size: mask side in pixels.
        center: (x, y) in pixels.
        half_extent: for polygons, the scale applied to the unit polygon; for discs and rings, the radius.
        angle: rotation in radians (ignored for discs and rings).
        ring_inner: inner radius of a ring as a fraction of its outer radius.

    Returns:
        the PIL 'L' mask (255 inside the shape).
    """
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    center_x, center_y = center
    if shape in ("disc", "ring"):
        radius = half_extent
        draw.ellipse([center_x - radius, center_y - radius, center_x + radius, center_y + radius], fill=255)
        if shape == "ring":
            inner = radius * ring_inner
            draw.ellipse([center_x - inner, center_y - inner, center_x + inner, center_y + inner], fill=0)
        return mask
    points = _rotated_polygon(shape, angle) * half_extent + np.array([center_x, center_y])
    draw.polygon([(float(x), float(y)) for x, y in points], fill=255)
    return mask


def _rotated_polygon(shape, angle):
    cosine, sine = math.cos(angle), math.sin(angle)
    rotation = np.array([[cosine, -sine], [sine, cosine]])
    polygon = _unit_polygon(shape) @ rotation.T  # (points, 2)
    # Centre the rotated outline on its own bounding box, so the box centre is the placement point.
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    return polygon - (low + high) / 2


def _shape_extent(shape, angle):
    """Width and height of the rotated unit shape (discs and rings: 2 x 2)."""
    if shape in ("disc", "ring"):
        return 2.0, 2.0
    polygon = _rotated_polygon(shape, angle)
    width, height = polygon.max(axis=0) - polygon.min(axis=0)
    return float(width), float(height)


def _background(rng, size):
    """Low-contrast textured background with blobs, lines and small distractor shapes, as an RGB PIL image."""
    base = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.2), rng.uniform(0.4, 0.7))) * 255
    # Smooth texture: coarse random fields upsampled bicubically; mostly luminance, a little chroma.
    coarse_cells = int(rng.integers(4, 10))
    luminance = rng.normal(0.0, 1.0, size=(coarse_cells, coarse_cells)).astype(np.float32)
    luminance = np.asarray(Image.fromarray(luminance).resize((size, size), Image.BICUBIC))
    chroma = rng.normal(0.0, 1.0, size=(3, coarse_cells, coarse_cells)).astype(np.float32)
    chroma = np.stack(
        [np.asarray(Image.fromarray(channel).resize((size, size), Image.BICUBIC)) for channel in chroma],
        axis=-1,
    )  # size x size x 3
    grain = rng.normal(0.0, 4.0, size=(size, size, 1))
    pixels = base + 18.0 * luminance[..., None] + 4.0 * chroma + grain  # size x size x 3
    image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 9))):  # soft blobs
        center = rng.uniform(0, size, size=2)
        radii = rng.uniform(0.05, 0.18, size=2) * size
        shift = rng.uniform(-30, 30)
        colour = tuple(int(np.clip(channel + shift, 0, 255)) for channel in base)
        draw.ellipse([center[0] - radii[0], center[1] - radii[1], center[0] + radii[0], center[1] + radii[1]],
                     fill=colour)
    for _ in range(int(rng.integers(5, 11))):  # lines
        start, end = rng.uniform(0, size, size=2), rng.uniform(0, size, size=2)
        draw.line([tuple(start), tuple(end)], fill=_clutter_colour(rng),
                  width=int(rng.integers(1, 4)) * SUPERSAMPLE)
    shapes = ("disc", "ring", "square", "triangle", "diamond", "cross")
    for _ in range(int(rng.integers(6, 13))):  # small distractor shapes of the class shapes, in clutter colours
        shape = shapes[int(rng.integers(len(shapes)))]
        half_extent = rng.uniform(0.025, 0.07) * size
        center = rng.uniform(0, size, size=2)
        mask = _shape_mask(shape, size, center, half_extent, rng.uniform(0, 2 * math.pi))
        image.paste(_clutter_colour(rng), (0, 0), mask)
    return image


def _synthesize_sound(object_class, rng, sample_rate, audio_seconds):
    """The class's sound with random gain, phases and light noise, as int16 samples."""
    count = int(round(sample_rate * audio_seconds))
    times = np.arange(count) / sample_rate
    tone = np.zeros(count)
    amplitude_sum = 0.0
    for partial, amplitude in enumerate(object_class.harmonics, start=1):
        frequency = partial * object_class.base_frequency
        if frequency >= 0.45 * sample_rate:
            break
        tone += amplitude * np.sin(2 * np.pi * frequency * times + rng.uniform(0, 2 * np.pi))
        amplitude_sum += amplitude
    modulation = 0.5 * (1 - np.cos(2 * np.pi * object_class.modulation_rate * times + rng.uniform(0, 2 * np.pi)))
    envelope = 1.0 - object_class.modulation_depth * modulation
    gain = rng.uniform(0.4, 0.8)
    signal = gain * tone * envelope / amplitude_sum + rng.normal(0.0, NOISE_STD, size=count)
    return np.round(np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


def generate_item(index, seed=0, split="train", image_size=128, sample_rate=8000, audio_seconds=0.5):
    """Generate one demo pair and describe its contents.

    Args:
        index: 1-based item number within its split.
        seed: base seed of the whole set.
        split: "train" or "test" (the two splits draw from different streams).
        image_size: frame side in pixels (square frames).
        sample_rate: audio rate in Hz.
        audio_seconds: audio length in seconds.

    Returns:
        a DemoItem: image (image_size x image_size x 3 uint8), audio (int16 samples), objects (SceneObject tuple in
        drawing order, the last on top) and sounding_index (which of them makes the sound).
    """
    check_settings(image_size, sample_rate, audio_seconds)
    rng = _item_rng(index, seed, split)
    canvas_size = image_size * SUPERSAMPLE

    object_count = int(rng.integers(2, 4))
    class_indices = rng.choice(len(CLASSES), size=object_count, replace=False)
    cells = rng.choice(4, size=object_count, replace=False)  # distinct cells of the 2x2 grid
    sounding_index = int(rng.integers(object_count))  # objects are in drawing order, itself random

    image = _background(rng, canvas_size)
    objects = []
    for class_index, cell in zip(class_indices, cells):
        object_class = CLASSES[int(class_index)]
        angle = 0.0 if object_class.shape in ("disc", "ring") else math.radians(
            rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
        unit_width, unit_height = _shape_extent(object_class.shape, angle)
        short_side = rng.uniform(*BOX_SIDE_RANGE) * canvas_size
        scale = short_side / min(unit_width, unit_height)  # unit shape -> canvas pixels
        width, height = unit_width * scale, unit_height * scale
        row, column = divmod(int(cell), 2)
        margin = SUPERSAMPLE  # keep one output pixel between the box and the frame edge
        inward_x, inward_y = rng.uniform(0, INWARD_JITTER * canvas_size, size=2)
        center_x = margin + width / 2 + inward_x if column == 0 else canvas_size - margin - width / 2 - inward_x
        center_y = margin + height / 2 + inward_y if row == 0 else canvas_size - margin - height / 2 - inward_y
        hue = (object_class.hue + rng.uniform(-OBJECT_HUE_JITTER, OBJECT_HUE_JITTER)) % 1.0
        colour = tuple(
            int(round(channel * 255))
            for channel in colorsys.hsv_to_rgb(hue, rng.uniform(*OBJECT_SATURATION_RANGE),
                                               rng.uniform(*OBJECT_VALUE_RANGE))
        )
        mask = _shape_mask(object_class.shape, canvas_size, (center_x, center_y), scale, angle)
        image.paste(colour, (0, 0), mask)
        box = (
            (center_x - width / 2) / canvas_size,
            (center_y - height / 2) / canvas_size,
            (center_x + width / 2) / canvas_size,
            (center_y + height / 2) / canvas_size,
        )
        objects.append(SceneObject(int(class_index), object_class.name, tuple(round(value, 6) for value in box),
                                   int(cell), colour))

    frame = np.asarray(image.resize((image_size, image_size), Image.BOX), dtype=np.uint8)
    audio = _synthesize_sound(CLASSES[objects[sounding_index].class_index], rng, sample_rate, audio_seconds)
    return DemoItem(frame, audio, tuple(objects), sounding_index)


def check_settings(image_size, sample_rate, audio_seconds):
    """Raise ValueError for settings the generator cannot honour.

    Args:
        image_size: frame side in pixels (>= 32).
        sample_rate: audio rate in Hz (must keep the highest base frequency below 0.45 of it).
        audio_seconds: audio length (> 0, at least 0.1 s so the rhythms are audible).
    """
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size}")
    highest = max(object_class.base_frequency for object_class in CLASSES)
    if int(sample_rate) != sample_rate or sample_rate * 0.45 <= highest:
        raise ValueError(f"sample_rate must be an integer above {highest / 0.45:.0f} Hz, got {sample_rate}")
    if not audio_seconds >= 0.1:
        raise ValueError(f"audio_seconds must be >= 0.1, got {audio_seconds}")


def encode_jpeg(image):
    """JPEG bytes of an RGB uint8 array, with fixed encoder settings (quality 90, 4:2:0, no optimisation).

    Args:
        image: H x W x 3 uint8 array.

    Returns:
        the JPEG file contents.
    """
    buffer = io.BytesIO()
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False,
                                 progressive=False)
    return buffer.getvalue()


def encode_wav(audio, sample_rate):
    """Mono 16-bit PCM WAV bytes.

    Args:
        audio: int16 samples.
        sample_rate: rate in Hz.

    Returns:
        the WAV file contents.
    """
    buffer = io.BytesIO()
    scipy.io.wavfile.write(buffer, int(sample_rate), np.asarray(audio, dtype=np.int16))
    return buffer.getvalue()


def annotation_record(name, item):
    """The item's entry in vggss.json's format: the sounding object's class and box.

    Args:
        name: file stem of the item.
        item: its DemoItem.

    Returns:
        {"file": name, "class": class name, "bbox": [[xmin, ymin, xmax, ymax]]}, normalised coordinates.
    """
    sounding = item.sounding_object
    return {"file": name, "class": sounding.class_name, "bbox": [list(sounding.box)]}


def _write_atomically(path, data):
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _remove_stale_items(folder, split, keep):
    """Delete generated pairs of a previous, larger run (only names this script makes), so folder == annotations."""
    pattern = re.compile(r"demo_\d{5}\.(jpg|wav)" if split == "train" else r"demo_test_\d{4}\.(jpg|wav)")
    for path in folder.iterdir():
        if pattern.fullmatch(path.name) and path.stem not in keep:
            path.unlink()


def write_demo_set(out_dir, train_count, test_count, seed=0, image_size=128, sample_rate=8000, audio_seconds=0.5,
                   progress=True):
    """Generate the demo set into out_dir (see the module docstring for the layout).

    Args:
        out_dir: destination folder (created if missing).
        train_count: number of training pairs.
        test_count: number of held-out pairs.
        seed: base seed.
        image_size: frame side in pixels.
        sample_rate: audio rate in Hz.
        audio_seconds: audio length in seconds.
        progress: show a tqdm progress bar.

    Returns:
        {"train": [names], "test": [names]}.
    """
    if train_count < 1 or test_count < 1:
        raise ValueError(f"train_count and test_count must be >= 1, got {train_count} and {test_count}")
    check_settings(image_size, sample_rate, audio_seconds)
    out_dir = Path(out_dir)
    counts = {"train": int(train_count), "test": int(test_count)}
    names = {split: [item_name(split, index) for index in range(1, count + 1)] for split, count in counts.items()}
    for split in counts:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        _remove_stale_items(out_dir / split, split, set(names[split]))
    bar = tqdm(total=sum(counts.values()), desc="demo set", unit="pair", disable=not progress)
    for split, count in counts.items():
        records = []
        for index in range(1, count + 1):
            name = names[split][index - 1]
            item = generate_item(index, seed, split, image_size, sample_rate, audio_seconds)
            _write_atomically(out_dir / split / f"{name}.jpg", encode_jpeg(item.image))
            _write_atomically(out_dir / split / f"{name}.wav", encode_wav(item.audio, sample_rate))
            records.append(annotation_record(name, item))
            bar.update(1)
        _write_atomically(out_dir / f"{split}_annotations.json", json.dumps(records).encode("utf-8"))
    _write_atomically(out_dir / "test.csv", "".join(f"{name}\n" for name in names["test"]).encode("utf-8"))
    bar.close()
    return names


def build_parser():
    """The command-line parser; its defaults are the arguments the committed data/demo was generated with.

    Returns:
        an argparse.ArgumentParser.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default="data/demo", help="destination folder (default: data/demo)")
    parser.add_argument("--train_count", type=int, default=460, help="number of training pairs (default: 460)")
    parser.add_argument("--test_count", type=int, default=110, help="number of held-out test pairs (default: 110)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default: 0)")
    parser.add_argument("--image_size", type=int, default=128, help="frame side in pixels (default: 128)")
    parser.add_argument("--sample_rate", type=int, default=8000, help="audio sample rate in Hz (default: 8000)")
    parser.add_argument("--audio_seconds", type=float, default=0.5, help="audio length in seconds (default: 0.5)")
    parser.add_argument("--quiet", action="store_true", help="hide the progress bar")
    return parser


def main():
    parser = build_parser()
    arguments = parser.parse_args()
    if arguments.train_count < 1 or arguments.test_count < 1:
        parser.error("--train_count and --test_count must be >= 1")
    try:
        check_settings(arguments.image_size, arguments.sample_rate, arguments.audio_seconds)
    except ValueError as error:
        parser.error(str(error))
    try:
        names = write_demo_set(arguments.out_dir, arguments.train_count, arguments.test_count, arguments.seed,
                               arguments.image_size, arguments.sample_rate, arguments.audio_seconds,
                               progress=not arguments.quiet)
    except OSError as error:
        sys.exit(f"error: cannot write {arguments.out_dir}: {error}")
    print(f"wrote {len(names['train'])} train and {len(names['test'])} test pairs to {arguments.out_dir}")


if __name__ == "__main__":
    main()
