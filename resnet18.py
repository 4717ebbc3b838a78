"""ResNet-18 in Keras 3 with torchvision's layout, and conversion of PyTorch weights into it.

Both LVS towers are torchvision ResNet-18 trunks (the vision tower with 3 input channels, the audio tower with 1),
with layer4's first block at stride 1 so a 224x224 frame gives a 14x14x512 map. Every Keras layer is named after
the torchvision module path with '.' replaced by '_' (conv1, bn1, layer1_0_conv1, layer2_0_downsample_0, ..., fc),
so a PyTorch state dict maps onto the Keras layers by name. Its BatchNormalization runs on TensorFlow's fused kernel
and keeps PyTorch's running statistics (the running variance follows the unbiased batch variance).

Convert torchvision's ImageNet weights into a Keras weights file for the vision tower:

    python resnet18.py --output weights/resnet18_imagenet.weights.h5
    python resnet18.py --output weights/resnet18_imagenet.weights.h5 --pth resnet18-f37072fd.pth

An official LVS checkpoint becomes the project's model with model.py (predict.py / evaluate.py also take it directly):

    python model.py --lvs_checkpoint lvs_vggss.pth.tar --output lvs_vggss.keras

Without --pth the file is downloaded into torch's hub cache (the same file torchvision's
ResNet18_Weights.IMAGENET1K_V1 uses); where there is no network, download it by hand from IMAGENET_URL and pass --pth.
Its sha256 is checked either way.

In Python:

    trunk = build_resnet18(input_channels=3, layer4_stride=1)
    load_vision_weights(trunk, "weights/resnet18_imagenet.weights.h5")
    feature_map = trunk(frames, training=False)  # B x 224 x 224 x 3 -> B x 14 x 14 x 512
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import hashlib
import os
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from safeguards.atomic import atomic_path

IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
IMAGENET_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"

# PyTorch's BatchNorm2d defaults: eps 1e-5 and momentum 0.1 (Keras counts momentum the other way round).
BATCH_NORM_EPSILON = 1e-5
BATCH_NORM_MOMENTUM = 0.9

# (torchvision layer name, output channels, stride of its first block); layer4's stride is an argument.
STAGES = (("layer1", 64, 1), ("layer2", 128, 2), ("layer3", 256, 2), ("layer4", 512, None))
BLOCKS_PER_STAGE = 2

# torchvision parameter name -> Keras variable attribute, per layer type.
CONV_PARAMETERS = {"weight": "kernel", "bias": "bias"}
BATCH_NORM_PARAMETERS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
DENSE_PARAMETERS = {"weight": "kernel", "bias": "bias"}


@keras.saving.register_keras_serializable(package="lvs")
class BatchNormalization(keras.layers.BatchNormalization):
    """torch.nn.BatchNorm2d on TensorFlow's fused kernel (FusedBatchNormV3: one pass forward, one backward).

    Training normalises with the biased batch variance and moves the running variance towards the unbiased one
    (n / (n - 1) times it), as PyTorch does; Keras' own layer moves it towards the biased one. Stock Keras
    computes the statistics and the normalisation as separate ops (and in float32 under mixed precision); the
    fused kernel takes float32, float16 or bfloat16 NHWC inputs as they come. Anything else (other ranks or axes,
    float64, masks, statistics synchronised across replicas) takes the same arithmetic as separate ops.

    Args:
        fused: use the fused kernel where it applies (False: always separate ops; bench.py compares them).
        **kwargs: keras.layers.BatchNormalization arguments.
    """

    # Whether a training call moves the running statistics. training/remat.py turns it off while the backward pass
    # recomputes a block's forward, so the statistics move once per step, as without rematerialisation.
    update_statistics = True

    def __init__(self, fused=True, **kwargs):
        super().__init__(**kwargs)
        self.fused = bool(fused)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}

    def can_fuse(self, inputs, mask):
        return (self.fused and mask is None and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3, [-1], [3]) and inputs.dtype in (tf.float32, tf.float16, tf.bfloat16))

    def call(self, inputs, training=None, mask=None):
        training = bool(training) and self.trainable
        if len(inputs.shape) != 4 or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        if self.can_fuse(inputs, mask):
            gamma = tf.cast(self.gamma, tf.float32)
            beta = tf.cast(self.beta, tf.float32)
            if not training:
                outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                    inputs, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
                    epsilon=self.epsilon, data_format="NHWC", is_training=False)
                return outputs
            # batch_variance is already the unbiased one (TensorFlow applies Bessel's correction for it).
            outputs, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        else:
            if not training:
                return super().call(inputs, training=False)
            float_inputs = tf.cast(inputs, tf.float32) if inputs.dtype in (tf.float16, tf.bfloat16) else inputs
            batch_mean, variance = ops.moments(float_inputs, axes=(0, 1, 2), synchronized=self.synchronized)
            outputs = ops.batch_normalization(float_inputs, batch_mean, variance, axis=-1,
                                              offset=ops.cast(self.beta, float_inputs.dtype),
                                              scale=ops.cast(self.gamma, float_inputs.dtype), epsilon=self.epsilon)
            outputs = ops.cast(outputs, inputs.dtype)
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), variance.dtype)
            if self.synchronized and tf.distribute.has_strategy():
                count *= tf.distribute.get_replica_context().num_replicas_in_sync
            batch_variance = variance * count / tf.maximum(count - 1, 1)
        if self.update_statistics:
            self.move_statistics(batch_mean, batch_variance)
        return outputs

    def move_statistics(self, batch_mean, batch_variance):
        """Move the running statistics towards a training batch's, as torch.nn.BatchNorm2d does.

        Args:
            batch_mean: per-channel mean of the batch.
            batch_variance: per-channel unbiased variance of the batch (n / (n - 1) times the biased one).
        """
        self.moving_mean.assign(self.moving_mean * self.momentum + ops.cast(batch_mean, self.moving_mean.dtype)
                                * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + ops.cast(batch_variance, self.moving_variance.dtype) * (1 - self.momentum))


@keras.saving.register_keras_serializable(package="lvs")
class Conv2D(keras.layers.Conv2D):
    """keras.layers.Conv2D that skips the kernel taps which can only read zero padding.

    With "same" padding at stride 1, a map one pixel wide (or high) meets only the kernel's centre column (row):
    the other taps multiply zero padding, and their gradients are exactly zero. Short clips give such maps in the
    audio tower (0.5 s at 8 kHz: 257 x 15 -> 17 x 1 in layer3 and layer4). The output is the same; the work is a
    third. Needs the map's size in the static shape; otherwise the whole kernel is used.
    """

    def convolution_op(self, inputs, kernel):
        if self.padding != "same" or tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1):
            return super().convolution_op(inputs, kernel)
        kernel_height, kernel_width = self.kernel_size
        if inputs.shape[2] == 1 and kernel_width % 2:
            kernel = kernel[:, kernel_width // 2:kernel_width // 2 + 1]  # kh x kw x in x out -> kh x 1 x in x out
        if inputs.shape[1] == 1 and kernel_height % 2:
            kernel = kernel[kernel_height // 2:kernel_height // 2 + 1]  # kh x kw' x in x out -> 1 x kw' x in x out
        return ops.conv(inputs, kernel, strides=1, padding="same")


def conv_bn(inputs, filters, kernel_size, stride, padding, conv_name, bn_name, stock_layers=False):
    """A bias-free convolution with PyTorch's symmetric zero padding, followed by batch normalisation.

    Args:
        inputs: B x H x W x C tensor.
        filters: output channels.
        kernel_size: square kernel size.
        stride: convolution stride.
        padding: zero padding added on every side (PyTorch's `padding`).
        conv_name: Keras name of the convolution layer.
        bn_name: Keras name of the batch normalisation layer.
        stock_layers: see build_resnet18.

    Returns:
        B x H' x W' x filters tensor.
    """
    outputs = inputs
    keras_padding = "valid"
    if stride == 1 and 2 * padding == kernel_size - 1 and not stock_layers:
        # The same symmetric padding inside the convolution: no pad op, and the backward pass does not compute
        # the gradient of a padded input (bench.py's `_stock` variants measure the gain).
        keras_padding = "same"
    elif padding:
        # Keras' "same" pads more at the end than at the start when the stride is 2; PyTorch pads both alike.
        # (tf.nn.conv2d's explicit paddings were tried: they leave oneDNN's fast kernels, 1.8x slower training.)
        outputs = keras.layers.ZeroPadding2D(padding, name=f"{conv_name}_pad")(outputs)
    convolution = keras.layers.Conv2D if stock_layers else Conv2D
    outputs = convolution(filters, kernel_size, strides=stride, padding=keras_padding, use_bias=False, name=conv_name)(
        outputs)
    batch_norm = keras.layers.BatchNormalization if stock_layers else BatchNormalization
    return batch_norm(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=bn_name)(outputs)


def basic_block(inputs, filters, stride, name, stock_layers=False):
    """torchvision's BasicBlock: conv3x3-bn-relu-conv3x3-bn, plus the identity or a 1x1 conv + BN shortcut, relu.

    Args:
        inputs: B x H x W x C tensor.
        filters: output channels.
        stride: stride of the first 3x3 convolution and of the shortcut.
        name: Keras name prefix, the torchvision module path with '_' (e.g. "layer2_0").
        stock_layers: see build_resnet18.

    Returns:
        B x H/stride x W/stride x filters tensor.
    """
    outputs = conv_bn(inputs, filters, 3, stride, 1, f"{name}_conv1", f"{name}_bn1", stock_layers)
    outputs = keras.layers.ReLU(name=f"{name}_relu1")(outputs)
    outputs = conv_bn(outputs, filters, 3, 1, 1, f"{name}_conv2", f"{name}_bn2", stock_layers)
    if stride != 1 or inputs.shape[-1] != filters:
        shortcut = conv_bn(
            inputs, filters, 1, stride, 0, f"{name}_downsample_0", f"{name}_downsample_1", stock_layers
        )
    else:
        shortcut = inputs
    outputs = keras.layers.Add(name=f"{name}_add")([outputs, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(outputs)


def build_resnet18(
    input_channels=3, layer4_stride=1, include_top=False, name="resnet18", input_shape=(None, None), stock_layers=False
):
    """Builds a channels-last ResNet-18 with torchvision's layout and layer names.

    Args:
        input_channels: channels of the input (3 for frames, 1 for spectrograms).
        layer4_stride: stride of layer4's first block (torchvision uses 2; LVS uses 1, giving 14x14 at 224 input).
        include_top: add global average pooling and the 1000-way Dense layer "fc".
        name: Keras model name.
        input_shape: (height, width) of the input; None accepts any size.
        stock_layers: build it as stock Keras layers would (a ZeroPadding2D before every padded convolution,
            keras.layers.Conv2D and keras.layers.BatchNormalization): the same function, slower; bench.py measures
            the difference.

    Returns:
        A functional keras.Model mapping B x H x W x input_channels to B x H/16 x W/16 x 512 (layer4_stride 1),
        B x H/32 x W/32 x 512 (layer4_stride 2), or B x 1000 logits with include_top.
    """
    if layer4_stride not in (1, 2):
        raise ValueError(f"layer4_stride must be 1 or 2, got {layer4_stride}")
    if input_channels < 1:
        raise ValueError(f"input_channels must be positive, got {input_channels}")
    inputs = keras.Input(shape=(*input_shape, input_channels), name="input")
    outputs = conv_bn(inputs, 64, 7, 2, 3, "conv1", "bn1", stock_layers)
    outputs = keras.layers.ReLU(name="relu")(outputs)
    # Zero padding equals PyTorch's -inf padding here because the max-pool input is >= 0 after the ReLU.
    outputs = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(outputs)
    outputs = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(outputs)
    for stage_name, filters, stage_stride in STAGES:
        stride = layer4_stride if stage_stride is None else stage_stride
        for block_index in range(BLOCKS_PER_STAGE):
            outputs = basic_block(
                outputs, filters, stride if block_index == 0 else 1, f"{stage_name}_{block_index}", stock_layers
            )
    if include_top:
        outputs = keras.layers.GlobalAveragePooling2D(name="avgpool")(outputs)
        outputs = keras.layers.Dense(1000, name="fc")(outputs)
    return keras.Model(inputs, outputs, name=name)


def to_numpy(tensor):
    """Returns a torch tensor or array-like as a numpy array (without importing torch)."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def keras_parameter(layer, parameter):
    """Maps a torchvision parameter name to (Keras variable, converter) for one layer, or None if it has none.

    Args:
        layer: a Conv2D, BatchNormalization or Dense layer.
        parameter: torchvision parameter name ("weight", "bias", "running_mean", "running_var").

    Returns:
        (variable, convert) where convert turns the torch array into the Keras layout, or None.
    """
    if isinstance(layer, keras.layers.Conv2D):
        attribute = CONV_PARAMETERS.get(parameter)
        # OIHW -> HWIO for the kernel.
        convert = (lambda array: array.transpose(2, 3, 1, 0)) if parameter == "weight" else None
    elif isinstance(layer, keras.layers.BatchNormalization):
        attribute = BATCH_NORM_PARAMETERS.get(parameter)
        convert = None
    elif isinstance(layer, keras.layers.Dense):
        attribute = DENSE_PARAMETERS.get(parameter)
        # out x in -> in x out for the kernel.
        convert = (lambda array: array.T) if parameter == "weight" else None
    else:
        return None
    variable = getattr(layer, attribute, None) if attribute else None
    if variable is None:
        return None
    return variable, convert or (lambda array: array)


def loadable_variables(keras_model):
    """Returns {(layer name, torchvision parameter name): Keras variable} for every weight a state dict fills."""
    variables = {}
    for layer in keras_model.layers:
        for parameter in ("weight", "bias", "running_mean", "running_var"):
            found = keras_parameter(layer, parameter)
            if found is not None:
                variables[(layer.name, parameter)] = found[0]
    return variables


def load_torch_state_dict(keras_model, state_dict, prefix="", first_conv="conv1", strict=True):
    """Copies a torchvision ResNet-18 state dict into a model from build_resnet18 (or any model named alike).

    Conv weights go from OIHW to HWIO, BatchNorm weight/bias/running_mean/running_var to
    gamma/beta/moving_mean/moving_variance, fc weight (out x in) to a transposed Dense kernel. Nothing is assigned
    unless every check passes.

    Args:
        keras_model: Keras model whose layers are named like the torch modules ('.' -> '_').
        state_dict: mapping of key -> torch tensor or numpy array.
        prefix: only keys starting with this are used (e.g. "module.imgnet."); it is removed before matching.
        first_conv: torch module name of the first convolution, loaded into the Keras layer "conv1"
            ("conv1_a" for the official LVS audio tower); a torch "conv1" is then ignored.
        strict: raise if a Keras weight receives no tensor. Shape mismatches and tensors for a parameter the
            Keras layer lacks always raise.

    Returns:
        The full keys (with prefix) that belong to no layer of the model and were ignored (e.g. conv1_flow, the
        unused first conv, fc when the model has no top), sorted. num_batches_tracked keys are skipped silently.

    Raises:
        ValueError: naming every missing Keras weight, every shape mismatch and every unexpected tensor, or if no
            key starts with prefix.
    """
    if not any(key.startswith(prefix) for key in state_dict):
        first_key = next(iter(state_dict), None)
        raise ValueError(f"no key of the state dict starts with {prefix!r} (first key: {first_key!r})")
    layers = {layer.name: layer for layer in keras_model.layers}
    expected = loadable_variables(keras_model)
    assignments = {}
    found = set()
    ignored = []
    problems = []
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        module_path, _, parameter = key[len(prefix):].rpartition(".")
        if parameter == "num_batches_tracked":
            continue
        if module_path == first_conv:
            layer_name = "conv1"
        elif module_path == "conv1":
            ignored.append(key)  # the unused first conv of a checkpoint whose first conv has another name
            continue
        else:
            layer_name = module_path.replace(".", "_")
        if layer_name not in layers or (layer_name, parameter) not in expected:
            if layer_name in layers and keras_parameter(layers[layer_name], "weight") is not None:
                problems.append(f"unexpected tensor {key} (Keras layer '{layer_name}' has no such weight)")
            else:
                ignored.append(key)
            continue
        variable = expected[(layer_name, parameter)]
        convert = keras_parameter(layers[layer_name], parameter)[1]
        found.add((layer_name, parameter))
        array = to_numpy(tensor)
        expected_shape = torch_shape(variable.shape)
        if tuple(array.shape) != expected_shape:
            problems.append(
                f"shape mismatch for {key}: got {tuple(array.shape)}, expected {expected_shape} "
                f"(Keras {layer_name}.{variable.name} {tuple(variable.shape)})"
            )
            continue
        assignments[(layer_name, parameter)] = convert(array)
    if strict:
        for (layer_name, parameter), variable in expected.items():
            if (layer_name, parameter) not in found:
                torch_module = first_conv if layer_name == "conv1" else torch_module_path(layer_name)
                problems.append(
                    f"missing tensor {prefix}{torch_module}.{parameter} for Keras {layer_name}.{variable.name}"
                )
    if problems:
        raise ValueError(
            f"cannot load the state dict into '{keras_model.name}' ({len(problems)} problems): "
            + "; ".join(problems)
        )
    for (layer_name, parameter), array in assignments.items():
        variable = expected[(layer_name, parameter)]
        variable.assign(array.astype(variable.dtype))
    return sorted(ignored)


def torch_shape(keras_shape):
    """Returns the torch shape of a Keras weight: HWIO conv kernel -> OIHW, in x out Dense kernel -> out x in."""
    keras_shape = tuple(keras_shape)
    if len(keras_shape) == 4:
        height, width, in_channels, out_channels = keras_shape
        return (out_channels, in_channels, height, width)
    return keras_shape[::-1]


def torch_module_path(layer_name):
    """Returns the torchvision module path of a Keras layer name (layer2_0_downsample_0 -> layer2.0.downsample.0)."""
    return layer_name.replace("_", ".")


def read_torch_checkpoint(path):
    """Reads a PyTorch checkpoint's state dict on the CPU (tensors only, no pickled code).

    Args:
        path: a .pth / .pth.tar file holding a state dict, or {'model_state_dict': ...} / {'state_dict': ...}.

    Returns:
        The state dict: a mapping of key -> torch tensor.

    Raises:
        ValueError: if the file is missing, unreadable or holds no state dict.
    """
    import torch  # imported here so the Keras model does not need torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (pickle, zip, EOF) for a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {first_line}") from error
    if isinstance(checkpoint, dict):
        for wrapper_key in ("model_state_dict", "state_dict"):
            if wrapper_key in checkpoint and isinstance(checkpoint[wrapper_key], dict):
                checkpoint = checkpoint[wrapper_key]
                break
    if not isinstance(checkpoint, dict) or not any(hasattr(value, "shape") for value in checkpoint.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    return checkpoint


def file_sha256(path):
    """Returns the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_imagenet_pth():
    """Returns the path of torchvision's ImageNet ResNet-18 file in torch's hub cache, downloading it if needed.

    Raises:
        RuntimeError: if the download fails, saying how to get the file by hand.
    """
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_URL.rsplit("/", 1)[-1]
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(IMAGENET_URL, str(cached), progress=True)
        except Exception as error:  # URLError, HTTPError, socket errors, ...
            raise RuntimeError(
                f"could not download {IMAGENET_URL} ({error}); download it by hand and pass --pth "
                "(or pth_path=) with its path"
            ) from error
    return cached


def save_weights_atomically(keras_model, output_path):
    """Saves keras_model.save_weights to output_path (a *.weights.h5 file) through a temp file and os.replace.

    Returns:
        output_path as a pathlib.Path.
    """
    output_path = Path(output_path)
    if not output_path.name.endswith(".weights.h5"):
        raise ValueError(f"the output file name must end with .weights.h5, got {output_path}")
    with atomic_path(output_path) as temporary_path:
        keras_model.save_weights(temporary_path)
    return output_path


def convert_imagenet(output_path, pth_path=None, expected_sha256=IMAGENET_SHA256):
    """Converts torchvision's ImageNet ResNet-18 into a Keras weights file for the vision tower.

    Args:
        output_path: where to write the weights (must end with .weights.h5); written atomically.
        pth_path: the downloaded resnet18-f37072fd.pth; None downloads it into torch's hub cache.
        expected_sha256: sha256 the .pth file must have (None skips the check; tests pass their own file's).

    Returns:
        The output path (pathlib.Path).

    Raises:
        ValueError: for a missing file, a sha256 mismatch, or tensors that do not fit.
        RuntimeError: if the download fails.
    """
    if pth_path is None:
        pth_path = download_imagenet_pth()
    pth_path = Path(pth_path)
    if not pth_path.is_file():
        raise ValueError(f"--pth file not found: {pth_path}")
    if expected_sha256 is not None:
        got = file_sha256(pth_path)
        if got != expected_sha256:
            raise ValueError(f"sha256 of {pth_path} is {got}, expected {expected_sha256}")
    state_dict = read_torch_checkpoint(pth_path)
    # The classifier (fc) is not needed by the vision tower, so the trunk has no top and fc is ignored.
    keras_model = build_resnet18(3, layer4_stride=1, include_top=False)
    load_torch_state_dict(keras_model, state_dict)
    return save_weights_atomically(keras_model, output_path)


def load_vision_weights(keras_model, path):
    """Loads a file written by convert_imagenet into a build_resnet18 trunk (3 channels, any layer4_stride).

    Args:
        keras_model: a model from build_resnet18(3, layer4_stride=1 or 2, include_top=False).
        path: the *.weights.h5 file.

    Raises:
        ValueError: if the file is missing or does not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    try:
        keras_model.load_weights(path)
    except ValueError as error:
        raise ValueError(f"cannot load {path} into '{keras_model.name}': {error}") from error


def main():
    parser = argparse.ArgumentParser(
        description="Convert torchvision's ImageNet ResNet-18 into a Keras weights file for the LVS vision tower. "
        "(An official LVS checkpoint becomes a .keras model with `python model.py --lvs_checkpoint FILE`.)"
    )
    parser.add_argument(
        "--output",
        default="weights/resnet18_imagenet.weights.h5",
        help="the .weights.h5 file to write (default: weights/resnet18_imagenet.weights.h5)",
    )
    parser.add_argument(
        "--pth",
        default=None,
        help=f"torchvision's resnet18-f37072fd.pth downloaded by hand from {IMAGENET_URL} "
        "(default: download into torch's hub cache)",
    )
    parser.add_argument(
        "--lvs_checkpoint",
        default=None,
        help="moved: official LVS checkpoints are converted by `python model.py --lvs_checkpoint FILE` "
        "(this flag only says so)",
    )
    arguments = parser.parse_args()
    if arguments.lvs_checkpoint:
        sys.exit(f"error: an official LVS checkpoint is converted by model.py now: "
                 f"python model.py --lvs_checkpoint {arguments.lvs_checkpoint}")
    if not arguments.output.endswith(".weights.h5"):
        parser.error(f"--output must end with .weights.h5, got {arguments.output}")
    try:
        output_path = convert_imagenet(arguments.output, arguments.pth)
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {output_path}")


if __name__ == "__main__":
    main()
