"""Frames on disk -> model inputs, as the LVS recipe (crop) or the EZ-VSL family (squash) prepares them.

- crop (LVS): shorter side resized to image_size (PIL bicubic), centre crop. Training: shorter side to
  round(image_size * 246 / 224), random image_size crop, random horizontal flip.
- squash (EZ-VSL, SLAVC: torchvision Resize((S, S))): the whole frame resized to image_size x image_size (PIL
  bicubic). Training: squashed to round(image_size * 246 / 224) square, then the same random crop and flip, so
  training sees the geometry evaluation sees. (EZ-VSL's datasets.py trains with Resize(int(224 * 1.1)) on the
  shorter side + RandomCrop, i.e. our crop training, and tests with the squash.)
Then /255 and ImageNet mean/std; until then the frame stays 8-bit (PIL, then uint8): a training frame crosses to the
device as uint8 and is normalised there (augmented_frame, then preprocessing.model_inputs). In training, load_frame
decodes a JPEG at a reduced DCT scale (1/2, 1/4, 1/8: PIL's Image.draft, libjpeg's scaled IDCT) when the training
resize needs at most that share of its size (246 of the 512 x 512 frames vggss_dl.py writes: decoded at 256);
then the same bicubic resize to the same size, crop and flip (the same random numbers). A 512 x 512 training frame
takes 2.6 instead of 4.5 ms on one core, and the augmented frame moves by a mean absolute difference of about 1.5
in 0..255 units on natural-looking frames (tests/test_training_decode.py bounds it; 4.4 on a sharp photo; moving
the crop by one pixel gives about 12). Evaluation and prediction decode every frame in full, as the official
test.py. Any PIL mode is read: 16-bit grayscale (I;16, I;16B, I) is scaled from 0..65535
and float (F) from 0..1 to 8 bits, instead of Pillow's clipping (which turns them white); 16-bit RGB/RGBA PNGs
are already reduced to 8 bits by Pillow. A frame is refused before decoding when it is a decompression bomb or
its aspect ratio is beyond MAX_ASPECT_RATIO (no real video frame or photo has it; the shorter-side resize would
blow it up to gigabytes).

Usage:
    from pipeline.frames import load_frame
    frame = load_frame("data/demo/train/clip001.jpg", 224, resize="squash")  # 224 x 224 x 3 float32
"""

import warnings

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RESIZE_MODES = ("crop", "squash")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TRAINING_RESIZE_RATIO = 246 / 224
MAX_ASPECT_RATIO = 20  # wider than any panorama a video or photo gives; bounds the shorter-side resize
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def check_image_size(width, height):
    """Refuse a frame size before any pixel is decoded.

    Args:
        width, height: from the file's header.

    Raises:
        ValueError naming why: no pixels, a decompression bomb, or an aspect ratio no real frame has.
    """
    if width < 1 or height < 1:
        raise ValueError("image has no pixels")
    if width * height > Image.MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image of {width} x {height} pixels is above PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(
            f"image of {width} x {height} pixels has aspect ratio {ratio:.0f}:1, beyond the {MAX_ASPECT_RATIO}:1 of any "
            "real frame (resizing its shorter side would take memory out of proportion to the file)"
        )


def to_rgb(image):
    """A PIL image of any mode and bit depth -> 8-bit RGB, scaling high bit depths instead of clipping them."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        values = (np.clip(values, 0, 65535) * 255 + 32767) // 65535  # 0..65535 -> 0..255, rounded
        image = Image.fromarray(values.astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        values = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255.0)
        image = Image.fromarray(values.astype(np.uint8), "L")
    return image.convert("RGB")


def _open_checked(path, decode):
    """Open an image (header only), refuse bombs and absurd shapes, then return decode(image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_image_size(*image.size)
                return decode(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"decompression bomb: {error}") from None


def frame_size(path):
    """(width, height) of an image file from its header; ValueError for a bomb or an absurd shape."""
    return _open_checked(path, lambda image: image.size)


def open_frame(path):
    """Read an image file as 8-bit RGB, refusing bombs and absurd shapes before decoding.

    Args:
        path: a jpg/png (any mode, any bit depth).

    Returns:
        A PIL.Image in mode RGB.
    """
    return _open_checked(path, to_rgb)


def resized_size(width, height, size, resize):
    """(width, height) of a width x height frame after the recipe's resize to size.

    Args:
        width, height: the frame's size.
        size: the shorter side after the resize (crop, torchvision.transforms.Resize(size)), or the side of the
            square (squash).
        resize: "crop" or "squash".

    Returns:
        (new width, new height).
    """
    if resize == "squash":
        return size, size
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _resize(image, size, resize):
    """Shorter side to size (crop) or the whole frame to size x size (squash), PIL bicubic."""
    return image.resize(resized_size(*image.size, size, resize), Image.BICUBIC)


def prepare_frame(image, image_size, training=False, rng=None, resize="crop"):
    """Prepare a frame as the recipe does.

    Args:
        image: PIL.Image, any mode and bit depth.
        image_size: side of the square result.
        training: random crop of a 246/224-larger resize and a random flip instead of the evaluation transform.
        rng: numpy Generator for the augmentation (training only).
        resize: "crop" (LVS: shorter side + centre crop) or "squash" (Resize((S, S)): the whole frame).

    Returns:
        image_size x image_size x 3 float32, ImageNet-normalised.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    check_image_size(*image.size)
    image = to_rgb(image)
    if training:
        resized = image.resize(training_size(*image.size, image_size, resize), Image.BICUBIC)
        return normalise(crop_and_flip(np.asarray(resized), image_size, rng))
    image = _resize(image, image_size, resize)
    width, height = image.size
    top = int(round((height - image_size) / 2.0))
    left = int(round((width - image_size) / 2.0))
    image = image.crop((left, top, left + image_size, top + image_size))
    return normalise(np.asarray(image))


def training_size(width, height, image_size, resize):
    """(width, height) a width x height frame is resized to before the training crop (shorter side or square of
    round(image_size * 246 / 224))."""
    return resized_size(width, height, int(round(image_size * TRAINING_RESIZE_RATIO)), resize)


def crop_and_flip(pixels, image_size, rng=None):
    """The training augmentation's random part: an image_size crop at a random place, flipped left-right half the time.

    Args:
        pixels: height x width x 3 uint8, the frame after the training resize (both sides at least image_size).
        image_size: side of the square crop.
        rng: numpy Generator; draws the left edge, the top edge, then the flip, in that order.

    Returns:
        image_size x image_size x 3 uint8.
    """
    rng = rng if rng is not None else np.random.default_rng()
    height, width = pixels.shape[:2]
    left = int(rng.integers(0, width - image_size + 1))
    top = int(rng.integers(0, height - image_size + 1))
    pixels = pixels[top:top + image_size, left:left + image_size]
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def normalise(pixels):
    """8-bit RGB pixels (... x 3 uint8) -> /255, ImageNet mean/std (float32)."""
    return (np.asarray(pixels, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def load_frame(path, image_size, training=False, rng=None, resize="crop"):
    """Read a frame file and prepare it (open_frame + prepare_frame; same arguments as prepare_frame).

    In training: normalise(augmented_frame(...)).
    """
    if not training:
        return prepare_frame(open_frame(path), image_size, resize=resize)
    return normalise(augmented_frame(path, image_size, rng, resize))


def augmented_frame(path, image_size, rng=None, resize="crop", cache=None):
    """Read a frame file and apply the training augmentation, leaving the pixels 8-bit (not yet normalised).

    Args:
        path: a jpg/png.
        image_size: side of the square result.
        rng: numpy Generator for the crop and the flip.
        resize: "crop" or "squash".
        cache: a frame_cache.FrameCache keeping training_resized's result across epochs and runs, or None.

    Returns:
        image_size x image_size x 3 uint8: crop_and_flip(training_resized(...)).
    """
    if cache is not None:
        resized = cache.get(path, image_size, resize, training_resized)
    else:
        resized = training_resized(path, image_size, resize)
    return crop_and_flip(resized, image_size, rng)


def training_resized(path, image_size, resize="crop"):
    """Read a frame file and resize it as training does before the random crop (the augmentation's fixed part).

    A JPEG of at least twice the training resize is decoded at a reduced DCT scale (see the module docstring); the
    resize target is that of the full-size frame.

    Args:
        path: a jpg/png.
        image_size: side of the crop that follows.
        resize: "crop" (shorter side to round(image_size * 246 / 224)) or "squash" (that square).

    Returns:
        height x width x 3 uint8 (training_size of the frame).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")

    def decode(image):
        size = training_size(*image.size, image_size, resize)  # from the header: the full-size frame's
        # A JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) that still covers size in both directions; other
        # formats, and frames less than twice the size, decode in full.
        # box: the frame's region in the reduced image (the last row and column are partly padding at odd sizes).
        drafted = image.draft("RGB", size)
        return to_rgb(image), size, drafted[1] if drafted else None

    image, size, box = _open_checked(path, decode)
    return np.asarray(image.resize(size, Image.BICUBIC, box=box))
