"""A web page for the model (Gradio): upload a video, or a frame and its sound, and see where the sound comes from.

The page has three inputs: a video (anything predict.py --video reads), a frame plus a sound (an upload, or the
microphone), and the demo clip data/demo/demo_video.mp4 as a ready example. For a video it returns the heatmap
video with its audio, the strip, the four panels of the middle map and the clip's colour scale; for a frame and a
sound, the four-panel figure. Everything is computed by predict.py's functions (visualization/prediction.py,
visualization/video_prediction.py) with the model loaded once, so a result is the one predict.py writes.

It serves on 127.0.0.1 only (--host to open it to a network, --share for a public Gradio link; both off by
default), sends no usage data and loads nothing from outside. Jobs run one at a time; other users wait in a queue
of --max_queue. The server reads only what was uploaded through the page (never a path the browser names) and the
checkpoint named on the command line. A file that is not media, a video without sound, an empty or damaged file,
a clip longer than --max_seconds or larger than --max_pixels is refused with a message on the page; the server
stays up. Results are kept for an hour, and the folder they live in is removed when the server stops.

The same two endpoints from Python (gradio_client):
    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    video, strip, figure, scale = client.predict(handle_file("clip.mp4"), api_name="/localize_video")
    figure = client.predict(handle_file("frame.jpg"), handle_file("sound.wav"), api_name="/localize_pair")

Usage:
    python app.py --checkpoint runs/demo/trained/model.keras                      # http://127.0.0.1:7860
    python app.py --checkpoint lvs_flickr.pth.tar --sample_rate native --port 8080
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio's import: no usage reports, no version check

import gradio as gr  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from pipeline import preprocessing  # noqa: E402
from pipeline import video  # noqa: E402
from pipeline.frames import frame_size  # noqa: E402
from safeguards.arguments import positive_float, positive_int, sample_rate  # noqa: E402
from visualization import prediction, video_prediction  # noqa: E402
from visualization.heatmaps import COLOUR_MAP, make_forward, save_figure  # noqa: E402

PROJECT = os.path.dirname(os.path.abspath(__file__))
DEMO_CLIP = os.path.join(PROJECT, "data", "demo", "demo_video.mp4")
RESULTS_LIFETIME_SECONDS = 3600  # results (and uploads) older than this are deleted, checked as often
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_PIXELS = 3840 * 2160  # 4K UHD; an 8K frame is four times that
DEFAULT_MAX_SIDE = 1280
DEFAULT_MAX_UPLOAD_MB = 500
DEFAULT_MAX_QUEUE = 20
NAME_LENGTH = 40


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model.keras from train.py, or an official LVS .pth.tar")
    parser.add_argument("--sample_rate", type=sample_rate, default=None,
                        help="the audio rate an official .pth.tar expects, in Hz or 'native' (default: 16000, "
                             "the official recipe); a .keras model carries its own")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the "
                             "network)")
    parser.add_argument("--port", type=positive_int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public link through Gradio's share servers (off by default)")
    parser.add_argument("--resize", choices=preprocessing.RESIZE_MODES, default="crop",
                        help="frames: crop = shorter side + centre crop (LVS, default); squash = the whole frame "
                             "resized to a square (EZ-VSL family)")
    parser.add_argument("--heatmap_fps", type=positive_float, default=video_prediction.DEFAULT_HEATMAP_FPS,
                        help="video: maps computed per second, interpolated between "
                             f"(default: {video_prediction.DEFAULT_HEATMAP_FPS:g})")
    parser.add_argument("--batch_size", type=positive_int, default=16,
                        help="frame/sound pairs per forward pass: memory is bounded by it (default: 16)")
    parser.add_argument("--max_side", type=positive_int, default=DEFAULT_MAX_SIDE,
                        help="video: scale the heatmap video so its longer side is at most this many pixels "
                             f"(default: {DEFAULT_MAX_SIDE})")
    parser.add_argument("--max_seconds", type=positive_float, default=DEFAULT_MAX_SECONDS,
                        help=f"refuse videos longer than this many seconds (default: {DEFAULT_MAX_SECONDS:g})")
    parser.add_argument("--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse videos and frames with more pixels than this (default: "
                             f"{DEFAULT_MAX_PIXELS}, 3840 x 2160; an 8K frame has four times as many)")
    parser.add_argument("--max_upload_mb", type=positive_int, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"refuse uploads larger than this many megabytes (default: {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--max_queue", type=positive_int, default=DEFAULT_MAX_QUEUE,
                        help="jobs that may wait while one runs; more are turned away with a message "
                             f"(default: {DEFAULT_MAX_QUEUE})")
    arguments = parser.parse_args(argv)
    if arguments.max_side < 16:
        parser.error(f"--max_side must be at least 16 pixels, got {arguments.max_side}")
    return arguments


def output_name(file_name):
    """The name an upload's results carry: its file name's stem, made safe for a file name and shortened."""
    stem = os.path.splitext(file_name)[0]
    return re.sub(r"[^\w.-]+", "_", stem)[:NAME_LENGTH].strip("._") or "upload"


def refuse(message):
    """Stop a request with a message on the page (and one line in the server's log); the server stays up."""
    print(f"refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, duration=None, print_exception=False)


def uploaded_file(payload, upload_folder):
    """(path, the name the user gave it) of a file that came through the page's upload; anything else is refused.

    Args:
        payload: the event's raw input (the handlers take no preprocessing): a FileData dict, or None.
        upload_folder: where Gradio keeps this server's uploads.

    Returns:
        (real path inside upload_folder, printable original file name), or (None, None) without a file.
    """
    if not payload:
        return None, None
    path = payload.get("path") or ""
    real_path, folder = os.path.realpath(path), os.path.realpath(upload_folder)
    if os.path.commonpath([real_path, folder]) != folder or not os.path.isfile(real_path):
        raise refuse("only files uploaded through this page are read")
    return real_path, preprocessing.printable(os.path.basename(payload.get("orig_name") or path))


class UploadsOnly:
    """ASGI guard in front of Gradio: a job whose input file is an address (http://...) is refused before Gradio
    would download it, so the server reads only what was uploaded to it. (A local path that is not an upload
    Gradio refuses itself; uploaded_file checks it again.)"""

    JOB_ROUTE = re.compile(r"/(queue/join|call/|run/)")
    MAX_JOB_BYTES = 1_000_000  # a job's JSON is a few hundred bytes; more is not read into memory

    def __init__(self, app):
        self.app = app

    @staticmethod
    def names_an_address(value):
        """Whether a job's JSON names a file by an address: a {"path": "scheme://..."} anywhere in it."""
        if isinstance(value, dict):
            path = value.get("path")
            return (isinstance(path, str) and "://" in path) or any(map(UploadsOnly.names_an_address, value.values()))
        if isinstance(value, list):
            return any(map(UploadsOnly.names_an_address, value))
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self.JOB_ROUTE.search(scope["path"]):
            return await self.app(scope, receive, send)
        chunks, more, size = [], True, 0
        while more and size <= self.MAX_JOB_BYTES:
            message = await receive()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False) and message["type"] == "http.request"
        body = b"".join(chunks)
        try:  # a job names its files; it never carries them (uploads go to /upload), so a large body is refused
            refused = size > self.MAX_JOB_BYTES or self.names_an_address(json.loads(body or b"null"))
        except (ValueError, RecursionError):
            refused = True
        if refused:
            response = JSONResponse({"error": "only files uploaded to this server are read"}, status_code=400)
            return await response(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def too_many_pixels(width, height, max_pixels):
    """The message for a frame above --max_pixels."""
    return (f"frames of {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); this server takes up to "
            f"{max_pixels / 1e6:.1f} megapixels a frame")


def check_video_upload(path, arguments):
    """A video the server will process: not empty, readable, with sound, within --max_seconds and --max_pixels.

    Raises:
        video.VideoError naming the problem.
    """
    if os.path.getsize(path) == 0:
        raise video.VideoError(f"{path}: the file is empty (0 bytes)")
    info = video_prediction.check_video(path)
    if info.duration > arguments.max_seconds:
        raise video.VideoError(f"{path}: {info.duration:.0f} s long; this server takes videos of up to "
                               f"{arguments.max_seconds:g} s")
    if info.width * info.height > arguments.max_pixels:
        raise video.VideoError(f"{path}: {too_many_pixels(info.width, info.height, arguments.max_pixels)}")
    return info


def colour_scale(low, high):
    """HTML: the clip's colour scale, a bar in the heatmaps' colours from `low` to `high`."""
    colours = plt.get_cmap(COLOUR_MAP)([index / 8 for index in range(9)])
    stops = ", ".join(f"rgb({int(r * 255)}, {int(g * 255)}, {int(b * 255)}) {index * 12.5:g}%"
                      for index, (r, g, b, _) in enumerate(colours))
    return (f'<div id="colour_scale"><b>Colour scale</b>, one for the whole clip: S_ii (cosine similarity of each '
            f'place with the sound) from {low:.3f} to {high:.3f}'
            f'<div style="display:flex;align-items:center;gap:8px;margin-top:4px"><span>{low:.3f}</span>'
            f'<div style="flex:1;height:14px;background:linear-gradient(to right, {stops})"></div>'
            f'<span>{high:.3f}</span></div></div>')


def settings_text(arguments, settings):
    """Markdown: the checkpoint and the settings every result on the page is computed with."""
    rate = settings["sample_rate"]
    rate = "each file's own rate" if rate == preprocessing.NATIVE else f"{rate} Hz"
    framing = "the centred square of a frame" if arguments.resize == "crop" else "the whole frame, squashed"
    return (f"- **Model** `{os.path.basename(arguments.checkpoint)}`: sees {framing} at {settings['image_size']} x "
            f"{settings['image_size']} px and hears {settings['audio_seconds']:g} s of sound at {rate}.\n"
            f"- **Videos**: {arguments.heatmap_fps:g} maps per second, each hearing the sound centred on its frame; "
            f"up to {arguments.max_seconds:g} s and {arguments.max_pixels / 1e6:.1f} megapixels a frame; the heatmap "
            f"video at most {arguments.max_side} px on its longer side.\n"
            f"- **A frame and a sound**: the sound's first {settings['audio_seconds']:g} s. "
            f"Uploads up to {arguments.max_upload_mb} MB.")


def build_page(model, settings, arguments, upload_folder):
    """The Gradio page and its two endpoints, /localize_video and /localize_pair, around one loaded model."""
    forward = make_forward(model)  # traced once, reused by every request
    results_folder = os.path.join(upload_folder, "results")
    options = video_prediction.VideoOptions(heatmap_fps=arguments.heatmap_fps, max_side=arguments.max_side,
                                            batch_size=arguments.batch_size, resize=arguments.resize)

    def localize_video(clip, progress=gr.Progress(track_tqdm=True)):
        """The heatmap video (with its audio), the strip, the four panels of the middle map, the colour scale."""
        path, file_name = uploaded_file(clip, upload_folder)
        if path is None:
            raise refuse("upload a video first, or click the demo clip")
        name = output_name(file_name)
        out_dir = tempfile.mkdtemp(prefix=f"{name}_", dir=results_folder)
        try:
            check_video_upload(path, arguments)
            summary = video_prediction.predict_video(forward, settings, path, name, out_dir, options)
        except (video.VideoError, ValueError) as error:
            shutil.rmtree(out_dir, ignore_errors=True)  # predict_video leaves nothing behind; nor do we
            raise refuse(preprocessing.printable(str(error)).replace(path, file_name))
        outputs = summary["outputs"]
        print(f"{file_name}: {summary['frame_count']} frames, {summary['map_count']} heatmaps", file=sys.stderr,
              flush=True)
        return outputs["video"], outputs["strip"], outputs["figure"], colour_scale(*summary["scale"])

    def localize_pair(image, audio, progress=gr.Progress(track_tqdm=True)):
        """The four-panel figure of a frame and its sound."""
        image_path, image_name = uploaded_file(image, upload_folder)
        audio_path, audio_name = uploaded_file(audio, upload_folder)
        if image_path is None or audio_path is None:
            raise refuse("give a frame and a sound (an upload, or the microphone)")
        name = output_name(image_name)
        skipped_before = len(preprocessing.SKIPPED_WHILE_LOADING)
        try:
            pairs = prediction.single_pair(image_path, audio_path, name=name)
            width, height = frame_size(image_path)
            if width * height > arguments.max_pixels:
                raise ValueError(f"{image_path}: {too_many_pixels(width, height, arguments.max_pixels)}")
            out_dir = tempfile.mkdtemp(prefix=f"{name}_", dir=results_folder)
            for _, figure, _ in prediction.pair_figures(model, pairs, batch_size=1, settings=settings,
                                                        resize=arguments.resize, forward=forward):
                figure_path = os.path.join(out_dir, f"{name}.png")
                save_figure(figure, figure_path)
                return figure_path
            os.rmdir(out_dir)
            failures = preprocessing.SKIPPED_WHILE_LOADING[skipped_before:] or ["the pair could not be decoded"]
            raise ValueError(failures[0])
        except ValueError as error:
            message = preprocessing.printable(str(error))
            for path, file_name in ((image_path, image_name), (audio_path, audio_name)):
                message = message.replace(path, file_name)
            raise refuse(message)
        finally:
            del preprocessing.SKIPPED_WHILE_LOADING[skipped_before:]  # a long-running server keeps no list

    with gr.Blocks(title="lvs-keras: where does the sound come from?",
                   delete_cache=(RESULTS_LIFETIME_SECONDS, RESULTS_LIFETIME_SECONDS)) as page:
        gr.Markdown("## Where does the sound come from?\nLocalizing Visual Sounds the Hard Way (CVPR 2021), in "
                    "Keras. Red: the places whose features match the sound best.")
        gr.Markdown(settings_text(arguments, settings), elem_id="settings")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=1):
                    video_input = gr.Video(label="A video with sound", sources=["upload"], elem_id="video_input")
                    video_button = gr.Button("Localize", variant="primary", elem_id="video_button")
                    examples = gr.Examples([[DEMO_CLIP]], inputs=[video_input], label="Or the demo clip")
                with gr.Column(scale=2):
                    heatmap_video = gr.Video(label="Heatmap video (with its sound)", elem_id="heatmap_video",
                                             interactive=False)
                    scale = gr.HTML(elem_id="scale")
            strip = gr.Image(label="Across the clip", type="filepath", interactive=False, elem_id="strip")
            figure = gr.Image(label="The middle map: frame, S_ii, positive region m_ip, frame x region",
                              type="filepath", interactive=False, elem_id="figure")
        with gr.Tab("Frame and sound"):
            with gr.Row():
                with gr.Column(scale=1):
                    image_input = gr.Image(label="A frame", type="filepath", sources=["upload"],
                                           elem_id="image_input")
                    audio_input = gr.Audio(label="Its sound", type="filepath", sources=["upload", "microphone"],
                                           elem_id="audio_input")
                    pair_button = gr.Button("Localize", variant="primary", elem_id="pair_button")
                with gr.Column(scale=2):
                    pair_figure = gr.Image(label="Frame, S_ii, positive region m_ip, frame x region",
                                           type="filepath", interactive=False, elem_id="pair_figure")
        video_outputs = [heatmap_video, strip, figure, scale]
        # preprocess=False: the handlers get the uploads' paths as they are and check the files themselves, so that
        # a bad file is a message on the page (Gradio's own decoding would fail with a bare "Error")
        video_button.click(localize_video, inputs=video_input, outputs=video_outputs, api_name="localize_video",
                           concurrency_id="model", preprocess=False)
        examples.load_input_event.then(localize_video, inputs=video_input, outputs=video_outputs,
                                       api_visibility="private", concurrency_id="model", preprocess=False)
        pair_button.click(localize_pair, inputs=[image_input, audio_input], outputs=pair_figure,
                          api_name="localize_pair", concurrency_id="model", preprocess=False)
    page.queue(default_concurrency_limit=1, max_size=arguments.max_queue)
    os.makedirs(results_folder, exist_ok=True)
    return page


def stop_on_terminate(signal_number, frame):
    """SIGTERM ends the server as Ctrl-C does, so that its folder of uploads and results is removed."""
    raise KeyboardInterrupt


def main(argv=None):
    arguments = parse_arguments(argv)
    try:
        model, settings = prediction.load_model_and_settings(arguments.checkpoint, arguments.sample_rate)
    except ValueError as error:
        raise SystemExit(f"error: {preprocessing.printable(str(error))}")
    upload_folder = tempfile.mkdtemp(prefix="lvs_app_")  # uploads and results; removed when the server stops
    os.environ["GRADIO_TEMP_DIR"] = upload_folder
    signal.signal(signal.SIGTERM, stop_on_terminate)
    try:
        page = build_page(model, settings, arguments, upload_folder)
        try:
            _, local_url, share_url = page.launch(
                server_name=arguments.host, server_port=arguments.port, share=arguments.share,
                max_file_size=f"{arguments.max_upload_mb}mb", ssr_mode=False, pwa=False, mcp_server=False,
                enable_monitoring=False, run_history=False, footer_links=["api"], quiet=True,
                prevent_thread_lock=True, app_kwargs={"middleware": [Middleware(UploadsOnly)]})
        except OSError as error:
            reason = str(error).split(". ")[0]  # Gradio's advice after it names its own parameters
            raise SystemExit(f"error: cannot serve on {arguments.host}:{arguments.port}: {reason} (--host, --port)")
        print(f"serving {local_url}" + (f" and {share_url}" if share_url else "") + " (Ctrl-C stops it)", flush=True)
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(upload_folder, ignore_errors=True)


if __name__ == "__main__":
    main()
