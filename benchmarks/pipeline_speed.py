"""How fast the training input pipeline runs, on one core and on all, next to the official preprocessing in PyTorch.

On files shaped as vggss_dl.py writes them (generated: 512 x 512 JPEGs of natural-looking content, encoded by
ffmpeg's mjpeg at -q:v 2 in 4:2:0 as downloading/clip_cutting.py writes frames, and 10 s 16 kHz mono 16-bit
wavs), or on a folder of the user's (--data_dir), at the paper's settings (224 px, 16 kHz, 10 s), it times
- ours: preprocessing.make_dataset(training=True), its batches iterated as train.py iterates them (decoded and
  augmented on the host; the normalisation and the spectrogram are the model's input step on the device, timed
  apart on the same cores and reported beside the table);
- the reference: a torch DataLoader doing the official LVS training preprocessing (the authors'
  datasets/dataloader.py: PIL open + convert('RGB'), Resize(int(224 * 1.1), bicubic), RandomCrop(224),
  RandomHorizontalFlip, CenterCrop(224), ToTensor, Normalize; soundfile.read, tiled, cut, clipped,
  scipy.signal.spectrogram(nperseg=512, noverlap=274), log(S + 1e-7), ToTensor, Normalize(0, 12)), with
  num_workers 0 on one core and one worker per core on all cores (as many as tf.data's AUTOTUNE runs at once);
each in a fresh process pinned to its cores (os.sched_setaffinity, set before TensorFlow or PyTorch is imported,
so their thread pools see only those cores), on the first core and on all the cores this process may use. The
first batches (workers starting, the autotuner settling) are not timed. Measurement only: nothing asserts a speed,
and other work on the machine slows both sides: the load average is reported with the figures.

Usage:
    python -m benchmarks.pipeline_speed                                   # generated files, table on stdout
    python -m benchmarks.pipeline_speed --data_dir data/vggsound144k --json /tmp/pipeline.json
    python bench.py --only pipeline      # the same, written into docs/BENCHMARKS.md (the other sections kept)
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.io.wavfile
from PIL import Image

from benchmarks.machine_load import cpu_seconds, load_average, others_share
from pipeline import video
from safeguards import cpu_features

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME_SIZE = 512  # downloading/clip_cutting.py's DEFAULT_FRAME_SIZE: vggss_dl.py squashes every frame to it
SOURCE_SIZE = 320  # the generated content is drawn at about a video's height, then scaled up as vggss_dl.py does
SAMPLE_RATE, AUDIO_SECONDS = 16000, 10.0  # vggss_dl.py --audio_seconds 10 (the paper's), its default rate
GENERATED_PAIRS = 128
MAX_PAIRS = 512  # of a --data_dir, the first ones (by name) are timed
DEFAULT_BATCH_SIZE = 16
DEFAULT_WARMUP_BATCHES = 3
DEFAULT_BATCHES = 20
DEFAULT_ROUNDS = 2  # every row runs this many times, interleaved; the fastest counts (other work only slows one)
# A round figure for a datacenter GPU at the paper's shapes (about 82 GFLOP per training sample: 41 TFLOP/s
# sustained), for the arithmetic of how many cores feed it; the line scales linearly with it.
GPU_SAMPLES_PER_SECOND = 500
# The spectrogram's float64 work per sample at the paper's settings: 671 frames, each a 512-point real FFT (about
# 2.5 N log2 N flop) and the window, mean, power and log (about 10 flop a sample of the frame).
INPUT_STEP_FLOP = 671 * (2.5 * 512 * 9 + 10 * 512)
INPUT_STEP_REPEATS = 5
TRAIN_STEP_FLOP = 82e9  # a training sample at the paper's shapes (docs/BENCHMARKS.md, FLOP table)
PROBE_PREFIX = "PIPELINE_PROBE "  # the line of a probe process that carries its result
HEADING = "## Input pipeline"  # bench.py --only pipeline replaces the section that starts with it
TIMEOUT_SECONDS = 900


# ----------------------------------------------------------------------------------------------------------------
# Files shaped as vggss_dl.py writes them


def power_law_field(rng, size, exponent):
    """A size x size random field whose amplitude spectrum falls as 1 / frequency^exponent (natural images: ~1),
    zero mean, unit standard deviation."""
    frequency_y = np.fft.fftfreq(size)[:, None]
    frequency_x = np.fft.rfftfreq(size)[None, :]
    frequency = np.hypot(frequency_x, frequency_y)
    frequency[0, 0] = 1.0
    spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency**exponent
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(size, size))
    return field / field.std()


def natural_frame(rng, size=FRAME_SIZE, source_size=SOURCE_SIZE):
    """A frame with the statistics that make a photo's JPEG cost what it costs to decode: a 1/f^1.2 luminance field,
    smoother colour, a dozen objects with sharp edges, sensor grain; drawn at source_size and scaled up bicubically
    to size (a video frame squashed to vggss_dl.py's square). At -q:v 2 its JPEG is about 75 KB (a sharp 720 x 477
    photo squashed to 512 x 512 gave 127 KB, a video frame less); flat colour would decode unrealistically fast.

    Args:
        rng: numpy Generator.
        size: side of the frame.
        source_size: side at which the content is drawn.

    Returns:
        size x size x 3 uint8.
    """
    luminance = power_law_field(rng, source_size, 1.2) * 40
    red_green = power_law_field(rng, source_size, 1.5) * 18
    blue_yellow = power_law_field(rng, source_size, 1.5) * 18
    rows, columns = np.mgrid[:source_size, :source_size]
    for _ in range(12):
        centre_x, centre_y = rng.uniform(0, source_size, 2)
        if rng.random() < 0.5:
            radius = rng.uniform(0.04, 0.27) * source_size
            inside = (columns - centre_x) ** 2 + (rows - centre_y) ** 2 < radius**2
        else:
            width, height = rng.uniform(0.04, 0.4, 2) * source_size
            inside = (np.abs(columns - centre_x) < width / 2) & (np.abs(rows - centre_y) < height / 2)
        luminance[inside] += rng.normal(0, 35)
        red_green[inside] += rng.normal(0, 15)
        blue_yellow[inside] += rng.normal(0, 15)
    pixels = np.stack([luminance + red_green, luminance - (red_green + blue_yellow) / 2, luminance + blue_yellow], -1)
    pixels += rng.uniform(90, 160) + rng.normal(0, 1.0, pixels.shape)
    small = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.BICUBIC))


def natural_sound(rng, sample_rate=SAMPLE_RATE, seconds=AUDIO_SECONDS):
    """Noise under a slowly changing loudness, as 16-bit PCM (decoding cost does not depend on the content)."""
    length = int(round(sample_rate * seconds))
    envelope = np.interp(np.arange(length), np.linspace(0, length, 21), rng.uniform(0.05, 1.0, 21))
    return np.clip(rng.normal(size=length) * envelope * 6000, -32768, 32767).astype(np.int16)


def write_vggss_like_pairs(folder, count=GENERATED_PAIRS, seed=0):
    """Write count NAME.jpg + NAME.wav pairs shaped as vggss_dl.py writes them (see the module docstring).

    Args:
        folder: an existing folder.
        count: number of pairs.
        seed: content seed (the same seed writes the same files).

    Returns:
        The names of the pairs (pair_0000, ...).
    """
    video.require_ffmpeg()
    rng = np.random.default_rng(seed)
    names = [f"pair_{index:04d}" for index in range(count)]
    frames = np.stack([natural_frame(rng) for _ in names])  # count x 512 x 512 x 3
    # One ffmpeg for all frames: raw RGB in, one mjpeg file per frame out, encoded as clip_cutting.cut_pair does.
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
               f"{FRAME_SIZE}x{FRAME_SIZE}", "-i", "pipe:0", "-q:v", "2", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p",
               "-start_number", "0", os.path.join(folder, "pair_%04d.jpg")]
    subprocess.run(command, input=frames.tobytes(), check=True, capture_output=True)
    for name in names:
        scipy.io.wavfile.write(os.path.join(folder, f"{name}.wav"), SAMPLE_RATE, natural_sound(rng))
    return names


# ----------------------------------------------------------------------------------------------------------------
# The probes: one pipeline, timed in a process pinned to its cores


def time_batches(batches, warmup, count):
    """Seconds taken by `count` batches of an iterator after `warmup` untimed ones; returns (seconds, last batch)."""
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        batch = next(batches)
    return time.perf_counter() - start, batch


def probe_ours(pairs, settings, batch_size, warmup, count, cache_dir=None):
    """Time preprocessing.make_dataset(training=True) in this process (with cache_dir: --cache, its entries all
    written before the timing starts). Returns (seconds, a description, extra figures)."""
    preprocessing = import_preprocessing()

    pairs = [preprocessing.Pair(*pair) for pair in pairs]
    dataset = preprocessing.make_dataset(pairs, settings, training=True, batch_size=batch_size,
                                         drop_remainder=True, cache_dir=cache_dir).repeat()
    batches = iter(dataset)
    if cache_dir is not None:
        for _ in range(-(-len(pairs) // batch_size)):  # one untimed pass fills the cache (the first epoch's work)
            next(batches)
    seconds, batch = time_batches(batches, warmup, count)
    length = int(round(settings["sample_rate"] * settings["audio_seconds"]))
    size = settings["image_size"]
    if (tuple(batch["frame"].shape) != (batch_size, size, size, 3)
            or tuple(batch["waveform"].shape) != (batch_size, length)):
        raise RuntimeError(f"unexpected batch {batch['frame'].shape} / {batch['waveform'].shape}")
    if preprocessing.SKIPPED_WHILE_LOADING:
        raise RuntimeError(f"files failed to decode: {preprocessing.SKIPPED_WHILE_LOADING[:2]}")
    return seconds, "tf.data AUTOTUNE", {"input_step_ms": time_input_step(preprocessing, batch)}


def time_input_step(preprocessing, batch, repeats=INPUT_STEP_REPEATS):
    """Milliseconds per sample of the model's input step (normalisation + spectrogram, preprocessing.model_inputs)
    on this process's cores: work that train.py does on the device, inside the train step, not in the pipeline."""
    import tensorflow as tf

    step = tf.function(preprocessing.model_inputs)
    step(batch)["spectrogram"].numpy()  # traced and warmed up, not timed
    start = time.perf_counter()
    for _ in range(repeats):
        step(batch)["spectrogram"].numpy()
    return 1000 * (time.perf_counter() - start) / (repeats * batch["frame"].shape[0])


def probe_reference(pairs, settings, batch_size, warmup, count):
    """Time the official LVS training preprocessing in a torch DataLoader in this process (one worker per core
    when pinned to several, none on one). Returns (seconds, a description)."""
    import soundfile
    import scipy.signal
    import torch
    from torchvision import transforms

    image_size, audio_seconds = settings["image_size"], settings["audio_seconds"]
    frame_transform = transforms.Compose([  # the authors' datasets/dataloader.py, mode 'train'
        transforms.Resize(int(image_size * 1.1), Image.BICUBIC),
        transforms.RandomCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    spectrogram_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=[0.0], std=[12.0])])

    class OfficialTraining(torch.utils.data.Dataset):
        def __len__(self):
            return (warmup + count) * batch_size

        def __getitem__(self, index):
            _, image_path, audio_path = pairs[index % len(pairs)]
            frame = frame_transform(Image.open(image_path).convert("RGB"))
            samples, rate = soundfile.read(audio_path)
            length = int(rate * audio_seconds)
            if samples.shape[0] < length:  # repeat if the audio is too short
                samples = np.tile(samples, int(length / samples.shape[0]) + 1)
            samples = samples[:length]
            samples[samples > 1.0] = 1.0
            samples[samples < -1.0] = -1.0
            _, _, spectrogram = scipy.signal.spectrogram(samples, rate, nperseg=512, noverlap=274)
            return frame, spectrogram_transform(np.log(spectrogram + 1e-7))

    cores = len(os.sched_getaffinity(0))
    workers = 0 if cores == 1 else cores
    torch.set_num_threads(cores)
    loader = torch.utils.data.DataLoader(OfficialTraining(), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True)
    seconds, (frames, spectrograms) = time_batches(iter(loader), warmup, count)
    if frames.shape[0] != batch_size or spectrograms.shape[0] != batch_size:
        raise RuntimeError(f"unexpected batch {tuple(frames.shape)} / {tuple(spectrograms.shape)}")
    return seconds, f"DataLoader num_workers={workers}", {}


def probe_ours_cached(pairs, settings, batch_size, warmup, count):
    """probe_ours reading every frame from a warm --cache folder (made in a temporary folder, removed after)."""
    with tempfile.TemporaryDirectory(prefix="lvs_bench_cache_") as folder:
        seconds, description, _ = probe_ours(pairs, settings, batch_size, warmup, count, cache_dir=folder)
    return seconds, description, {}


def probe_ours_service(pairs, settings, batch_size, warmup, count):
    """The graph a data service worker runs (service_dataset.worker_dataset: TensorFlow ops only, a batch at a time),
    run here without a service: what one worker process makes on these cores."""
    import tensorflow as tf

    preprocessing = import_preprocessing()
    from pipeline import service_dataset

    pairs = [preprocessing.Pair(*pair) for pair in pairs]
    dataset = service_dataset.worker_dataset(tf.data.Dataset.range(np.iinfo(np.int64).max), pairs,
                                             preprocessing.check_settings(settings), batch_size, 0, "crop")
    seconds, batch = time_batches(iter(dataset), warmup, count)
    if batch["frame"].shape[0] != batch_size:
        raise RuntimeError(f"a batch of {batch['frame'].shape[0]}: files failed to decode")
    return seconds, "tf.data AUTOTUNE, a batch at a time", {}


PROBES = {"ours": probe_ours, "ours_cached": probe_ours_cached, "ours_service": probe_ours_service,
          "reference": probe_reference}
NAMES = {"ours": "ours (make_dataset)", "ours_cached": "ours, train.py --cache (warm)",
         "ours_service": "ours, a data service worker (TensorFlow ops)",
         "reference": "reference (PyTorch DataLoader)"}


def run_probe(framework, cores, pairs_file, batch_size, warmup, count):
    """Pin this process to cores, run one probe, print its result as a PROBE_PREFIX json line.

    Args:
        framework: a key of PROBES ("ours", "ours_cached", "ours_service" or "reference").
        cores: the CPU ids to run on.
        pairs_file: json file of [[name, image path, audio path], ...] and the settings.
        batch_size, warmup, count: batch size, untimed and timed batches.
    """
    os.sched_setaffinity(0, cores)  # before TensorFlow or PyTorch sizes its thread pools
    with open(pairs_file) as handle:
        listing = json.load(handle)
    seconds, description, extra = PROBES[framework](listing["pairs"], listing["settings"], batch_size, warmup, count)
    print(PROBE_PREFIX + json.dumps({"seconds": seconds, "parallelism": description,
                                     "samples_per_second": count * batch_size / seconds, **extra}), flush=True)


def measure_one(framework, cores, pairs_file, batch_size, warmup, count):
    """run_probe in a fresh process (python -m benchmarks.pipeline_speed --probe ...).

    Returns:
        {"framework", "cores", "parallelism", "samples_per_second", "error", "input_step_ms"} (samples_per_second
        None on failure; input_step_ms: ours only, the model's input step in ms per sample on these cores).
    """
    row = {"framework": framework, "cores": len(cores), "parallelism": "", "samples_per_second": None, "error": None,
           "input_step_ms": None}
    command = [sys.executable, "-m", "benchmarks.pipeline_speed", "--probe", framework,
               "--cores", ",".join(str(core) for core in sorted(cores)), "--pairs_file", pairs_file,
               "--batch_size", str(batch_size), "--warmup", str(warmup), "--batches", str(count)]
    try:
        result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        row["error"] = f"no result within {TIMEOUT_SECONDS} s"
        return row
    lines = [line for line in result.stdout.splitlines() if line.startswith(PROBE_PREFIX)]
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        row["error"] = f"exit code {result.returncode}: {last[:200]}"
    else:
        row.update({key: value for key, value in json.loads(lines[-1][len(PROBE_PREFIX):]).items()
                    if key in ("parallelism", "samples_per_second", "input_step_ms")})
    print(f"[pipeline] {framework} on {len(cores)} core(s): "
          + (f"{row['samples_per_second']:.1f} samples/s" if row["error"] is None else f"FAILED {row['error']}")
          + f" (load {load_average()})", file=sys.stderr, flush=True)
    return row


# ----------------------------------------------------------------------------------------------------------------
# The measurement and its report


def import_preprocessing():
    """pipeline.preprocessing, TensorFlow imported quietly first (imported here, not at the top: a probe process
    pins itself to its cores before TensorFlow or PyTorch starts)."""
    import safeguards.quiet_tensorflow  # noqa: F401  (TensorFlow's start-up lines off the terminal)
    from pipeline import preprocessing

    return preprocessing


def list_pairs(data_dir, limit=MAX_PAIRS):
    """The first `limit` usable pairs of a folder (by name), as [name, image path, audio path] lists."""
    preprocessing = import_preprocessing()

    pairs, _ = preprocessing.find_pairs(data_dir)
    if not pairs:
        raise ValueError(f"no usable frame/audio pairs in {data_dir}")
    return [list(pair) for pair in pairs[:limit]]


def describe_files(pairs):
    """What the timed files are, from the first pair: '512x512 jpg (61 KB) + 10 s 16000 Hz PCM_16 wav'."""
    import soundfile

    _, image_path, audio_path = pairs[0]
    sizes = [os.path.getsize(pair[1]) for pair in pairs]
    with Image.open(image_path) as image:
        width, height = image.size
        image_format = (image.format or "image").lower().replace("jpeg", "jpg")
    info = soundfile.info(audio_path)
    return (f"{width}x{height} {image_format} (mean {sum(sizes) / len(sizes) / 1024:.0f} KB) + "
            f"{info.frames / info.samplerate:g} s {info.samplerate} Hz {info.channels}-channel {info.subtype} "
            f"{info.format.lower()}")


def measure(data_dir=None, batch_size=DEFAULT_BATCH_SIZE, warmup=DEFAULT_WARMUP_BATCHES, count=DEFAULT_BATCHES,
            generated=GENERATED_PAIRS, rounds=DEFAULT_ROUNDS):
    """Time ours and the reference on one core and on all, each in its own pinned process, `rounds` times over.

    Args:
        data_dir: a folder of pairs to time (its first MAX_PAIRS by name), or None for generated vggss_dl.py-like
            files.
        batch_size: pairs per batch.
        warmup: untimed batches first.
        count: timed batches.
        generated: how many pairs to generate when data_dir is None.
        rounds: how many times every row runs (the six rows in turn, then again); a row's figure is its fastest
            round, since other work on the machine only ever slows a run down.

    Raises:
        ValueError (one line) when the folder has no usable pairs or fewer than a batch, or ffmpeg is missing.

    Returns:
        A dict: files (text), source, pairs, batch_size, batches, settings, cpu_class, cpu_flags, load_start,
        load_end, others_share (the share of the cores other processes used meanwhile), date, rows (measure_one
        results: ours and reference on 1 core, then on all cores; "rounds" holds every round's samples/s).
    """
    preprocessing = import_preprocessing()

    flags = cpu_features.cpu_flags()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_start": load_average(), "batch_size": batch_size,
              "batches": count, "warmup": warmup, "rounds": rounds, "settings": dict(preprocessing.DEFAULT_SETTINGS),
              "cpu_class": cpu_features.cpu_class(flags), "cpu_model": cpu_features.cpu_model(),
              "cpu_flags": " ".join(flag for flag in cpu_features.FLAGS_OF_NOTE if flag in flags)}
    all_cores = sorted(os.sched_getaffinity(0))
    busy_start, clock = cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lvs_bench_pipeline_") as folder:
        if data_dir is None:
            write_vggss_like_pairs(folder, generated)
            pairs = list_pairs(folder)
            result["source"] = f"{len(pairs)} generated pairs shaped as vggss_dl.py writes them"
        else:
            pairs = list_pairs(data_dir)
            result["source"] = f"the first {len(pairs)} pairs of {data_dir}"
        if len(pairs) < batch_size:
            raise ValueError(f"{len(pairs)} usable pairs, fewer than one batch of {batch_size} (a smaller --batch_size "
                             "times them)")
        result["pairs"] = len(pairs)
        result["files"] = describe_files(pairs)
        pairs_file = os.path.join(folder, "pairs.json")
        with open(pairs_file, "w") as handle:
            json.dump({"pairs": pairs, "settings": result["settings"]}, handle)
        plan = [(framework, cores) for cores in (all_cores[:1], all_cores)
                for framework in ("ours", "ours_cached", "ours_service", "reference")]
        runs = [[measure_one(framework, cores, pairs_file, batch_size, warmup, count) for framework, cores in plan]
                for _ in range(rounds)]
    result["rows"] = []
    for index in range(len(plan)):
        tries = [run[index] for run in runs]
        speeds = [row["samples_per_second"] for row in tries if row["samples_per_second"] is not None]
        best = max(tries, key=lambda row: row["samples_per_second"] or 0.0)
        result["rows"].append({**best, "rounds": speeds})
    result["load_end"] = load_average()
    result["others_share"] = others_share(busy_start, cpu_seconds(), time.perf_counter() - clock)
    return result


def figure(result, framework, cores):
    """samples/s of one row of a measure() result (None if it failed or was not run)."""
    for row in result["rows"]:
        if row["framework"] == framework and row["cores"] == cores:
            return row["samples_per_second"]
    return None


def json_figures(result):
    """The figures a script checks: {"per_core": {"ours", "reference"}, "all_cores": {"ours", "reference",
    "cores"}} in samples/s, with what they were measured on."""
    cores = max(row["cores"] for row in result["rows"])
    return {"per_core": {"ours": figure(result, "ours", 1), "reference": figure(result, "reference", 1),
                         "ours_cached": figure(result, "ours_cached", 1),
                         "ours_service": figure(result, "ours_service", 1)},
            "all_cores": {"ours": figure(result, "ours", cores), "reference": figure(result, "reference", cores),
                          "ours_cached": figure(result, "ours_cached", cores),
                          "ours_service": figure(result, "ours_service", cores),
                          "cores": cores},
            "cpu_class": result["cpu_class"], "cpu_model": result.get("cpu_model"), "files": result["files"], "batch_size": result["batch_size"],
            "load_average_start": result["load_start"], "load_average_end": result["load_end"],
            "others_share_of_cores": result["others_share"]}


def input_step_text(result):
    """What the model's input step costs where it ran here (ours on one core), and on a GPU by arithmetic."""
    row = next((row for row in result["rows"] if row["framework"] == "ours" and row["cores"] == 1), None)
    measured = (f"on one core of this CPU it takes {row['input_step_ms']:.2f} ms a sample, measured in the same probe"
                if row and row.get("input_step_ms") else "not measured in this run")
    return (f"{measured}; it is about {INPUT_STEP_FLOP / 1e6:.0f} MFLOP of float64 FFT a sample, "
            f"1/{TRAIN_STEP_FLOP / INPUT_STEP_FLOP:,.0f} of the 82 GFLOP train step")


def gpu_line(result, gpu_samples_per_second=GPU_SAMPLES_PER_SECOND):
    """How many cores of this CPU class feed a GPU that runs the train step at gpu_samples_per_second."""
    ours, reference = figure(result, "ours", 1), figure(result, "reference", 1)
    if not ours or not reference:
        return "Cores to feed a GPU: not computed (a one-core figure is missing)."
    cores = max(row["cores"] for row in result["rows"])
    ours_all, reference_all = figure(result, "ours", cores), figure(result, "reference", cores)
    scaling = (f" On {cores} cores here the pipelines ran {ours_all / ours:.2f}x (ours) and "
               f"{reference_all / reference:.2f}x (reference) their one-core speed." if ours_all and reference_all
               else "")
    cached = figure(result, "ours_cached", 1)
    with_cache = (f", N / {cached:.1f} with ours from a warm --cache" if cached else "")
    cores_cached = (f", {math.ceil(gpu_samples_per_second / cached)} with ours from a warm --cache" if cached else "")
    return (f"Cores to feed a GPU that runs the train step at N samples/s (arithmetic, one-core figures of this "
            f"{result['cpu_class']} CPU, linear scaling assumed): N / {ours:.1f} with ours, N / {reference:.1f} with "
            f"the reference{with_cache}; at N = {gpu_samples_per_second} (a datacenter GPU at the paper's shapes: "
            f"about 82 GFLOP per sample at 41 TFLOP/s), **{math.ceil(gpu_samples_per_second / ours)} cores with ours, "
            f"{math.ceil(gpu_samples_per_second / reference)} with the reference**{cores_cached}.{scaling}")


def format_section(result, command):
    """The BENCHMARKS.md section of a measure() result: the table, the GPU arithmetic, how it was measured."""
    settings = result["settings"]
    lines = [f"{HEADING} on vggss_dl.py's files, one core and all (CPU class: {result['cpu_class']})", "",
             f"Measured by `{command}` on {result['date']}, CPU {result.get('cpu_model', 'not recorded')} "
             f"(benchmarks/pipeline_speed.py; load average "
             f"{result['load_start']} at start, {result['load_end']} at end; other processes used "
             f"{100 * result['others_share']:.0f} % of the cores meanwhile; CPU flags: {result['cpu_flags']}). "
             f"Files: {result['source']}, {result['files']}; settings {settings['image_size']} px, "
             f"{settings['sample_rate']} Hz, {settings['audio_seconds']:g} s (the paper's), training mode, batch "
             f"{result['batch_size']}, timed over {result['batches']} batches after {result['warmup']} untimed. Each "
             "row is a fresh process pinned to its cores (os.sched_setaffinity), run "
             f"{result['rounds']} time(s), the rows in turn; its figure is the fastest round (other work only slows "
             "a run down). Ours: preprocessing.make_dataset("
             "training=True), which decodes and augments on the host and leaves the normalisation and the spectrogram "
             "to the model's input step on the device (preprocessing.model_inputs, inside the train step; "
             f"{input_step_text(result)}); ours with --cache: the same, every frame read decoded and resized from a "
             "warm cache folder (pipeline/frame_cache.py; what a second and later epoch reads); a data service "
             "worker: the graph data_service.py's workers run for train.py --data_service (pipeline/"
             "service_dataset.py: TensorFlow's JPEG and wav decoders, a batch at a time), run in the probe's own "
             "process without a service (what one worker process makes on those cores); reference: a torch DataLoader doing the official LVS training preprocessing (PIL, "
             "torchvision Resize(246, bicubic) / RandomCrop / flip / ToTensor / Normalize, soundfile + "
             "scipy.signal.spectrogram), num_workers 0 on one core and one per core on all.", "",
             "| CPU class | pipeline | cores | parallelism | samples/s | each round | ours / reference |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        name = NAMES[row["framework"]]
        ratio = ""
        if row["framework"] != "reference":
            reference = figure(result, "reference", row["cores"])
            ratio = f"{row['samples_per_second'] / reference:.2f}x" if row["samples_per_second"] and reference \
                else "n/a"
        speed = f"{row['samples_per_second']:.1f}" if row["error"] is None else f"failed: {row['error']}"
        rounds = ", ".join(f"{value:.1f}" for value in row["rounds"])
        lines.append(f"| {result['cpu_class']} | {name} | {row['cores']} | {row['parallelism']} | {speed} | "
                     f"{rounds} | {ratio} |")
    lines += ["", gpu_line(result), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=None,
                        help=f"time the pairs of this folder (its first {MAX_PAIRS} by name) instead of generated "
                             "files shaped as vggss_dl.py writes them")
    parser.add_argument("--json", default=None, help="also write the figures (samples/s) to this json file")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"pairs per batch (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP_BATCHES,
                        help=f"untimed batches first (default: {DEFAULT_WARMUP_BATCHES})")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                        help=f"timed batches (default: {DEFAULT_BATCHES})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"times every row runs; its fastest counts (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--probe", choices=sorted(PROBES), default=None,
                        help="internal: time one pipeline in this process and print it as json")
    parser.add_argument("--cores", default=None, help="internal, with --probe: comma-separated CPU ids to run on")
    parser.add_argument("--pairs_file", default=None, help="internal, with --probe: the pairs and settings (json)")
    arguments = parser.parse_args(argv)
    if min(arguments.batch_size, arguments.batches, arguments.rounds) < 1 or arguments.warmup < 0:
        parser.error("--batch_size, --batches and --rounds must be at least 1, --warmup at least 0")
    if arguments.probe:
        run_probe(arguments.probe, {int(core) for core in arguments.cores.split(",")}, arguments.pairs_file,
                  arguments.batch_size, arguments.warmup, arguments.batches)
        return
    if arguments.data_dir is not None and not os.path.isdir(arguments.data_dir):
        parser.error(f"--data_dir: not a folder: {arguments.data_dir}")
    try:
        result = measure(arguments.data_dir, arguments.batch_size, arguments.warmup, arguments.batches,
                         rounds=arguments.rounds)
    except ValueError as error:
        raise SystemExit(f"error: {error}")
    print(format_section(result, "python -m benchmarks.pipeline_speed " + " ".join(sys.argv[1:])))
    if arguments.json:
        with open(arguments.json, "w") as handle:
            json.dump(json_figures(result), handle, indent=1)


if __name__ == "__main__":
    main()
