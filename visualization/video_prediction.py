"""Heatmap videos: where the sound comes from, frame after frame (predict.py --video / --video_dir).

For a video NAME.EXT (anything ffmpeg reads) it writes, to the output folder:
    NAME_heatmap.mp4   the video (or the --start/--duration span) with S_ii overlaid and the original audio muxed
                       back: same frame rate, duration and size (even sizes for H.264; --max_side scales it down)
    NAME.png           the four-panel figure (predict.py's) of the map nearest the span's middle
    NAME_strip.png     about 8 frames across the span, each with its heatmap and its time
    NAME_heatmaps.npy  with --save_heatmaps: T x h x w raw S_ii, float32, one map per computed time
    NAME_times.npy     with --save_heatmaps: the T times in seconds from the start of the file (float64)

The rules:
- Maps are computed at --heatmap_fps on the video's own frames: the k-th map uses frame round(k * fps /
  heatmap_fps), and its time is that frame's time (every frame when heatmap_fps >= fps). Output frames between
  two computed times get the linear interpolation of the two maps; frames before the first or after the last
  hold the nearest map.
- The map at time t hears the model's audio_seconds of the file's audio centred on t. Near the file's ends the
  window is shifted to stay inside the audio (it starts at 0 or ends at the audio's end), so every window is real,
  contiguous sound. A file whose whole audio is shorter than audio_seconds gives its whole audio, tiled, as in
  training. Each window is then prepared exactly as in training (preprocessing.read_audio at the model's rate,
  preprocessing.prepare_waveform); each frame with preprocessing.prepare_frame (--resize crop or squash).
- One colour scale for the whole span: the minimum and maximum of all its computed maps (printed, and written on
  the strip), so a change of colour between frames is a change of S_ii, not a per-frame rescaling. With crop
  (the default), the model sees only the centred square of a non-square frame; the map is drawn there and the
  margins it never saw are dimmed.
- Frames stream through ffmpeg pipes twice (maps first, then the overlay), so memory is bounded by the batch and
  a frame, not by the clip's length. Every output is written under a temporary name and renamed at the end: a
  broken, truncated or silent video leaves nothing behind.

Usage:
    python predict.py --checkpoint runs/demo/trained/model.keras --video data/demo/demo_video.mp4 --out_dir out
"""

import dataclasses
import math
import os
import tempfile

import cv2
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

from pipeline import preprocessing
from pipeline import video
from visualization.heatmaps import COLOUR_MAP, colour_overlay, draw_panels, frame_pixels, upsample

DEFAULT_HEATMAP_FPS = 4.0
STRIP_PANELS = 8
STRIP_THUMBNAIL_WIDTH = 320
OUTSIDE_DIMMING = 0.45  # brightness of the margins a centre crop never shows the model


@dataclasses.dataclass
class VideoOptions:
    """How a video is processed (predict.py's flags).

    Attributes:
        start: first second of the span.
        duration: seconds of the span (None: to the end of the file).
        heatmap_fps: maps computed per second of video.
        max_side: optional bound on the output video's longer side.
        batch_size: frame/window pairs per forward pass.
        resize: "crop" or "squash" (preprocessing.RESIZE_MODES).
        save_heatmaps: also write NAME_heatmaps.npy and NAME_times.npy.
        on_progress: called after every frame read (predict.py ticks its watchdog with it), or None.
    """

    start: float = 0.0
    duration: float = None
    heatmap_fps: float = DEFAULT_HEATMAP_FPS
    max_side: int = None
    batch_size: int = 16
    resize: str = "crop"
    save_heatmaps: bool = False
    on_progress: object = None


def computed_frame_indices(frame_count, fps, heatmap_fps):
    """The frames whose maps are computed: round(k * fps / heatmap_fps), k = 0, 1, ... (all when heatmap_fps >= fps).

    Args:
        frame_count: frames in the span.
        fps: the video's frame rate.
        heatmap_fps: maps per second.

    Returns:
        sorted int64 array of frame indices.
    """
    step = max(1.0, float(fps) / float(heatmap_fps))
    count = int(math.floor((frame_count - 1) / step + 0.5)) + 1 if frame_count > 0 else 0
    indices = np.floor(np.arange(count) * step + 0.5).astype(np.int64)
    return indices[indices < frame_count]


def audio_window(samples, rate, centre, audio_seconds):
    """The audio a map at time `centre` hears, prepared as in training.

    Args:
        samples: mono audio (float32), sample 0 at time 0 of `centre`'s clock.
        rate: its sample rate.
        centre: seconds (same clock as the samples).
        audio_seconds: the model's window length.

    Returns:
        float32 vector of round(rate * audio_seconds) samples: the window centred on `centre`, shifted to stay
        inside the samples; when there are fewer samples than a window, all of them, tiled (prepare_waveform).
    """
    length = int(round(rate * audio_seconds))
    if samples.shape[0] <= length:
        return preprocessing.prepare_waveform(samples, rate, audio_seconds)
    begin = int(round(centre * rate)) - length // 2
    begin = min(max(begin, 0), samples.shape[0] - length)
    return preprocessing.prepare_waveform(samples[begin:begin + length], rate, audio_seconds)


def model_region(width, height, resize):
    """Where the model's square input lies on a width x height frame: (left, top, region_width, region_height).

    crop: the centred square of side min(width, height) (shorter-side resize + centre crop); squash: the frame.
    """
    if resize == "squash":
        return 0.0, 0.0, float(width), float(height)
    side = float(min(width, height))
    return (width - side) / 2.0, (height - side) / 2.0, side, side


def overlay_frame(pixels, heatmap, low, high, resize):
    """Draw one map on one frame with the clip's colour scale (dimming what a centre crop leaves out).

    Args:
        pixels: H x W x 3 uint8 frame.
        heatmap: h x w S_ii map.
        low, high: the clip's colour scale.
        resize: "crop" or "squash".

    Returns:
        H x W x 3 uint8.
    """
    height, width = pixels.shape[:2]
    left, top, region_width, region_height = model_region(width, height, resize)
    x0, y0 = int(round(left)), int(round(top))
    x1, y1 = int(round(left + region_width)), int(round(top + region_height))
    output = (pixels.astype(np.float32) * OUTSIDE_DIMMING).astype(np.uint8) if resize == "crop" else pixels.copy()
    region = pixels[y0:y1, x0:x1]
    output[y0:y1, x0:x1] = colour_overlay(region, upsample(heatmap, (x1 - x0, y1 - y0)), low, high)
    return output


def label_time(pixels, seconds):
    """Write "t = 1.24 s" in the frame's top-left corner (white on a dark outline), in place; returns the frame."""
    scale = max(pixels.shape[0], 120) / 480.0
    position = (int(6 + 4 * scale), int(8 + 22 * scale))
    text = f"t = {seconds:.2f} s"
    cv2.putText(pixels, text, position, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, int(4 * scale)), cv2.LINE_AA)
    cv2.putText(pixels, text, position, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(1.5 * scale)),
                cv2.LINE_AA)
    return pixels


def interpolated_map(index, indices, maps):
    """The map of output frame `index`: linear between the two nearest computed frames, held beyond the ends."""
    position = int(np.searchsorted(indices, index, side="right"))  # indices[position - 1] <= index
    if position == 0:
        return maps[0]
    if position == len(indices):
        return maps[-1]
    before, after = indices[position - 1], indices[position]
    weight = (index - before) / (after - before)
    return (1.0 - weight) * maps[position - 1] + weight * maps[position]


def _thumbnail(frame):
    height, width = frame.shape[:2]
    if width <= STRIP_THUMBNAIL_WIDTH:
        return frame.copy()
    size = (STRIP_THUMBNAIL_WIDTH, max(1, int(round(height * STRIP_THUMBNAIL_WIDTH / width))))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))


def span_of(info, options):
    """The span (start, seconds) a video's options choose, checked against the file's duration."""
    if options.start >= info.duration:
        raise video.VideoError(f"--start {options.start:g} s is past the video's end ({info.duration:.2f} s)")
    seconds = info.duration - options.start
    if options.duration is not None:
        seconds = min(seconds, options.duration)
    return options.start, seconds


def compute_heatmaps(forward, path, info, settings, options, audio_samples, audio_rate, audio_offset, label):
    """Pass 1: stream the span's frames and compute the maps at the computed frames, in batches.

    Args:
        forward: make_forward(model).
        path: the video.
        info: its VideoInfo.
        settings: the model's preprocessing settings (image_size, sample_rate, audio_seconds).
        options: VideoOptions.
        audio_samples, audio_rate: the extracted audio (mono, model rate), starting at audio_offset seconds.
        audio_offset: time in the file of audio sample 0.
        label: progress bar label.

    Returns:
        dict: indices (frame indices of the maps), times (seconds in the file), maps (T x h x w float32),
        frame_count, middle (prepared frame, map, mask of the map nearest the middle), strip (list of
        (time, thumbnail, ordinal)).
    """
    start, seconds = span_of(info, options)
    expected_frames = max(1, int(math.floor(seconds * float(info.fps) + 0.5)))
    expected_indices = computed_frame_indices(expected_frames, info.fps, options.heatmap_fps)
    strip_ordinals = set(np.unique(np.round(np.linspace(0, len(expected_indices) - 1, STRIP_PANELS))).astype(int))
    middle_ordinal = len(expected_indices) // 2
    step = max(1.0, float(info.fps) / float(options.heatmap_fps))
    indices, maps, strip, middle, batch = [], [], [], None, []

    def run_batch():
        nonlocal middle
        frames = np.stack([item[1] for item in batch])  # B x S x S x 3
        waveforms = np.stack([item[2] for item in batch])  # B x samples
        spectrograms = preprocessing.spectrogram(tf.constant(waveforms), audio_rate)[..., None]  # B x 257 x T x 1
        outputs = forward({"frame": tf.constant(frames), "spectrogram": spectrograms})
        similarity = outputs["similarity"].numpy()
        mask = outputs["positive_mask"].numpy()
        for position, (ordinal, frame, _) in enumerate(batch):
            maps.append(similarity[position])
            if ordinal <= middle_ordinal:  # the middle map, or the last one when the span was shorter than said
                middle = (frame, similarity[position], mask[position], ordinal)
        batch.clear()

    frame_count, ordinal = 0, 0
    with tqdm(total=expected_frames, desc=f"{label}: heatmaps", unit="frame") as progress:
        for index, pixels in enumerate(video.read_frames(path, info.fps, start, seconds, (info.width, info.height))):
            frame_count += 1
            progress.update(1)
            if options.on_progress is not None:
                options.on_progress()
            if index != int(math.floor(ordinal * step + 0.5)):
                continue
            time = start + index / float(info.fps)
            frame = preprocessing.prepare_frame(Image.fromarray(pixels), settings["image_size"],
                                                resize=options.resize)
            window = audio_window(audio_samples, audio_rate, time - audio_offset, settings["audio_seconds"])
            if ordinal in strip_ordinals:
                strip.append((time, _thumbnail(pixels), ordinal))
            indices.append(index)
            batch.append((ordinal, frame, window))
            ordinal += 1
            if len(batch) == options.batch_size:
                run_batch()
        if batch:
            run_batch()
    if not indices:
        raise video.VideoError(f"{path}: no frame could be decoded in the span")
    indices = np.asarray(indices, np.int64)
    return {"indices": indices, "times": start + indices / float(info.fps), "maps": np.stack(maps).astype(np.float32),
            "frame_count": frame_count, "middle": middle, "strip": strip}


def draw_strip(name, strip, maps, low, high, resize):
    """The strip figure: frames across the span with their maps (one colour scale) and times.

    Args:
        name: the video's name.
        strip: list of (time, thumbnail H x W x 3 uint8, ordinal of its map).
        maps: T x h x w maps.
        low, high: the clip's colour scale.
        resize: "crop" or "squash" (where the map lies on the frame).

    Returns:
        the matplotlib figure.
    """
    count = len(strip)
    height, width = strip[0][1].shape[:2]
    figure, axes = plt.subplots(1, count, figsize=(1.9 * count * width / height + 0.9, 2.45), dpi=100, squeeze=False,
                                layout="constrained")
    for axis, (time, thumbnail, ordinal) in zip(axes[0], strip):
        axis.imshow(overlay_frame(thumbnail, maps[ordinal], low, high, resize))
        axis.set_title(f"t = {time:.2f} s", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
    scale = plt.cm.ScalarMappable(norm=plt.Normalize(low, high), cmap=COLOUR_MAP)
    figure.colorbar(scale, ax=axes[0].tolist(), fraction=0.02, pad=0.01, label="S_ii")
    figure.suptitle(f"{name}: heatmap S_ii, one colour scale for the whole clip (its min..max: {low:.3f} to "
                    f"{high:.3f})", fontsize=10)
    return figure


def render_video(path, out_path, info, options, result, low, high, label):
    """Pass 2: stream the span's frames again, overlay the (interpolated) maps, encode with the span's audio.

    Args:
        path: the video.
        out_path: the .mp4 to write (atomically).
        info: its VideoInfo.
        options: VideoOptions.
        result: compute_heatmaps' dict.
        low, high: the clip's colour scale.
        label: progress bar label.
    """
    start, _ = span_of(info, options)
    width, height = video.even_size(info.width, info.height, options.max_side)
    frame_count = result["frame_count"]
    with video.VideoWriter(out_path, width, height, info.fps, audio_source=path, audio_start=start,
                           audio_duration=frame_count / float(info.fps)) as writer:
        frames = video.read_frames(path, info.fps, start, frame_count / float(info.fps), (width, height))
        for index, pixels in enumerate(tqdm(frames, total=frame_count, desc=f"{label}: video", unit="frame")):
            if index >= frame_count:
                break
            if options.on_progress is not None:
                options.on_progress()
            heatmap = interpolated_map(index, result["indices"], result["maps"])
            writer.write(label_time(overlay_frame(pixels, heatmap, low, high, options.resize),
                                    start + index / float(info.fps)))


class StagedFiles:
    """Outputs written under temporary names, renamed into place together, or removed on failure."""

    def __init__(self):
        self.staged = []

    def path(self, final_path):
        """A temporary path (same folder, same extension) that becomes final_path on commit()."""
        folder, filename = os.path.split(os.path.abspath(final_path))
        stem, extension = os.path.splitext(filename)
        temporary = os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")
        self.staged.append((temporary, final_path))
        return temporary

    def commit(self):
        for temporary, final_path in self.staged:
            os.replace(temporary, final_path)
        self.staged = []

    def discard(self):
        for temporary, _ in self.staged:
            if os.path.exists(temporary):
                os.remove(temporary)
        self.staged = []


def check_video(path):
    """Probe a video and require an audio track: its VideoInfo, or VideoError naming the problem."""
    info = video.probe(path)
    if not info.has_audio:
        raise video.VideoError(f"{path}: no audio track (the model needs the sound)")
    return info


def predict_video(forward, settings, path, name, out_dir, options):
    """Every output of one video (see the module docstring); nothing is left behind when anything fails.

    Args:
        forward: the model's forward (heatmaps.make_forward(model)): {"frame", "spectrogram"} batch ->
            {"similarity", "positive_mask"}.
        settings: its preprocessing settings (predict.py may override the sample rate of an official checkpoint).
        path: the video file.
        name: the outputs' name stem.
        out_dir: the output folder (created if missing).
        options: VideoOptions.

    Returns:
        dict: the written paths, frame_count, map count, the colour scale (low, high).

    Raises:
        video.VideoError: the video cannot be used (one line naming it and why).
    """
    info = check_video(path)
    start, seconds = span_of(info, options)
    audio_seconds = settings["audio_seconds"]
    audio_offset = max(0.0, start - audio_seconds)
    with tempfile.TemporaryDirectory(prefix="lvs_video_") as folder:
        wav_path = os.path.join(folder, "audio.wav")
        video.extract_audio(path, wav_path, audio_offset, start + seconds + audio_seconds - audio_offset)
        try:
            samples, rate = preprocessing.read_audio(wav_path, settings["sample_rate"])
        except ValueError as error:
            raise video.VideoError(f"{path}: unusable audio track ({error})")
    label = preprocessing.printable(name if len(name) <= 24 else name[:21] + "...")
    result = compute_heatmaps(forward, path, info, settings, options, samples, rate, audio_offset, label)
    low, high = float(result["maps"].min()), float(result["maps"].max())
    os.makedirs(out_dir, exist_ok=True)
    outputs = {"video": os.path.join(out_dir, f"{name}_heatmap.mp4"), "figure": os.path.join(out_dir, f"{name}.png"),
               "strip": os.path.join(out_dir, f"{name}_strip.png")}
    if options.save_heatmaps:
        outputs.update(heatmaps=os.path.join(out_dir, f"{name}_heatmaps.npy"),
                       times=os.path.join(out_dir, f"{name}_times.npy"))
    staged = StagedFiles()
    try:
        frame, similarity, mask, ordinal = result["middle"]
        figure = draw_panels(frame_pixels(frame), similarity, mask,
                             title=f"{name} at t = {result['times'][ordinal]:.2f} s")
        figure.savefig(staged.path(outputs["figure"]), format="png")
        plt.close(figure)
        figure = draw_strip(name, result["strip"], result["maps"], low, high, options.resize)
        figure.savefig(staged.path(outputs["strip"]), format="png")
        plt.close(figure)
        if options.save_heatmaps:
            np.save(staged.path(outputs["heatmaps"]), result["maps"])
            np.save(staged.path(outputs["times"]), result["times"].astype(np.float64))
        render_video(path, outputs["video"], info, options, result, low, high, label)
        staged.commit()
    finally:
        staged.discard()
        plt.close("all")
    return {"outputs": outputs, "frame_count": result["frame_count"], "map_count": len(result["indices"]),
            "scale": (low, high)}
