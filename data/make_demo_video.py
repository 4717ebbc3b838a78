"""Generate the demo video of lvs-keras (data/demo/demo_video.mp4): a sounding object moves across the frame.

The scene is built from the demo set's own classes, drawing and sounds (data/make_demo.py), so the demo model that
demo.sh trains knows them: a cluttered background with small silent distractor shapes, and two class objects of
the demo set's size (about half the frame):
- the first object (a red disc) moves along the top half from left to right,
- the second (a blue triangle) moves along the bottom half from right to left,
and the sound is the first object's tone during the first half of the clip and the second object's tone after:
the sound switches between the two objects once, at --switch seconds. The frame alone cannot tell which object
sounds; the heatmap must follow the audio.

Written to --out_dir: demo_video.mp4 (H.264 + AAC) and demo_video.json, the objects' boxes at every frame
({"fps", "switch_seconds", "frames": [{"time", "sounding", "box", "silent_box"}]}, boxes [xmin, ymin, xmax, ymax]
normalised to 0..1).
Deterministic for given arguments (the pictures and sounds; the H.264 bytes may differ between ffmpeg builds).

Run from the repository root (this exact command regenerates the committed clip):

    python data/make_demo_video.py --out_dir data/demo
    python data/make_demo_video.py --score runs/demo/video/demo_video     (after predict.py --save_heatmaps)
"""

import argparse
import colorsys
import json
import math
import os
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import scipy.io.wavfile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import make_demo  # noqa: E402
from pipeline import video  # noqa: E402

SOUNDING_CLASSES = ("red disc", "blue triangle")  # the first sounds before the switch, the second after
OBJECT_SIDE = 0.44  # box side as a fraction of the frame (the demo set's objects: 0.5 to 0.58)
MARGIN = 0.03
COLOUR_VALUE = 0.92


def object_boxes(time, seconds):
    """Boxes (normalised xmin, ymin, xmax, ymax) of the two objects at `time`: one moves right, one moves left."""
    travel = 1.0 - 2 * MARGIN - OBJECT_SIDE
    progress = min(max(time / seconds, 0.0), 1.0)
    top_left = MARGIN + travel * progress
    bottom_left = MARGIN + travel * (1.0 - progress)
    top = (top_left, MARGIN, top_left + OBJECT_SIDE, MARGIN + OBJECT_SIDE)
    bottom = (bottom_left, 1.0 - MARGIN - OBJECT_SIDE, bottom_left + OBJECT_SIDE, 1.0 - MARGIN)
    return top, bottom


def render_frame(background, classes, boxes, size):
    """One frame: the background with the class objects drawn in their boxes, box-filtered to size x size."""
    canvas = background.copy()
    canvas_size = canvas.size[0]
    for object_class, box in zip(classes, boxes):
        colour = tuple(int(round(channel * 255)) for channel in
                       colorsys.hsv_to_rgb(object_class.hue, 0.9, COLOUR_VALUE))
        unit_width, unit_height = make_demo._shape_extent(object_class.shape, 0.0)
        side = (box[2] - box[0]) * canvas_size
        scale = side / max(unit_width, unit_height)
        centre = ((box[0] + box[2]) / 2 * canvas_size, (box[1] + box[3]) / 2 * canvas_size)
        mask = make_demo._shape_mask(object_class.shape, canvas_size, centre, scale, 0.0)
        canvas.paste(colour, (0, 0), mask)
    return np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.uint8)


def make_sound(classes, seconds, switch, sample_rate, seed):
    """The first class's sound until `switch`, then the second's (make_demo's synthesis), as float32 in [-1, 1]."""
    rng = np.random.default_rng([seed, 7])
    first = make_demo._synthesize_sound(classes[0], rng, sample_rate, switch)
    second = make_demo._synthesize_sound(classes[1], rng, sample_rate, seconds - switch)
    return np.concatenate([first, second]).astype(np.float32) / 32767.0


def write_demo_video(out_dir, seconds=8.0, switch=4.0, size=224, fps=25, sample_rate=16000, seed=0):
    """Write demo_video.mp4 and demo_video.json to out_dir.

    Args:
        out_dir: destination folder.
        seconds: clip length.
        switch: when the sound moves from the first object to the second.
        size: frame side in pixels (square frames, as the demo set's).
        fps: frame rate.
        sample_rate: audio rate in Hz.
        seed: seed of the background and the sounds.

    Returns:
        the path of the video.
    """
    if not 0 < switch < seconds:
        raise ValueError(f"switch must lie inside the clip (0 < switch < {seconds}), got {switch}")
    classes = [make_demo.CLASSES[make_demo.CLASS_NAMES.index(name)] for name in SOUNDING_CLASSES]
    background = make_demo._background(np.random.default_rng([seed, 5]), size * make_demo.SUPERSAMPLE)
    frame_count = int(round(seconds * fps))
    records = []
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "demo_video.mp4")
    with tempfile.TemporaryDirectory(prefix="lvs_demo_video_") as folder:
        wav_path = os.path.join(folder, "sound.wav")
        scipy.io.wavfile.write(wav_path, sample_rate, make_sound(classes, seconds, switch, sample_rate, seed))
        with video.VideoWriter(path, size, size, Fraction(fps), audio_source=wav_path,
                               audio_duration=frame_count / fps) as writer:
            for index in range(frame_count):
                time = index / fps
                boxes = object_boxes(time, seconds)
                writer.write(render_frame(background, classes, boxes, size))
                sounding = 0 if time < switch else 1
                records.append({"time": round(time, 6), "sounding": SOUNDING_CLASSES[sounding],
                                "box": [round(value, 6) for value in boxes[sounding]],
                                "silent_box": [round(value, 6) for value in boxes[1 - sounding]]})
    description = {"fps": fps, "switch_seconds": switch, "frames": records}
    with open(os.path.join(out_dir, "demo_video.json"), "w") as handle:
        json.dump(description, handle)
    return path


def peak_in_box(description, heatmaps, times, resize="crop"):
    """For every computed map of the demo clip, whether its peak lies inside the sounding object's box.

    Args:
        description: demo_video.json's content.
        heatmaps: T x h x w maps (predict.py --save_heatmaps: NAME_heatmaps.npy) of the square clip.
        times: their T times in seconds (NAME_times.npy).
        resize: how predict.py fed the frames (a square frame gives the same view either way).

    Returns:
        (inside, nearer): lists of booleans, one per map: the peak (centre of the map's largest cell) lies inside
        the sounding object's box; the peak is nearer the sounding object's box centre than the silent one's.
    """
    fps = description["fps"]
    inside, nearer = [], []
    for heatmap, time in zip(heatmaps, times):
        record = description["frames"][min(int(round(time * fps)), len(description["frames"]) - 1)]
        row, column = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        peak = np.array([(column + 0.5) / heatmap.shape[1], (row + 0.5) / heatmap.shape[0]])  # x, y in 0..1
        box, silent = np.array(record["box"]), np.array(record["silent_box"])
        inside.append(bool(box[0] <= peak[0] <= box[2] and box[1] <= peak[1] <= box[3]))
        distance = [np.linalg.norm(peak - (corners[:2] + corners[2:]) / 2) for corners in (box, silent)]
        nearer.append(bool(distance[0] < distance[1]))
    return inside, nearer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default="data/demo", help="destination folder (default: data/demo)")
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length in seconds (default: 8)")
    parser.add_argument("--switch", type=float, default=4.0, help="when the sound changes object (default: 4)")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels (default: 224)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate (default: 25)")
    parser.add_argument("--sample_rate", type=int, default=16000, help="audio rate in Hz (default: 16000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the background and the sounds (default: 0)")
    parser.add_argument("--score", metavar="PREFIX",
                        help="instead of generating: score PREFIX_heatmaps.npy / PREFIX_times.npy (predict.py "
                             "--save_heatmaps on the clip): how often the map's peak is on the sounding object")
    arguments = parser.parse_args()
    if arguments.score:
        try:
            with open(os.path.join(arguments.out_dir, "demo_video.json")) as handle:
                description = json.load(handle)
            inside, nearer = peak_in_box(description, np.load(f"{arguments.score}_heatmaps.npy"),
                                         np.load(f"{arguments.score}_times.npy"))
        except (OSError, ValueError, KeyError) as error:
            sys.exit(f"error: cannot score {arguments.score}: {error}")
        print(f"of {len(inside)} heatmaps, the peak is nearer the sounding object than the silent one in "
              f"{sum(nearer)} and inside its box in {sum(inside)}")
        return
    if not (math.isfinite(arguments.seconds) and arguments.seconds > 0 and arguments.size >= 32 and arguments.fps >= 1):
        parser.error("--seconds must be > 0, --size >= 32 and --fps >= 1")
    try:
        path = write_demo_video(arguments.out_dir, arguments.seconds, arguments.switch, arguments.size, arguments.fps,
                                arguments.sample_rate, arguments.seed)
    except (ValueError, video.VideoError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
