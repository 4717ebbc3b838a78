"""How fast predict.py --video runs on this machine, next to the PyTorch reference forward on the same windows.

For each shape (demo: 112 px, 0.5 s at 8 kHz; paper: 224 px, 10 s at 16 kHz) it generates a 10 s 640 x 360
25 fps clip with sound (ffmpeg's testsrc2 and a sine), builds a model with random weights (speed does not depend on
them), and measures:
- the whole command, `python predict.py --video CLIP` (start-up, model loading, both passes, encoding), wall time;
- the pipeline in this process (video_prediction.predict_video: decoding, preprocessing, forward, overlay,
  encoding), video frames per second;
- the forward passes alone on the windows the pipeline fed the model: ours (predict's tf.function) and PyTorch's
  (torch_reference.TorchLVS in eval mode under inference_mode, NCHW float32), maps per second.
Measurement only: nothing here asserts a speed. Other processes on the machine slow it down; rerun to compare.

Usage:
    python -m benchmarks.video_speed                # both shapes, default --heatmap_fps
    python -m benchmarks.video_speed --shapes paper --heatmap_fps 2
    from benchmarks.video_speed import video_rows               # rows for bench.py's report
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch  # before TensorFlow (torchvision segfaults when imported after it in one process)

from benchmarks.torch_reference import TorchLVS  # noqa: E402

import tensorflow as tf  # noqa: E402

from pipeline import video  # noqa: E402
from visualization import video_prediction  # noqa: E402
from visualization.heatmaps import make_forward  # noqa: E402
from model import build_model  # noqa: E402

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"demo": {"image_size": 112, "sample_rate": 8000, "audio_seconds": 0.5},
          "paper": {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0}}
CLIP_SECONDS, CLIP_SIZE, CLIP_FPS = 10, (640, 360), 25


def make_clip(path, seconds=CLIP_SECONDS):
    """A seconds-long 640 x 360 25 fps H.264 + AAC clip with a moving test pattern and a tone."""
    width, height = CLIP_SIZE
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={width}x{height}:rate={CLIP_FPS}:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", "-shortest", path], check=True)
    return path


def time_forward(call, batches, repeats=2):
    """Seconds per pass over all batches: the best of `repeats` passes after a warm-up pass (every batch shape)."""
    for batch in batches:
        call(*batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            call(*batch)
        best = min(best, time.perf_counter() - start)
    return best


def video_row(shape, heatmap_fps, batch_size, folder):
    """One shape's measurements (see the module docstring).

    Args:
        shape: a SHAPES name.
        heatmap_fps: predict.py's --heatmap_fps.
        batch_size: predict.py's --batch_size.
        folder: scratch folder.

    Returns:
        dict: shape, heatmap_fps, frames, maps, command_seconds, pipeline_seconds, pipeline_frames_per_second,
        keras_forward_maps_per_second, torch_forward_maps_per_second.
    """
    settings = SHAPES[shape]
    clip = make_clip(os.path.join(folder, "clip.mp4"))
    model = build_model(image_weights="none", **settings)
    checkpoint = os.path.join(folder, f"{shape}.keras")
    model.save(checkpoint)
    command = [sys.executable, os.path.join(PROJECT, "predict.py"), "--checkpoint", checkpoint, "--video", clip,
               "--out_dir", os.path.join(folder, f"command_{shape}"), "--heatmap_fps", str(heatmap_fps),
               "--batch_size", str(batch_size)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    command_seconds = time.perf_counter() - start

    forward = make_forward(model)
    fed = []  # the batches the pipeline fed the model

    def recording_forward(inputs):
        fed.append((inputs["frame"].numpy(), inputs["spectrogram"].numpy()))
        return forward(inputs)

    options = video_prediction.VideoOptions(heatmap_fps=heatmap_fps, batch_size=batch_size)
    video_prediction.predict_video(forward, settings, clip, "warmup", os.path.join(folder, "warmup"),
                                   video_prediction.VideoOptions(duration=1.0, batch_size=batch_size))
    start = time.perf_counter()
    summary = video_prediction.predict_video(recording_forward, settings, clip, "clip", os.path.join(folder, shape),
                                             options)
    pipeline_seconds = time.perf_counter() - start
    maps = summary["map_count"]

    keras_batches = [(tf.constant(frames), tf.constant(spectrograms)) for frames, spectrograms in fed]
    keras_seconds = time_forward(
        lambda frames, spectrograms: forward({"frame": frames, "spectrogram": spectrograms})["similarity"].numpy(),
        keras_batches)
    network = TorchLVS(layer4_stride=1).eval()
    torch_batches = [(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),  # B x S x S x 3 -> B x 3 x S x S
                      torch.from_numpy(spectrograms).permute(0, 3, 1, 2).contiguous())  # B x 257 x T x 1 -> B x 1 x 257 x T
                     for frames, spectrograms in fed]

    def torch_call(frames, spectrograms):
        with torch.inference_mode():
            frame_features, audio_features = network(frames, spectrograms)
            return torch.einsum("nchw,nc->nhw", frame_features, audio_features).numpy()  # B x h x w

    torch_seconds = time_forward(torch_call, torch_batches)
    return {"shape": shape, "heatmap_fps": heatmap_fps, "frames": summary["frame_count"], "maps": maps,
            "command_seconds": command_seconds, "pipeline_seconds": pipeline_seconds,
            "pipeline_frames_per_second": summary["frame_count"] / pipeline_seconds,
            "keras_forward_maps_per_second": maps / keras_seconds,
            "torch_forward_maps_per_second": maps / torch_seconds}


def video_rows(shapes=("demo", "paper"), heatmap_fps=video_prediction.DEFAULT_HEATMAP_FPS, batch_size=16):
    """Measure predict.py --video on a 10 s clip at each shape.

    Args:
        shapes: SHAPES names.
        heatmap_fps: predict.py's --heatmap_fps.
        batch_size: predict.py's --batch_size.

    Returns:
        a list of video_row dicts.
    """
    video.require_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="lvs_bench_video_") as folder:
        return [video_row(shape, heatmap_fps, batch_size, folder) for shape in shapes]


def format_rows(rows):
    """The rows as a markdown table."""
    lines = ["| shape | heatmap fps | frames | maps | `predict.py --video` wall time | pipeline frames/s | "
             "forward maps/s, ours | forward maps/s, PyTorch | ours / PyTorch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['shape']} | {row['heatmap_fps']:g} | {row['frames']} | {row['maps']} | "
                     f"{row['command_seconds']:.1f} s | {row['pipeline_frames_per_second']:.1f} | "
                     f"{row['keras_forward_maps_per_second']:.2f} | {row['torch_forward_maps_per_second']:.2f} | "
                     f"{row['keras_forward_maps_per_second'] / row['torch_forward_maps_per_second']:.2f}x |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["demo", "paper"],
                        help="shapes to measure (default: demo paper)")
    parser.add_argument("--heatmap_fps", type=float, default=video_prediction.DEFAULT_HEATMAP_FPS,
                        help=f"maps per second of video (default: {video_prediction.DEFAULT_HEATMAP_FPS:g})")
    parser.add_argument("--batch_size", type=int, default=16, help="pairs per forward pass (default: 16)")
    arguments = parser.parse_args()
    if not (arguments.heatmap_fps > 0 and arguments.batch_size >= 1):
        parser.error("--heatmap_fps must be > 0 and --batch_size >= 1")
    print(f"predict.py --video on a {CLIP_SECONDS} s {CLIP_SIZE[0]} x {CLIP_SIZE[1]} {CLIP_FPS} fps clip, "
          f"{os.cpu_count()} CPU core(s)")
    print(format_rows(video_rows(arguments.shapes, arguments.heatmap_fps, arguments.batch_size)))


if __name__ == "__main__":
    main()
