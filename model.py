"""The LVS two-tower model: a vision ResNet-18 and an audio ResNet-18 trained with the hard-negative trimap loss.

- Vision tower: ResNet-18 trunk (3 channels, layer4 stride 1 by default), 224 x 224 frame -> 14 x 14 x 512.
- Audio tower: ResNet-18 trunk (1 channel, layer4 stride 1), spectrogram -> map -> global max pooling -> 512.
- Both L2-normalised along channels. call() gives the similarity map S_ii and the positive mask m_ip.
- Input step: a training batch arrives as 8-bit frames and waveforms and is normalised and turned into
  spectrograms on the model's device (pipeline.preprocessing.model_inputs); prepared batches pass as they are.
- train_step / test_step apply loss.lvs_loss (BatchNorm in training mode while training). Under a
  tf.distribute strategy the audio embeddings of every replica are gathered, so each image's easy negatives
  come from the whole global batch.

The preprocessing settings (image_size, sample_rate, audio_seconds) and the loss settings are part of the
model's config, so they travel inside a .keras checkpoint.

Convert an official LVS checkpoint into a .keras model (predict.py and evaluate.py also take the .pth.tar directly):

    python model.py --lvs_checkpoint lvs_vggss.pth.tar --output lvs_vggss.keras
    python model.py --lvs_checkpoint lvs_flickr.pth.tar --sample_rate native

Usage:
    from model import build_model, load_checkpoint
    model = build_model(image_weights="none", image_size=112)
    model = load_checkpoint("runs/demo/model.keras")      # or an official LVS .pth.tar
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import os
import sys
import zipfile

import keras
import tensorflow as tf
from keras import ops

import loss as lvs
import resnet18
from pipeline import preprocessing
from pipeline.audio import NATIVE  # settings["sample_rate"] of a model fed every file at its own rate
from safeguards.arguments import sample_rate as sample_rate_argument
from safeguards.atomic import atomic_path
from training import optimizer  # noqa: F401  (registers TorchAdam, which compiled checkpoints name)
from training import remat as rematerialisation

DEFAULT_IMAGENET_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "resnet18_imagenet.weights.h5")
TORCH_CHECKPOINT_EXTENSIONS = (".pth", ".pt", ".tar")


def l2_normalise(features, axis=-1):
    """features / max(||features||, 1e-12) along axis, at least in float32 (as torch.nn.functional.normalize)."""
    features = lvs.at_least_float32(features)
    norm = ops.sqrt(ops.sum(ops.square(features), axis=axis, keepdims=True))
    return features / ops.maximum(norm, 1e-12)


@keras.saving.register_keras_serializable(package="lvs")
class LVSModel(keras.Model):
    """Vision and audio towers whose train_step applies the LVS loss.

    Args:
        image_size: side of the square frames the model is fed (preprocessing setting).
        layer4_stride: stride of the vision tower's layer4 (1: 14 x 14 maps at 224; 2: the seed's setting).
        sample_rate: rate every wav is resampled to, or "native": every file at its own rate (preprocessing setting).
        audio_seconds: audio length after tiling (preprocessing setting).
        eps_pos, eps_neg, tau, temperature, hard_negatives, trimap: the loss settings (loss.lvs_loss).
        remat: recompute the towers' activations in the backward pass of training (training/remat.py: less memory, the
            same loss and gradients, about one more forward pass of compute).
    """

    stock_layers = False  # towers of stock Keras layers (resnet18.build_resnet18); bench.py's comparison only
    remat_stems = True  # recompute the stems in the backward pass even without remat (bench.py measures without)
    # Segments (training/remat.py) each tower recomputes with remat: the stem and layer1 to layer3. layer4 (stride 1) holds
    # 56 % of the FLOPs at the paper's shapes on the smallest maps, so it keeps its activations. None: all nine.
    remat_segments = 7
    # With remat, the stems run this many samples at a time (remat.stem_in_chunks): their maps are the largest.
    remat_stem_chunk = 32

    def __init__(
        self,
        image_size=224,
        layer4_stride=1,
        sample_rate=16000,
        audio_seconds=10.0,
        eps_pos=lvs.EPS_POS,
        eps_neg=lvs.EPS_NEG,
        tau=lvs.TAU,
        temperature=lvs.TEMPERATURE,
        hard_negatives=True,
        trimap=True,
        remat=False,
        **kwargs,
    ):
        # The precision is a setting of the run (train.py --mixed_precision sets the global dtype policy before
        # building), not of the checkpoint: a model trained in bfloat16 loads in whatever policy is global, float32
        # by default, the outer model and both towers alike.
        kwargs.pop("dtype", None)
        super().__init__(**kwargs)
        if layer4_stride not in (1, 2):
            raise ValueError(f"layer4_stride must be 1 or 2, got {layer4_stride}")
        self.image_size = int(image_size)
        self.layer4_stride = int(layer4_stride)
        self.sample_rate = NATIVE if sample_rate == NATIVE else int(sample_rate)
        self.audio_seconds = float(audio_seconds)
        self.eps_pos = float(eps_pos)
        self.eps_neg = float(eps_neg)
        self.tau = float(tau)
        self.temperature = float(temperature)
        self.hard_negatives = bool(hard_negatives)
        self.trimap = bool(trimap)
        self.remat = bool(remat)
        if self.remat and self.stock_layers:
            raise ValueError("remat needs the towers' own layers (resnet18.BatchNormalization), not stock_layers")
        self.vision = resnet18.build_resnet18(input_channels=3, layer4_stride=self.layer4_stride, name="vision",
                                              stock_layers=self.stock_layers)
        self.audio = resnet18.build_resnet18(input_channels=1, layer4_stride=1, name="audio",
                                             stock_layers=self.stock_layers)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True  # both towers are functional models whose weights exist already

    @property
    def settings(self):
        """The preprocessing settings this model was trained with (a dict for preprocessing.make_dataset)."""
        return {"image_size": self.image_size, "sample_rate": self.sample_rate, "audio_seconds": self.audio_seconds}

    @property
    def loss_settings(self):
        """The keyword arguments this model passes to loss.lvs_loss."""
        return dict(eps_pos=self.eps_pos, eps_neg=self.eps_neg, tau=self.tau, temperature=self.temperature,
                    hard_negatives=self.hard_negatives, trimap=self.trimap)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size,
            layer4_stride=self.layer4_stride,
            sample_rate=self.sample_rate,
            audio_seconds=self.audio_seconds,
            remat=self.remat,
            **self.loss_settings,
        )
        return config

    def synchronise_batch_norm(self, enabled=True):
        """Under a tf.distribute strategy, compute BatchNorm statistics over the global batch (all replicas).

        With it, a distributed training step equals the single-device step on the same global batch (up to
        floating-point rounding); without it each replica normalises with its own share of the batch, as the
        official code's DataParallel did. train.py turns it on whenever there is more than one replica.
        """
        for layer in self.batch_norm_layers():
            layer.synchronized = enabled

    def batch_norm_layers(self):
        """Every BatchNormalization layer of both towers."""
        return [layer for layer in self.vision.layers + self.audio.layers
                if isinstance(layer, keras.layers.BatchNormalization)]

    def rematerialised_segments(self):
        """How many segments of each tower (training/remat.py) recompute their forward in the backward pass of training.

        With remat, remat_segments (the stem and layer1 to layer3); otherwise the stems (conv1, bn1, relu,
        maxpool: the largest maps, 2 % of the compute), except where BatchNorm is synchronised across replicas or
        the towers are stock layers.
        """
        if self.remat:
            return self.remat_segments
        if self.stock_layers or not self.remat_stems or any(layer.synchronized for layer in self.batch_norm_layers()):
            return 0
        return 1

    def embed(self, inputs, training=False):
        """L2-normalised features of both towers.

        Args:
            inputs: {"frame": batch x S x S x 3, "spectrogram": batch x 257 x time x 1}, or a training batch of
                8-bit frames and waveforms (preprocessing.model_inputs: normalised and turned into spectrograms
                here, on the model's device).
            training: BatchNorm in training mode.

        Returns:
            (frame_features batch x h x w x 512, audio_features batch x 512), float32.
        """
        inputs = preprocessing.model_inputs(inputs)
        segments = self.rematerialised_segments() if training else 0
        stem_chunk = self.remat_stem_chunk if self.remat else None
        if segments != 0:
            frame_maps = rematerialisation.call_in_segments(rematerialisation.tower_segments(self.vision),
                                                            inputs["frame"], True, segments,
                                                            stem_chunk)  # batch x h x w x 512
            audio_maps = rematerialisation.call_in_segments(rematerialisation.tower_segments(self.audio),
                                                            inputs["spectrogram"], True, segments,
                                                            stem_chunk)  # batch x f x t x 512
        else:
            frame_maps = self.vision(inputs["frame"], training=training)  # batch x h x w x 512
            audio_maps = self.audio(inputs["spectrogram"], training=training)  # batch x f x t x 512
        audio_vectors = ops.max(audio_maps, axis=(1, 2))  # global max pooling: batch x 512
        return l2_normalise(frame_maps), l2_normalise(audio_vectors)

    def call(self, inputs, training=False):
        """What prediction needs: the cosine map S_ii and the positive mask m_ip, both batch x h x w."""
        frame_features, audio_features = self.embed(inputs, training=training)
        similarity = lvs.similarity_map(frame_features, audio_features)
        return {"similarity": similarity, "positive_mask": lvs.positive_mask(similarity, self.eps_pos, self.tau)}

    def batch_loss(self, frame_features, audio_features):
        """This replica's share of the global-batch loss: sum of its images' losses / global batch size.

        Under a tf.distribute strategy, audio embeddings are gathered from every replica (k = global batch);
        gradients summed over replicas then equal those of the single-device mean over the global batch.
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        local_batch = ops.shape(frame_features)[0]
        offset = 0
        all_audio = audio_features
        if replicas > 1:
            all_audio = context.all_gather(audio_features, axis=0)  # global batch x 512
            offset = context.replica_id_in_sync_group * local_batch
        per_image = lvs.lvs_loss(frame_features, all_audio, pair_offset=offset, reduction="none", **self.loss_settings)
        global_batch = ops.cast(local_batch * replicas, per_image.dtype)
        return ops.sum(per_image) / global_batch, ops.mean(per_image)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a model symbolically from a batch it first reduces across replicas, which fails for a
        # dict batch under MultiWorkerMirroredStrategy. Both towers exist from __init__ on: only the optimizer
        # needs building, under the strategy's scope.
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            frame_features, audio_features = self.embed(inputs, training=True)
            replica_loss, local_mean = self.batch_loss(frame_features, audio_features)
            scaled_loss = self.optimizer.scale_loss(replica_loss)
        with rematerialisation.statistics_frozen(self.batch_norm_layers() if self.rematerialised_segments() != 0
                                                 else []):
            gradients = tape.gradient(scaled_loss, self.trainable_variables)  # with remat: recomputes the forward
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(local_mean)
        return self._logs()

    def _logs(self):
        loss = self.loss_tracker.result()
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            loss = ops.reshape(loss, (1,))  # Keras averages logs over workers along axis 0
        return {"loss": loss}

    def test_step(self, data):
        inputs = data[0] if isinstance(data, (tuple, list)) else data
        frame_features, audio_features = self.embed(inputs, training=False)
        _, local_mean = self.batch_loss(frame_features, audio_features)
        self.loss_tracker.update_state(local_mean)
        return self._logs()


def load_image_weights(model, image_weights):
    """Initialise the vision tower.

    Args:
        model: an LVSModel.
        image_weights: "imagenet" (the converted torchvision weights, see resnet18.py), "none" (random), or a
            path to a .weights.h5 file from resnet18.py or a torchvision ResNet-18 state dict (.pth).
    """
    if image_weights == "none":
        return
    path = DEFAULT_IMAGENET_WEIGHTS if image_weights == "imagenet" else image_weights
    if image_weights == "imagenet" and not os.path.isfile(path):
        print(f"{path} not found: converting torchvision's ImageNet ResNet-18 (needs the network once)")
        resnet18.convert_imagenet(path)
    if not os.path.isfile(path):
        raise ValueError(f"image weights not found: {path} (use imagenet, none, or a .weights.h5 / .pth file)")
    if path.endswith(TORCH_CHECKPOINT_EXTENSIONS):
        resnet18.load_torch_state_dict(model.vision, resnet18.read_torch_checkpoint(path))
    else:
        resnet18.load_vision_weights(model.vision, path)


def build_model(image_weights="none", **settings):
    """A new LVSModel with its vision tower initialised.

    Args:
        image_weights: "imagenet", "none" or a path (see load_image_weights).
        **settings: LVSModel arguments (image_size, layer4_stride, sample_rate, audio_seconds, loss settings).

    Returns:
        The LVSModel, not compiled.
    """
    model = LVSModel(**settings)
    initialise_like_official(model)
    load_image_weights(model, image_weights)
    if image_weights != "none":
        require_finite(model, image_weights)
    return model


def initialise_like_official(model, seed=None):
    """Give both towers the official LVS initialisation (AVENet.__init__ in the authors' model.py).

    Every convolution kernel ~ N(0, 2 / fan_out) (kaiming_normal_(mode='fan_out', nonlinearity='relu'), fan_out =
    out_channels x kernel height x kernel width, untruncated as torch's), every BatchNorm gamma ~ N(1, 0.02) and
    beta = 0; the moving statistics keep torch's mean 0, variance 1. torchvision's ResNet sets gamma to exactly 1;
    AVENet re-initialises all its modules after building the towers, so N(1, 0.02) is what the official run
    started from. A tower loaded afterwards (ImageNet weights) replaces it.

    Args:
        model: an LVSModel.
        seed: integer seed; None draws from Keras' global seed (keras.utils.set_random_seed).
    """
    seeds = keras.random.SeedGenerator(seed) if seed is not None else None
    for tower in (model.vision, model.audio):
        for layer in tower.layers:
            if isinstance(layer, keras.layers.Conv2D):
                initializer = keras.initializers.VarianceScaling(
                    scale=2.0, mode="fan_out", distribution="untruncated_normal",
                    seed=seeds.next() if seeds is not None else None)
                layer.kernel.assign(initializer(layer.kernel.shape, dtype=layer.kernel.dtype))
            elif isinstance(layer, keras.layers.BatchNormalization):
                gamma = keras.initializers.RandomNormal(mean=1.0, stddev=0.02,
                                                        seed=seeds.next() if seeds is not None else None)
                layer.gamma.assign(gamma(layer.gamma.shape, dtype=layer.gamma.dtype))
                layer.beta.assign(ops.zeros_like(layer.beta))


def convert_official_checkpoint(path, **settings):
    """An LVSModel carrying the tensors of an official LVS checkpoint (torch.save of {'model_state_dict': ...}).

    The towers are 'module.imgnet.' (first conv 'conv1') and 'module.audnet.' (first conv 'conv1_a'); the
    unused conv1 / conv1_a / conv1_flow and fc tensors are ignored.

    Args:
        path: the .pth.tar file.
        **settings: LVSModel arguments; the defaults are the official recipe (224, 16 kHz, 10 s).

    Returns:
        The LVSModel.
    """
    state_dict = resnet18.read_torch_checkpoint(path)
    prefixes = {key.split(".")[0] for key in state_dict}
    prefix = "module." if prefixes == {"module"} else ""
    model = LVSModel(**settings)
    resnet18.load_torch_state_dict(model.vision, state_dict, prefix=prefix + "imgnet.", first_conv="conv1")
    resnet18.load_torch_state_dict(model.audio, state_dict, prefix=prefix + "audnet.", first_conv="conv1_a")
    require_finite(model, path)
    return model


def load_checkpoint(path, compile=False):
    """Load a model from a .keras file of train.py or an official LVS .pth.tar.

    Args:
        path: the checkpoint.
        compile: restore the optimizer too (.keras only; train.py resumes this way).

    Returns:
        The LVSModel.

    Raises:
        ValueError: one line naming the problem: missing, truncated or not a Keras archive, another kind of model,
            or a weight that is not finite (NaN or inf; the line names the variable).
    """
    if not os.path.exists(path):
        raise ValueError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint is not a file: {path}")
    if path.endswith(TORCH_CHECKPOINT_EXTENSIONS):
        return convert_official_checkpoint(path)  # checked for non-finite values there
    if not path.endswith(".keras"):
        raise ValueError(f"checkpoint must be a .keras file or an official .pth.tar, got {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint {path} is truncated or not a Keras archive")
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # a damaged archive or a foreign class
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"could not read checkpoint {path}: {type(error).__name__}: {message}") from error
    if not isinstance(model, LVSModel):
        raise ValueError(f"checkpoint {path} holds a {type(model).__name__} model, not an LVS model from train.py")
    require_finite(model, path)
    return model


def non_finite_variable(model):
    """The name of the first variable holding a NaN or an infinity (weights, BatchNorm moving statistics,
    optimizer state), as "audio/layer1_0_bn1/moving_variance", or None when every value is finite."""
    named = [(f"{tower.name}/{variable.path}", variable) for tower in (model.vision, model.audio)
             for variable in tower.weights]
    if getattr(model, "optimizer", None) is not None:
        named += [(f"optimizer/{variable.path}", variable) for variable in model.optimizer.variables]
    for name, variable in named:
        if not tf.reduce_all(tf.math.is_finite(tf.cast(variable, tf.float32))):
            return name
    return None


def require_finite(model, path):
    """Raise ValueError naming the first non-finite variable of the model loaded from (or saved to) path."""
    name = non_finite_variable(model)
    if name is not None:
        raise ValueError(f"checkpoint {path} holds non-finite values (NaN or inf) in {name}; it cannot be used")


def main():
    parser = argparse.ArgumentParser(
        description="Convert an official LVS checkpoint (.pth.tar, torch.save of {'model_state_dict': ...}) into the "
        "project's .keras model. predict.py and evaluate.py also take the .pth.tar directly.")
    parser.add_argument("--lvs_checkpoint", required=True, help="the official LVS checkpoint to convert")
    parser.add_argument("--output", default=None,
                        help="the .keras file to write (default: the checkpoint's name with .keras)")
    parser.add_argument("--sample_rate", type=sample_rate_argument, default=16000,
                        help="the rate the converted model is fed, in Hz, or 'native' (each file at its own rate, as "
                        "the official code); recorded in the .keras (default: 16000)")
    arguments = parser.parse_args()
    output = arguments.output or os.path.splitext(arguments.lvs_checkpoint.removesuffix(".tar"))[0] + ".keras"
    if not output.endswith(".keras"):
        parser.error(f"--output must end with .keras, got {output}")
    try:
        model = convert_official_checkpoint(arguments.lvs_checkpoint, sample_rate=arguments.sample_rate)
    except (ValueError, OSError) as error:
        sys.exit(f"error: {error}")
    with atomic_path(output) as temporary:
        model.save(temporary)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
