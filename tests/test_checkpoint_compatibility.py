""".keras checkpoints saved before the layout move (commit 822848e) still load.

The fixtures in tests/fixtures/checkpoint_before_layout/ come from that commit: config.json and metadata.json of
runs/demo/trained/model.keras written by `bash demo.sh`, config_remat.json of `train.py --epochs 0 --remat` at the
demo's sizes, and weights_layout.json, the name and shape of every dataset in that archive's model.weights.h5.
Their configs name the old modules ("module": "model", "optimizer"); the classes are found by their registered
names (lvs>LVSModel, lvs>TorchAdam), which must not change.
"""

import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from model import LVSModel, load_checkpoint
from pipeline import preprocessing
from training.optimizer import TorchAdam

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoint_before_layout"


def old_config(name="config.json"):
    return json.loads((FIXTURES / name).read_text())


def demo_batch(model, batch=2, seed=0):
    """Random frames and spectrograms at the model's sizes."""
    generator = np.random.default_rng(seed)
    settings = model.settings
    samples = int(settings["sample_rate"] * settings["audio_seconds"])
    waveforms = generator.uniform(-0.5, 0.5, size=(batch, samples)).astype(np.float32)
    spectrograms = preprocessing.spectrogram(waveforms, settings["sample_rate"])[..., None]  # batch x 257 x time x 1
    frames = generator.normal(size=(batch, settings["image_size"], settings["image_size"], 3)).astype(np.float32)
    return {"frame": tf.constant(frames), "spectrogram": tf.constant(spectrograms)}


def dataset_layout(weights_path):
    """Dataset name -> shape of a model.weights.h5."""
    layout = {}
    with h5py.File(weights_path, "r") as weights:
        weights.visititems(lambda name, item: layout.__setitem__(name, list(item.shape))
                           if isinstance(item, h5py.Dataset) else None)
    return layout


@pytest.mark.parametrize("name,remat", [("config.json", False), ("config_remat.json", True)])
def test_old_configs_deserialise_into_the_same_classes(name, remat):
    config = old_config(name)
    assert config["module"] == "model" and config["compile_config"]["optimizer"]["module"] == "optimizer"
    model = keras.saving.deserialize_keras_object(config)
    assert isinstance(model, LVSModel)
    assert model.remat is remat
    assert model.settings["image_size"] == 112 and model.settings["sample_rate"] == 8000
    optimizer = keras.saving.deserialize_keras_object(config["compile_config"]["optimizer"])
    assert isinstance(optimizer, TorchAdam) and optimizer.epsilon == 1e-8
    assert float(optimizer.learning_rate) == pytest.approx(config["compile_config"]["optimizer"]["config"]["learning_rate"])


def test_an_archive_with_the_old_config_loads_and_keeps_its_weights(tmp_path):
    config = old_config()
    model = keras.saving.deserialize_keras_object(config)
    model.compile(optimizer=keras.saving.deserialize_keras_object(config["compile_config"]["optimizer"]))
    model.train_on_batch(demo_batch(model, seed=1))  # builds the optimizer's variables, as a trained checkpoint has
    new_path = tmp_path / "new.keras"
    model.save(new_path)

    # The weights the new code writes have the old archive's layout, dataset for dataset.
    with zipfile.ZipFile(new_path) as archive:
        archive.extract("model.weights.h5", tmp_path)
    recorded = json.loads((FIXTURES / "weights_layout.json").read_text())["datasets"]
    assert dataset_layout(tmp_path / "model.weights.h5") == recorded

    # An archive whose config.json and metadata.json are the old code's loads through load_checkpoint.
    old_path = tmp_path / "old.keras"
    with zipfile.ZipFile(new_path) as source, zipfile.ZipFile(old_path, "w") as target:
        for item in source.infolist():
            if item.filename in ("config.json", "metadata.json"):
                target.writestr(item.filename, (FIXTURES / item.filename).read_text())
            else:
                target.writestr(item, source.read(item.filename))
    loaded = load_checkpoint(str(old_path), compile=True)
    assert isinstance(loaded, LVSModel) and isinstance(loaded.optimizer, TorchAdam)
    assert int(loaded.optimizer.iterations) == 1
    batch = demo_batch(model, seed=2)
    np.testing.assert_array_equal(loaded(batch)["similarity"].numpy(), model(batch)["similarity"].numpy())
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
