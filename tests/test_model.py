"""model.py: shapes, the train/test steps against loss.py, .keras round trip, official checkpoints vs PyTorch."""

import numpy as np
import pytest
import tensorflow as tf
import torch

import loss as lvs
from model import LVSModel, build_model, load_checkpoint
from benchmarks.torch_reference import TorchLVS, random_official_state_dict


def inputs(batch=3, image_size=64, width=20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frame": rng.normal(size=(batch, image_size, image_size, 3)).astype(np.float32),
        "spectrogram": rng.normal(size=(batch, 257, width, 1)).astype(np.float32),
    }


@pytest.mark.parametrize("stride,side", [(1, 14), (2, 7)])
def test_call_gives_similarity_and_positive_mask(stride, side):
    model = LVSModel(image_size=224, layer4_stride=stride)
    outputs = model(inputs(batch=2, image_size=224), training=False)
    assert outputs["similarity"].shape == (2, side, side)
    similarity = outputs["similarity"].numpy()
    assert np.all(np.abs(similarity) <= 1 + 1e-5)
    np.testing.assert_allclose(outputs["positive_mask"], 1 / (1 + np.exp(-(similarity - 0.65) / 0.03)), atol=1e-5)


def test_train_step_applies_the_loss_in_training_mode():
    tf.keras.utils.set_random_seed(1)
    model = build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.65)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    batch = inputs()
    expected = float(lvs.lvs_loss(*model.embed(batch, training=True)))
    moving_mean = model.vision.get_layer("bn1").moving_mean.numpy().copy()
    kernel = model.audio.get_layer("conv1").kernel.numpy().copy()
    logs = model.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert not np.allclose(model.vision.get_layer("bn1").moving_mean.numpy(), moving_mean)  # BN ran in training mode
    assert not np.allclose(model.audio.get_layer("conv1").kernel.numpy(), kernel)  # the step updated the weights
    evaluation = model.test_on_batch(batch, return_dict=True)
    assert evaluation["loss"] == pytest.approx(float(lvs.lvs_loss(*model.embed(batch, training=False))), rel=1e-4)


def test_ablation_flags_reach_the_loss():
    batch = inputs(batch=4)
    model = LVSModel(image_size=64, hard_negatives=False, trimap=False, eps_pos=0.5, tau=0.1, temperature=0.2)
    model.compile(optimizer="adam")
    features = model.embed(batch, training=False)
    expected = lvs.lvs_loss(*features, eps_pos=0.5, tau=0.1, temperature=0.2, hard_negatives=False, trimap=False)
    assert model.test_on_batch(batch, return_dict=True)["loss"] == pytest.approx(float(expected), rel=1e-4)


def test_keras_round_trip_keeps_outputs_settings_and_optimizer(tmp_path):
    model = build_model(image_weights="none", image_size=64, layer4_stride=2, sample_rate=8000, audio_seconds=0.65,
                        eps_pos=0.6)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    batch = inputs()
    model.train_on_batch(batch)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = load_checkpoint(path, compile=True)
    np.testing.assert_allclose(loaded(batch)["similarity"], model(batch)["similarity"], atol=1e-6)
    assert loaded.settings == {"image_size": 64, "sample_rate": 8000, "audio_seconds": 0.65}
    assert loaded.eps_pos == 0.6 and loaded.layer4_stride == 2
    assert int(loaded.optimizer.iterations) == 1


def test_a_model_trained_in_mixed_precision_loads_in_float32(tmp_path):
    """The precision of training does not travel in the checkpoint: predict.py and evaluate.py compute in float32."""
    keras = tf.keras
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        tf.keras.utils.set_random_seed(2)
        trained = build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.65)
        assert trained.vision.get_layer("conv1").compute_dtype == "bfloat16"
        trained.save(tmp_path / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    loaded = load_checkpoint(str(tmp_path / "mixed.keras"))
    assert loaded.dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in loaded.vision.layers + loaded.audio.layers} == {"float32"}
    reference = LVSModel(image_size=64, sample_rate=8000, audio_seconds=0.65)
    reference.set_weights(loaded.get_weights())
    batch = inputs(image_size=64)
    np.testing.assert_array_equal(loaded(batch)["similarity"].numpy(), reference(batch)["similarity"].numpy())


def test_bad_checkpoints_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.keras"))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ValueError, match="truncated or not a Keras archive"):
        load_checkpoint(str(broken))
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=".keras file or an official"):
        load_checkpoint(str(other))


def test_official_checkpoint_equals_pytorch(tmp_path, metadata_dir):
    state_dict = random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=3)
    path = tmp_path / "lvs_vggss.pth.tar"
    torch.save({"model_state_dict": state_dict}, path)
    model = load_checkpoint(str(path))
    assert model.settings == {"image_size": 224, "sample_rate": 16000, "audio_seconds": 10.0}
    reference = TorchLVS()
    reference.load_official_state_dict(state_dict)
    reference.eval()
    batch = inputs(batch=2, image_size=224, width=60, seed=4)
    with torch.no_grad():
        frame_reference, audio_reference = reference(
            torch.from_numpy(batch["frame"]).permute(0, 3, 1, 2), torch.from_numpy(batch["spectrogram"]).permute(0, 3, 1, 2)
        )
    frame_features, audio_features = model.embed(batch, training=False)
    np.testing.assert_allclose(frame_features.numpy(), frame_reference.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(audio_features.numpy(), audio_reference.numpy(), atol=1e-4)
    similarity = torch.einsum("nchw,nc->nhw", frame_reference, audio_reference).numpy()
    np.testing.assert_allclose(model(batch)["similarity"].numpy(), similarity, atol=1e-4)


def test_model_cli_converts_an_official_checkpoint_to_keras(tmp_path, metadata_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    project = Path(__file__).resolve().parents[1]
    state_dict = random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=5)
    torch.save({"model_state_dict": state_dict}, tmp_path / "lvs.pth.tar")
    result = subprocess.run([sys.executable, str(project / "model.py"), "--lvs_checkpoint", str(tmp_path / "lvs.pth.tar")],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    converted = load_checkpoint(str(tmp_path / "lvs.keras"))
    direct = load_checkpoint(str(tmp_path / "lvs.pth.tar"))
    batch = inputs(batch=1, image_size=224, width=40, seed=6)
    np.testing.assert_allclose(converted(batch)["similarity"], direct(batch)["similarity"], atol=1e-6)
    assert converted.settings["sample_rate"] == 16000
    for rate, expected in (("native", "native"), ("22050", 22050)):
        output = tmp_path / f"lvs_{rate}.keras"
        result = subprocess.run([sys.executable, str(project / "model.py"), "--lvs_checkpoint",
                                 str(tmp_path / "lvs.pth.tar"), "--output", str(output), "--sample_rate", rate],
                                capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert result.returncode == 0, result.stderr[-2000:]
        assert load_checkpoint(str(output)).settings["sample_rate"] == expected
    result = subprocess.run([sys.executable, str(project / "model.py"), "--lvs_checkpoint", str(tmp_path / "lvs.pth.tar"),
                             "--sample_rate", "fast"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--sample_rate: must be a rate in Hz or 'native'" in result.stderr
    # The old place of the conversion says where it went, in one line.
    result = subprocess.run([sys.executable, str(project / "resnet18.py"), "--lvs_checkpoint", str(tmp_path / "lvs.pth.tar")],
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "python model.py --lvs_checkpoint" in result.stderr
