"""What predict.py and app.py share: a checkpoint with the settings to feed it, one pair checked, the maps and the
four-panel figures of frame/audio pairs. (Videos: video_prediction.py.)

Usage:
    from visualization import prediction
    model, settings = prediction.load_model_and_settings("runs/demo/trained/model.keras", sample_rate=None)
    pairs = prediction.single_pair("frame.jpg", "sound.wav")
    for name, figure, similarity in prediction.pair_figures(model, pairs, settings=settings):
        save_figure(figure, f"{name}.png")
"""

import os

from tqdm import tqdm

from model import TORCH_CHECKPOINT_EXTENSIONS, load_checkpoint
from pipeline import preprocessing
from visualization.heatmaps import draw_panels, frame_pixels, make_forward


def load_model_and_settings(checkpoint, sample_rate):
    """The model and the preprocessing settings to feed it.

    Args:
        checkpoint: .keras or official .pth.tar path.
        sample_rate: --sample_rate (None: the checkpoint's own, 16 kHz for an official one).

    Returns:
        (model, settings dict).

    Raises:
        ValueError: one line: an unusable checkpoint, or a sample rate for a .keras model trained at another one.
    """
    model = load_checkpoint(checkpoint)
    settings = dict(model.settings)
    if sample_rate is not None:
        if not checkpoint.endswith(TORCH_CHECKPOINT_EXTENSIONS) and sample_rate != settings["sample_rate"]:
            raise ValueError(f"--sample_rate is for official .pth.tar checkpoints; "
                             f"{preprocessing.printable(checkpoint)} was trained at {settings['sample_rate']} and "
                             "carries it")
        settings["sample_rate"] = sample_rate
    return model, settings


def single_pair(image_path, audio_path, name=None):
    """A one-item pair list for one frame and its sound, checked as find_pairs checks a folder's pairs.

    Args:
        image_path: the frame.
        audio_path: its sound.
        name: the pair's name (default: the frame's file name without its extension).

    Returns:
        [preprocessing.Pair].

    Raises:
        ValueError: one line naming the file and why it cannot be used.
    """
    for path in (image_path, audio_path):
        if not os.path.isfile(path):
            raise ValueError(f"file not found: {preprocessing.printable(path)}")
    problem = preprocessing.check_pair(image_path, audio_path)
    if problem:
        raise ValueError(preprocessing.printable(problem))
    name = name or os.path.splitext(os.path.basename(image_path))[0]
    return [preprocessing.Pair(name, image_path, audio_path)]


def predict_maps(model, pairs, batch_size=16, description="predicting", settings=None, resize="crop", forward=None):
    """Run the model over pairs in batches.

    Args:
        model: an LVSModel.
        pairs: list of preprocessing.Pair.
        batch_size: pairs per forward pass.
        description: progress bar label.
        settings: preprocessing settings (default: the model's own).
        resize: "crop" or "squash" (preprocessing.RESIZE_MODES).
        forward: the model's make_forward(model), to reuse one traced forward across calls (default: a new one).

    Yields:
        (name, frame S x S x 3 in [0, 1], similarity h x w, positive mask h x w) for every pair that decoded.
    """
    settings = settings or model.settings
    dataset = preprocessing.make_dataset(pairs, settings, training=False, batch_size=batch_size, with_names=True,
                                         resize=resize)
    forward = forward or make_forward(model)
    with tqdm(total=len(pairs), desc=description, unit="pair") as progress:
        for inputs, names in dataset:
            outputs = forward(inputs)
            similarity = outputs["similarity"].numpy()
            mask = outputs["positive_mask"].numpy()
            frames = inputs["frame"].numpy()
            for index, name in enumerate(names.numpy()):
                yield name.decode(), frame_pixels(frames[index]), similarity[index], mask[index]
            progress.update(len(names))


def pair_figures(model, pairs, batch_size=16, settings=None, resize="crop", forward=None):
    """The four-panel figure of every pair (frame, S_ii, m_ip, frame x positive region), in batches.

    Args:
        model, pairs, batch_size, settings, resize, forward: as predict_maps.

    Yields:
        (name, matplotlib figure (the caller saves and closes it), similarity h x w) for every pair that decoded.
    """
    for name, frame, similarity, mask in predict_maps(model, pairs, batch_size, settings=settings, resize=resize,
                                                      forward=forward):
        yield name, draw_panels(frame, similarity, mask, title=name), similarity
