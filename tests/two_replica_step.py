"""Run by test_distributed.py in its own process: one LVS step on two logical CPU replicas vs one device.

Prints a JSON line with the single-device and two-replica losses and the largest gradient difference. The
replicas split the global batch, gather each other's audio embeddings for the easy negatives and synchronise
BatchNorm statistics, so the step must equal the single-device step on the same global batch.

Usage: python tests/two_replica_step.py float64|float32
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402

from model import LVSModel  # noqa: E402

keras.config.set_floatx(sys.argv[1])
rng = np.random.default_rng(0)
batch = {
    "frame": rng.normal(size=(4, 64, 64, 3)).astype(sys.argv[1]),
    "spectrogram": rng.normal(size=(4, 257, 12, 1)).astype(sys.argv[1]),
}


def loss_and_gradients(model, inputs):
    with tf.GradientTape() as tape:
        frame_features, audio_features = model.embed(inputs, training=True)
        replica_loss, _ = model.batch_loss(frame_features, audio_features)
    return replica_loss, tape.gradient(replica_loss, model.trainable_variables)


keras.utils.set_random_seed(0)
single = LVSModel(image_size=64)
single.synchronise_batch_norm(True)
single_loss, single_gradients = loss_and_gradients(single, batch)

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    distributed = LVSModel(image_size=64)
    distributed.set_weights(single.get_weights())
    distributed.synchronise_batch_norm(True)
inputs = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))


@tf.function
def distributed_step(inputs):
    losses, gradients = strategy.run(loss_and_gradients, args=(distributed, inputs))
    total = strategy.reduce("SUM", losses, axis=None)  # each replica holds sum(its losses) / global batch
    return total, [strategy.reduce("SUM", gradient, axis=None) for gradient in gradients]


distributed_loss, distributed_gradients = distributed_step(inputs)
difference = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(single_gradients, distributed_gradients))
scale = max(float(tf.reduce_max(tf.abs(a))) for a in single_gradients)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "single_loss": float(single_loss),
                  "distributed_loss": float(distributed_loss), "gradient_difference": difference,
                  "gradient_scale": scale}))
