"""Draw where the sound comes from: a four-panel figure for every frame/audio pair, or a heatmap video.

Panels: the frame (as the model sees it), the full heatmap S_ii (cosine similarity of every location with the
sound), the strongly positive heatmap m_ip = sigmoid((S_ii - eps_pos) / tau), and the frame clipped by the
positive region. The preprocessing settings come from the checkpoint, so no flags are needed to match them
(an official .pth.tar carries none: --sample_rate overrides its 16 kHz). Videos (--video, --video_dir): see
video_prediction.py for the outputs and their rules.

Usage:
    python predict.py --checkpoint runs/demo/model.keras --data_dir data/demo/test --out_dir runs/demo/predictions
    python predict.py --checkpoint lvs_vggss.pth.tar --image frame.jpg --audio sound.mp3 --out_dir out
    python predict.py --checkpoint runs/demo/model.keras --video clip.mp4 --out_dir out --save_heatmaps
    (--save_heatmaps also writes NAME.npy, the raw h x w S_ii map, float32, before any upsampling)
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import collections
import os
import sys

import numpy as np
import tensorflow as tf  # noqa: F401  (imported before the modules that build graphs)

from pipeline import preprocessing
from pipeline import video
from visualization import video_prediction
from safeguards import watchdog
from safeguards.arguments import non_negative_float, positive_float, positive_int
from safeguards.atomic import atomic_path
from visualization.heatmaps import make_forward, save_figure
from visualization.prediction import load_model_and_settings, pair_figures, single_pair
from visualization.prediction import predict_maps  # noqa: F401  (tests/test_evaluate_protocols.py takes it from here)
from safeguards.watchdog import Watchdog


def sample_rate_value(text):
    """--sample_rate: an integer number of Hz, or "native" (each file at its own rate)."""
    if text == preprocessing.NATIVE:
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer number of Hz or {preprocessing.NATIVE!r}, got {text}")
    if value < 1000:
        raise argparse.ArgumentTypeError(f"must be at least 1000 Hz, got {text}")
    return value


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model.keras from train.py, or an official LVS .pth.tar")
    parser.add_argument("--data_dir", help="folder of NAME.jpg|.png + NAME.wav (or .flac/.ogg/.mp3/.m4a) pairs")
    parser.add_argument("--image", help="one frame (with --audio) instead of --data_dir")
    parser.add_argument("--audio", help="the sound that goes with --image (wav, flac, ogg, mp3, m4a, aac)")
    parser.add_argument("--video", help="one video (any file ffmpeg reads): writes NAME_heatmap.mp4, NAME.png, "
                                        "NAME_strip.png")
    parser.add_argument("--video_dir", help="every video in a folder (mp4, mkv, webm, avi, mov, ...), not recursive")
    parser.add_argument("--out_dir", default="predictions", help="where the outputs go (default: predictions)")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="pairs per forward pass (default: 16)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N pairs or videos, by name")
    parser.add_argument("--save_heatmaps", action="store_true",
                        help="also write the raw S_ii maps, float32: NAME.npy (h x w) for a pair, "
                             "NAME_heatmaps.npy (T x h x w) and NAME_times.npy (seconds) for a video")
    parser.add_argument("--sample_rate", type=sample_rate_value, default=None,
                        help="the audio rate an official .pth.tar expects, in Hz or 'native' (default: 16000, "
                             "the official recipe); a .keras model carries its own")
    parser.add_argument("--resize", choices=preprocessing.RESIZE_MODES, default="crop",
                        help="frames: crop = shorter side + centre crop (LVS, default); squash = the whole frame "
                             "resized to a square (EZ-VSL family)")
    parser.add_argument("--start", type=float, default=0.0, help="video: first second of the span (default: 0)")
    parser.add_argument("--duration", type=positive_float, default=None,
                        help="video: seconds of the span (default: to the end)")
    parser.add_argument("--heatmap_fps", type=positive_float, default=video_prediction.DEFAULT_HEATMAP_FPS,
                        help="video: maps computed per second, interpolated between "
                             f"(default: {video_prediction.DEFAULT_HEATMAP_FPS:g})")
    parser.add_argument("--stall_timeout", type=non_negative_float, default=watchdog.DEFAULT_TIMEOUT_SECONDS,
                        help="seconds without a finished pair or video frame after which every thread's stack is "
                             "written to OUT_DIR/stall.log and the run exits with code 3 (the limit grows to 20 x the "
                             f"slowest step seen; 0 disables; default: {watchdog.DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("--max_side", type=positive_int, default=None,
                        help="video: scale the output video so its longer side is at most this many pixels")
    arguments = parser.parse_args(argv)
    if bool(arguments.image) != bool(arguments.audio):
        parser.error("--image and --audio go together")
    sources = [bool(arguments.data_dir), bool(arguments.image), bool(arguments.video), bool(arguments.video_dir)]
    if sum(sources) != 1:
        parser.error("give one of --data_dir, --image with --audio, --video or --video_dir")
    if not (arguments.start >= 0 and np.isfinite(arguments.start)):
        parser.error(f"--start must be a finite number of seconds >= 0, got {arguments.start}")
    if arguments.max_side is not None and arguments.max_side < 16:
        parser.error(f"--max_side must be at least 16 pixels, got {arguments.max_side}")
    return arguments


def output_names(paths):
    """One output name per input file: its stem, or stem_ext when two inputs share a stem (a.jpg and a.png).

    Args:
        paths: input file paths.

    Returns:
        list of names, unique, in the order of paths.
    """
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    counts = collections.Counter(stems)
    names = [stem if counts[stem] == 1 else f"{stem}_{os.path.splitext(path)[1].lstrip('.').lower()}"
             for stem, path in zip(stems, paths)]
    if len(set(names)) != len(names):  # a.JPG and a.jpg: fall back on the position
        names = [f"{name}_{index}" for index, name in enumerate(names)]
    return names


def list_videos(folder):
    """The video files of a folder (by extension, not recursive, hidden files left out), sorted; no globbing."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError as error:
        raise SystemExit(f"error: cannot read the video folder {preprocessing.printable(folder)}: {error.strerror}")
    return [os.path.join(folder, entry) for entry in entries
            if not entry.startswith(".") and os.path.splitext(entry)[1].lower() in video.VIDEO_EXTENSIONS]


def run_videos(arguments, model, settings, stall_watchdog=None):
    """--video / --video_dir: heatmap videos; a bad video is one error line (--video) or a named skip (folder)."""
    options = video_prediction.VideoOptions(
        start=arguments.start, duration=arguments.duration, heatmap_fps=arguments.heatmap_fps,
        max_side=arguments.max_side, batch_size=arguments.batch_size, resize=arguments.resize,
        save_heatmaps=arguments.save_heatmaps, on_progress=stall_watchdog.tick if stall_watchdog else None)
    if arguments.video:
        paths = [arguments.video]
    else:
        if not os.path.isdir(arguments.video_dir):
            raise SystemExit(f"error: video folder not found: {preprocessing.printable(arguments.video_dir)}")
        paths = list_videos(arguments.video_dir)[: arguments.limit]
        if not paths:
            raise SystemExit(f"error: no video files in {preprocessing.printable(arguments.video_dir)} "
                             f"(extensions: {', '.join(video.VIDEO_EXTENSIONS)})")
    forward = make_forward(model)
    written, skipped = 0, []
    for path, name in zip(paths, output_names(paths)):
        try:
            summary = video_prediction.predict_video(forward, settings, path, name, arguments.out_dir, options)
        except (video.VideoError, ValueError) as error:
            if arguments.video:
                raise SystemExit(f"error: {preprocessing.printable(str(error))}")
            skipped.append(preprocessing.printable(str(error)))
            print(f"skipped {skipped[-1]}", file=sys.stderr)
            continue
        except OSError as error:
            raise SystemExit(f"error: cannot write to {preprocessing.printable(arguments.out_dir)}: {error.strerror or error}")
        low, high = summary["scale"]
        print(f"{preprocessing.printable(name)}: {summary['frame_count']} frames, {summary['map_count']} heatmaps, colour scale "
              f"{low:.3f} to {high:.3f} -> {preprocessing.printable(summary['outputs']['video'])}")
        written += 1
    if skipped:
        print(f"{len(skipped)} video(s) skipped:", file=sys.stderr)
        for line in skipped:
            print(f"  {line}", file=sys.stderr)
    if written == 0:
        raise SystemExit("error: no video could be used")


def check_out_dir(out_dir):
    """Stop with one line, before any work, when the output folder cannot be a writable folder."""
    existing = out_dir
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing.rstrip(os.sep))
    existing = existing or "."
    if not os.path.isdir(existing):
        raise SystemExit(f"error: --out_dir {preprocessing.printable(out_dir)}: {preprocessing.printable(existing)} "
                         "is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"error: --out_dir {preprocessing.printable(out_dir)}: cannot write in "
                         f"{preprocessing.printable(existing)}")


def main(argv=None):
    arguments = parse_arguments(argv)
    check_out_dir(arguments.out_dir)
    if arguments.video:  # a bad video ends here, before the model is loaded
        try:
            video_prediction.check_video(arguments.video)
        except video.VideoError as error:
            raise SystemExit(f"error: {preprocessing.printable(str(error))}")
    pairs = None  # --video / --video_dir read no pairs
    if arguments.data_dir:
        pairs = preprocessing.require_pairs(arguments.data_dir)
    elif arguments.image:
        try:
            pairs = single_pair(arguments.image, arguments.audio)
        except ValueError as error:
            raise SystemExit(f"error: {error}")
    with Watchdog(arguments.stall_timeout, log_path=os.path.join(arguments.out_dir, "stall.log"),
                  what="prediction") as stall_watchdog:
        stall_watchdog.allow(watchdog.SLOW_WORK_ALLOWANCE_SECONDS)  # loading the model, tracing the forward
        return predict(arguments, pairs, stall_watchdog)


def predict(arguments, pairs, stall_watchdog):
    """The work of main once the inputs are checked: figures (and heatmaps) of pairs, or heatmap videos."""
    try:
        model, settings = load_model_and_settings(arguments.checkpoint, arguments.sample_rate)
    except ValueError as error:
        raise SystemExit(f"error: {preprocessing.printable(str(error))}")
    if arguments.video or arguments.video_dir:
        return run_videos(arguments, model, settings, stall_watchdog)
    pairs = pairs[: arguments.limit] if arguments.limit else pairs
    names = output_names([pair.image_path for pair in pairs])
    pairs = [pair._replace(name=name) for pair, name in zip(pairs, names)]
    try:
        os.makedirs(arguments.out_dir, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"error: cannot create {preprocessing.printable(arguments.out_dir)}: {error.strerror or error}")
    written = 0
    try:
        for name, figure, similarity in pair_figures(model, pairs, arguments.batch_size, settings=settings,
                                                     resize=arguments.resize):
            save_figure(figure, os.path.join(arguments.out_dir, f"{name}.png"))
            if arguments.save_heatmaps:
                with atomic_path(os.path.join(arguments.out_dir, f"{name}.npy")) as temporary:
                    np.save(temporary, similarity.astype(np.float32))
            written += 1
            stall_watchdog.tick(f"{written} of {len(pairs)} pairs")
    except OSError as error:
        raise SystemExit(f"error: cannot write to {preprocessing.printable(arguments.out_dir)}: {error.strerror or error}")
    failed = len(pairs) - written
    preprocessing.report_skipped(sys.stderr)
    print(f"wrote {written} figure(s) to {preprocessing.printable(arguments.out_dir)}"
          + (f"; {failed} pair(s) failed to decode" if failed else ""))
    if written == 0:
        raise SystemExit("error: no pair could be decoded")


if __name__ == "__main__":
    main()
