"""One training pair decoded and augmented with TensorFlow ops only: what a tf.data service worker runs.

A tf.data service worker runs the dataset's graph in its own process, so it cannot call back into the client's Python
(tf.numpy_function). The local pipeline (frames.py, audio.py) decodes with PIL, libsndfile and soxr; this module
does the same work as TensorFlow ops, for the formats vggss_dl.py writes:
- Frame: a JPEG is decoded at the same reduced DCT scale as PIL's Image.draft picks (1/2, 1/4, 1/8: libjpeg's scaled
  IDCT with the accurate integer DCT, the same pixels bit for bit as PIL), a PNG in full; then the same antialiased
  bicubic resize to the same size (tf.raw_ops.ScaleAndTranslate, in float instead of PIL's 8-bit fixed point: a
  mean absolute difference of about 0.2 in 0..255 units, tests/test_tensorflow_decode.py bounds it), then the
  random crop and flip. The crop and the flip are drawn from the item's seed (seed, group, pass, position) with
  TensorFlow's stateless generators: the same distribution as the local draws, not the same numbers.
- Audio: a mono 16-bit PCM wav at the run's rate (tf.audio.decode_wav), tiled and cut to audio_seconds as
  audio.prepare_waveform; kept as int16 (the model's input step divides by 32768: the local float samples, bit
  for bit). Other audio must be converted first (the data service refuses it before the run starts).
A file that fails a check here (a decompression bomb, another rate, stereo) raises an error inside the graph; the
service's pipeline drops the item and the client reports it.

Usage:
    from pipeline.tensorflow_decode import decode_training_frame, decode_training_waveform
    frame = decode_training_frame(tf.constant("data/demo/train/clip001.jpg"), tf.constant([0, 0, 0, 5], tf.int64),
                                  224, "crop")  # 224 x 224 x 3 uint8
"""

import tensorflow as tf
from PIL import Image

from pipeline.frames import MAX_ASPECT_RATIO, TRAINING_RESIZE_RATIO

JPEG_SCALES = (8, 4, 2, 1)  # libjpeg's reduced DCT scales, largest first (PIL's Image.draft)
PNG_SIZE_OFFSET = 16  # a PNG's IHDR width and height: two big-endian uint32 at bytes 16..23


def frame_shape(contents):
    """[height, width] of a JPEG or PNG from its header, without decoding pixels (int32 vector).

    Args:
        contents: the file's bytes (string scalar).
    """
    def png_shape():
        header = tf.io.decode_raw(tf.strings.substr(contents, PNG_SIZE_OFFSET, 8), tf.uint8)  # 8 bytes
        values = tf.reshape(tf.cast(header, tf.int64), [2, 4])  # width, height: 4 bytes each, big-endian
        width_height = tf.reduce_sum(values * tf.constant([2**24, 2**16, 2**8, 1], tf.int64), axis=1)
        return tf.cast(tf.reverse(width_height, [0]), tf.int32)

    return tf.cond(tf.io.is_jpeg(contents), lambda: tf.io.extract_jpeg_shape(contents)[:2], png_shape)


def _check_shape(height, width):
    """Graph asserts of frames.check_image_size: pixels, PIL's decompression-bomb limit, the aspect ratio."""
    height64, width64 = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    return [
        tf.debugging.assert_positive(tf.minimum(height64, width64), message="image has no pixels"),
        tf.debugging.assert_less_equal(height64 * width64, tf.constant(Image.MAX_IMAGE_PIXELS, tf.int64),
                                       message="image is above PIL's decompression-bomb limit"),
        tf.debugging.assert_less_equal(tf.maximum(height64, width64), MAX_ASPECT_RATIO * tf.minimum(height64, width64),
                                       message="image's aspect ratio is beyond that of any real frame"),
    ]


def training_size(height, width, image_size, resize):
    """(height, width) the training resize gives, as frames.training_size (int32 scalars)."""
    side = int(round(image_size * TRAINING_RESIZE_RATIO))
    if resize == "squash":
        return tf.constant(side), tf.constant(side)
    height64, width64 = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    # frames.resized_size: int(size * long / short) on the longer side, in float64 like Python's
    longer_if_taller = tf.cast(tf.floor(side * height64 / width64), tf.int32)
    longer_if_wider = tf.cast(tf.floor(side * width64 / height64), tf.int32)
    taller = width <= height
    return tf.where(taller, longer_if_taller, side), tf.where(taller, side, longer_if_wider)


def training_resized(contents, image_size, resize):
    """A JPEG or PNG's bytes -> the frame resized as training does before the crop (frames.training_resized).

    Args:
        contents: the file's bytes (string scalar).
        image_size: side of the crop that follows.
        resize: "crop" or "squash".

    Returns:
        height x width x 3 uint8.
    """
    shape = frame_shape(contents)
    height, width = shape[0], shape[1]
    with tf.control_dependencies(_check_shape(height, width)):
        target_height, target_width = training_size(height, width, image_size, resize)
    # PIL's draft: the largest scale s with min(width // target_width, height // target_height) >= s
    room = tf.minimum(width // target_width, height // target_height)
    scale = tf.constant(1)
    for candidate in reversed(JPEG_SCALES[:-1]):  # 2, 4, 8: the largest that fits wins
        scale = tf.where(room >= candidate, candidate, scale)
    is_jpeg = tf.io.is_jpeg(contents)
    scale = tf.where(is_jpeg, scale, 1)
    branches = [lambda ratio=ratio: tf.io.decode_jpeg(contents, channels=3, ratio=ratio,
                                                      dct_method="INTEGER_ACCURATE") for ratio in JPEG_SCALES]
    branches.append(lambda: tf.io.decode_png(contents, channels=3))
    branch = tf.constant(len(JPEG_SCALES))  # the PNG decoder, after the JPEG scales
    for index, ratio in enumerate(JPEG_SCALES):
        branch = tf.where(is_jpeg & (scale == ratio), index, branch)
    pixels = tf.switch_case(branch, branches)  # reduced height x reduced width x 3 uint8
    pixels.set_shape([None, None, 3])
    # The frame's region in the reduced image is its full size / scale (PIL's box): the last row and column of an
    # odd size are partly padding.
    region = tf.cast(tf.stack([height, width]), tf.float32) / tf.cast(scale, tf.float32)
    size = tf.stack([target_height, target_width])
    resized = tf.raw_ops.ScaleAndTranslate(
        images=tf.cast(pixels, tf.float32)[None], size=size, scale=tf.cast(size, tf.float32) / region,
        translation=tf.zeros([2]), kernel_type="keyscubic", antialias=True)[0]  # 1 x h x w x 3 -> h x w x 3
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def item_seeds(item_seed, count):
    """count stateless seeds (count x 2 int64) drawn from an item's (seed, group, pass, position) vector."""
    base = tf.random.experimental.stateless_fold_in(tf.cast(item_seed[:2], tf.int64), item_seed[2])
    base = tf.random.experimental.stateless_fold_in(base, item_seed[3])
    return tf.stack([tf.random.experimental.stateless_fold_in(base, index) for index in range(count)])


def crop_and_flip(pixels, image_size, item_seed):
    """frames.crop_and_flip with stateless draws: an image_size crop at a random place, flipped half the time.

    Args:
        pixels: height x width x 3 uint8 (both sides at least image_size).
        image_size: side of the crop.
        item_seed: int64 vector (seed, group, pass, position).

    Returns:
        image_size x image_size x 3 uint8.
    """
    seeds = item_seeds(item_seed, 3)
    height, width = tf.shape(pixels)[0], tf.shape(pixels)[1]
    left = tf.random.stateless_uniform([], seeds[0], 0, width - image_size + 1, dtype=tf.int32)
    top = tf.random.stateless_uniform([], seeds[1], 0, height - image_size + 1, dtype=tf.int32)
    crop = pixels[top:top + image_size, left:left + image_size]
    flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
    crop = tf.cond(flip, lambda: tf.reverse(crop, [1]), lambda: crop)
    crop.set_shape([image_size, image_size, 3])
    return crop


def decode_training_frame(path, item_seed, image_size, resize):
    """A frame file -> the augmented training frame (frames.augmented_frame in TensorFlow ops).

    Args:
        path: string scalar, a jpg/png.
        item_seed: int64 vector (seed, group, pass, position).
        image_size: side of the square result.
        resize: "crop" or "squash".

    Returns:
        image_size x image_size x 3 uint8.
    """
    return crop_and_flip(training_resized(tf.io.read_file(path), image_size, resize), image_size, item_seed)


def decode_training_waveform(path, sample_rate, audio_seconds):
    """A mono 16-bit PCM wav at sample_rate -> its first audio_seconds, tiled if shorter (audio.load_waveform).

    Args:
        path: string scalar.
        sample_rate: the rate the file must have (Hz).
        audio_seconds: length of the result.

    Returns:
        int16 vector of round(sample_rate * audio_seconds) samples (the float sample is this / 32768).
    """
    length = int(round(sample_rate * audio_seconds))
    samples, rate = tf.audio.decode_wav(tf.io.read_file(path))  # frames x channels float32, sample / 32768
    checks = [
        tf.debugging.assert_equal(tf.shape(samples)[1], 1, message="audio is not mono"),
        tf.debugging.assert_equal(rate, sample_rate, message="audio is not at the run's sample rate"),
        tf.debugging.assert_positive(tf.shape(samples)[0], message="zero-length audio"),
    ]
    with tf.control_dependencies(checks):
        samples = tf.reshape(samples, [-1])  # frames (mono)
    repeats = length // tf.shape(samples)[0] + 1  # whole repeats, as prepare_waveform's np.tile
    samples = tf.tile(samples, [repeats])[:length]
    samples.set_shape([length])
    return tf.cast(tf.round(samples * 32768.0), tf.int16)  # exact: decode_wav gives sample / 32768
