"""remat.py and LVSModel(remat=True): the same loss, gradients and BatchNorm statistics as without, at float64.

Rematerialisation must change only what is kept for the backward pass, never the arithmetic: a train step with
it equals one without it (loss, every weight after an SGD step, the running statistics), and its traced step
really runs the towers' convolutions twice.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from training import remat
import resnet18
from model import LVSModel

PROJECT = Path(__file__).resolve().parents[1]


def inputs(batch=4, image_size=32, width=24, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {
        "frame": rng.normal(size=(batch, image_size, image_size, 3)).astype(dtype),
        "spectrogram": (rng.normal(size=(batch, 257, width, 1)) * 0.2 - 0.8).astype(dtype),
    }


class NoRematLVSModel(LVSModel):
    """LVSModel that recomputes nothing, not even the stems: the plain arithmetic both others must equal."""

    remat_stems = False


class RematAllLVSModel(LVSModel):
    """LVSModel whose remat recomputes all nine segments, layer4 too."""

    remat_segments = None


class ChunkedStemLVSModel(LVSModel):
    """LVSModel whose remat runs the stems 3 samples at a time (a batch of 4: chunks of 3 and 1)."""

    remat_stem_chunk = 3


def make_model(remat_enabled, policy="float64", seed=3):
    """A small LVSModel (random weights from seed) compiled with plain SGD, so a step moves each weight by -grad.

    remat_enabled: True (train.py --remat; its stems are not chunked at the tests' batch of 4), "chunked" (--remat
    with the stems in chunks of 3), "all" (every segment), False (the default: the stems recomputed) or None
    (nothing recomputed).
    """
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model_class = {None: NoRematLVSModel, "all": RematAllLVSModel,
                       "chunked": ChunkedStemLVSModel}.get(remat_enabled, LVSModel)
        model = model_class(image_size=32, sample_rate=8000, audio_seconds=0.4, remat=bool(remat_enabled))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    return model


def weights_of(model):
    return {variable.path: variable.numpy().copy() for variable in model.weights}


def test_segments_chain_into_the_whole_trunk():
    trunk = resnet18.build_resnet18(input_channels=1, layer4_stride=1, name="audio")
    segments = remat.tower_segments(trunk)
    assert len(segments) == 1 + len(resnet18.STAGES) * resnet18.BLOCKS_PER_STAGE
    assert remat.tower_segments(trunk) is segments  # built once
    assert {id(variable) for segment in segments for variable in segment.weights} == {id(v) for v in trunk.weights}
    spectrograms = inputs(batch=2)["spectrogram"].astype(np.float32)
    outputs = spectrograms
    for segment in segments:
        outputs = segment(outputs, training=False)
    np.testing.assert_array_equal(outputs, trunk(spectrograms, training=False))


def test_a_trunk_with_its_top_is_refused():
    trunk = resnet18.build_resnet18(input_channels=3, include_top=True, input_shape=(32, 32))
    with pytest.raises(ValueError, match="without the classification top"):
        remat.tower_segments(trunk)


@pytest.mark.parametrize("policy,tolerance,remat_enabled,steps", [
    ("float64", 1e-10, True, 2), ("float64", 1e-10, "all", 2), ("float64", 1e-10, False, 2),
    ("float64", 1e-10, "chunked", 2), ("float32", 2e-4, "all", 2), ("float32", 2e-4, "chunked", 1)])
def test_train_step_with_remat_equals_the_one_without(policy, tolerance, remat_enabled, steps):
    # float64: the non-fused BatchNorm path at float64 tolerance; float32: the fused kernel train.py runs.
    # remat_enabled False is the default (stems recomputed), True is --remat; both against nothing recomputed.
    # The chunked stem sums in another order than the fused kernel: in float32 one step agrees to ~4e-5, and a
    # second step of SGD at learning rate 1 on this tiny batch amplifies that, so float32 takes one step there.
    batch = inputs(dtype=np.float64 if policy == "float64" else np.float32)
    plain, rematerialised = make_model(None, policy), make_model(remat_enabled, policy)
    before = weights_of(plain)
    assert before.keys() == weights_of(rematerialised).keys()
    for path, value in weights_of(rematerialised).items():
        np.testing.assert_array_equal(value, before[path])  # the same start
    for step in range(steps):  # the second step starts from moved weights and statistics
        plain_loss = plain.train_on_batch(batch, return_dict=True)["loss"]
        remat_loss = rematerialised.train_on_batch(batch, return_dict=True)["loss"]
        assert remat_loss == pytest.approx(plain_loss, rel=tolerance, abs=0)
    after_plain, after_remat = weights_of(plain), weights_of(rematerialised)
    moved = 0
    for path, value in after_plain.items():
        # SGD with learning rate 1: value = before - gradient, so equal weights are equal gradients (and equal
        # running statistics: moved once per step, not again by the recomputation).
        scale = np.abs(value - before[path]).max()
        np.testing.assert_allclose(after_remat[path], value, rtol=0, atol=tolerance * max(scale, 1e-3), err_msg=path)
        moved += scale > 0
    assert moved == len(after_plain)  # every weight and statistic took part


@pytest.mark.parametrize("remat_enabled", [True, False])
def test_moving_statistics_move_once_per_step(remat_enabled):
    model = make_model(remat_enabled)
    layer = model.audio.get_layer("bn1")
    batch = inputs()
    start = layer.moving_mean.numpy().copy()
    conv1 = keras.Model(model.audio.inputs[0], model.audio.get_layer("conv1").output)
    conv_outputs = conv1(batch["spectrogram"]).numpy()  # batch x f x t x 64, what bn1 normalises
    batch_mean = conv_outputs.mean(axis=(0, 1, 2))
    model.train_on_batch(batch)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * start + 0.1 * batch_mean, rtol=1e-10, atol=1e-12)


def count_ops(model, batch, op_type):
    """Number of op_type nodes in the traced graph of the model's train_step (forward and backward)."""
    graph = tf.function(model.train_step).get_concrete_function(
        {key: tf.TensorSpec(value.shape, value.dtype) for key, value in batch.items()}).graph
    return sum(operation.type == op_type for operation in graph.get_operations())


def test_remat_recomputes_every_convolution_in_the_backward_pass():
    batch = {key: value.astype(np.float32) for key, value in inputs().items()}
    plain, default, rematerialised, everything = (make_model(remat_enabled, "float32")
                                                  for remat_enabled in (None, False, True, "all"))
    forward = count_ops(plain, batch, "Conv2D")
    assert forward == 2 * 20  # 20 convolutions per trunk (conv1, 16 in the blocks, 3 downsamples)
    assert count_ops(default, batch, "Conv2D") == forward + 2  # each tower's conv1 again
    assert count_ops(rematerialised, batch, "Conv2D") == forward + 2 * 15  # conv1, layer1 (4), layer2-3 (5 each)
    assert count_ops(everything, batch, "Conv2D") == 2 * forward
    assert count_ops(everything, batch, "FusedBatchNormV3") == 2 * count_ops(plain, batch, "FusedBatchNormV3")
    assert count_ops(model_in_replicas(), batch, "Conv2D") == forward  # synchronised BatchNorm: nothing recomputed
    # Chunked stems: conv1 four times a chunk (statistics, output, two backward passes), two chunks, per tower.
    assert count_ops(make_model("chunked", "float32"), batch, "Conv2D") == forward - 2 + 2 * (4 * 2 + 14)


def stem_sized_batches(model, batch, trunk_name):
    """Batch sizes of the tensors in the traced train step with the shape of a trunk's conv1 output (but batch)."""
    trunk = getattr(model, trunk_name)
    conv1 = keras.Model(trunk.inputs[0], trunk.get_layer("conv1").output)
    conv1_shape = tuple(conv1(batch["frame" if trunk_name == "vision" else "spectrogram"][:1]).shape[1:])
    graph = tf.function(model.train_step).get_concrete_function(
        {key: tf.TensorSpec(value.shape, value.dtype) for key, value in batch.items()}).graph
    return {tensor.shape[0] for operation in graph.get_operations() for tensor in operation.outputs
            if tensor.shape.rank == 4 and tuple(tensor.shape[1:]) == conv1_shape}


@pytest.mark.parametrize("trunk_name", ["vision", "audio"])
def test_chunked_stem_never_holds_a_whole_batch_of_its_largest_maps(trunk_name):
    # What the chunks are for: with them no tensor of conv1's output size spans the batch of 4, only chunks of 3
    # and 1; without them (keras.remat on the stem) such tensors exist.
    batch = {key: value.astype(np.float32) for key, value in inputs().items()}
    assert stem_sized_batches(make_model("chunked", "float32"), batch, trunk_name) == {3, 1}
    assert 4 in stem_sized_batches(make_model(True, "float32"), batch, trunk_name)


def test_chunked_stem_needs_a_known_batch_larger_than_a_chunk_and_its_own_statistics():
    model = make_model("chunked", "float32")
    stem = remat.tower_segments(model.audio)[0]
    assert remat.chunked_stem_applies(stem, tf.zeros((4, 257, 24, 1)), True, 3)
    assert not remat.chunked_stem_applies(stem, tf.zeros((3, 257, 24, 1)), True, 3)  # one chunk: nothing saved
    assert not remat.chunked_stem_applies(stem, tf.zeros((4, 257, 24, 1)), False, 3)  # inference
    assert not remat.chunked_stem_applies(stem, keras.KerasTensor((None, 257, 24, 1)), True, 3)  # unknown batch
    model.synchronise_batch_norm(True)
    assert not remat.chunked_stem_applies(stem, tf.zeros((4, 257, 24, 1)), True, 3)  # statistics over replicas


def model_in_replicas():
    model = make_model(False, "float32")
    model.synchronise_batch_norm(True)
    return model


def test_remat_travels_in_the_config_and_refuses_stock_layers():
    model = LVSModel(image_size=32, remat=True)
    assert model.get_config()["remat"] is True
    assert LVSModel.from_config(model.get_config()).remat is True

    class Stock(LVSModel):
        stock_layers = True

    with pytest.raises(ValueError, match="stock_layers"):
        Stock(image_size=32, remat=True)


def test_train_py_remat_flag_reaches_the_model(tmp_path):
    # Four demo pairs, one step of batch 4: train.py --remat trains and its model.keras says so; a resumed run
    # takes the flag of the new command, not of the checkpoint.
    import shutil

    import train
    from model import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    for name in ("demo_00001", "demo_00002", "demo_00003", "demo_00004"):
        for extension in (".jpg", ".wav"):
            shutil.copy(PROJECT / "data" / "demo" / "train" / (name + extension), data)
    common = ["--data_dir", str(data), "--out_dir", str(tmp_path / "run"), "--batch_size", "4", "--image_size", "32",
              "--sample_rate", "8000", "--audio_seconds", "0.4", "--image_weights", "none", "--steps_per_epoch", "1"]
    train.main(common + ["--epochs", "1", "--remat"])
    assert load_checkpoint(str(tmp_path / "run" / "model.keras")).remat is True
    train.main(common + ["--epochs", "2"])
    assert load_checkpoint(str(tmp_path / "run" / "model.keras")).remat is False


def test_torch_checkpoint_gives_the_same_loss_and_gradients():
    # bench.py's PyTorch reference with torch.utils.checkpoint on remat.py's segments computes the same step.
    import torch

    from benchmarks.torch_reference import TorchLVS, torch_lvs_loss

    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(3, 3, 32, 32, generator=generator, dtype=torch.float64)
    spectrograms = torch.randn(3, 1, 257, 12, generator=generator, dtype=torch.float64)
    results = []
    for checkpoint in (0, 7, 9):
        torch.manual_seed(1)
        network = TorchLVS(checkpoint=checkpoint).double().train()
        loss = torch_lvs_loss(*network(frames, spectrograms))
        loss.backward()
        gradients = {name: parameter.grad.clone() for name, parameter in network.named_parameters()
                     if parameter.grad is not None}  # the unused fc layers have none
        results.append((loss.item(), gradients))
    assert len(results[0][1]) == 2 * 60  # conv and BatchNorm weights of both trunks
    for loss, gradients in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-12)
        assert gradients.keys() == results[0][1].keys()
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, results[0][1][name], rtol=1e-10, atol=1e-12)
