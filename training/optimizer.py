"""PyTorch's Adam and AdamW in Keras: the optimizer train.py uses, equal step for step to torch.optim.

Two differences from keras.optimizers.Adam make it torch's:
- epsilon is added to the bias-corrected root, sqrt(v / (1 - beta_2^t)) + eps, with torch's default 1e-8
  (Keras adds its 1e-7 to the uncorrected sqrt(v), which amounts to an epsilon that changes with the step);
- weight_decay is torch.optim.Adam's: an L2 term weight_decay * variable added to the gradient before the
  moments. With decoupled=True it is torch.optim.AdamW's instead: variable *= 1 - learning_rate * weight_decay
  before the Adam step (Keras' own decoupled decay, which is the same formula).

Each step is TensorFlow's fused Adam kernel (update_step says how its epsilon is made torch's).

The official LVS code (and SSL-TIE after it) trains with torch.optim.Adam; tests/test_model.py checks one step of
each kind against torch.optim.Adam / torch.optim.AdamW on the same parameters and gradients.

Usage:
    from training.optimizer import TorchAdam
    model.compile(optimizer=TorchAdam(learning_rate=1e-4, weight_decay=1e-4))                  # torch Adam
    model.compile(optimizer=TorchAdam(learning_rate=1e-4, weight_decay=1e-2, decoupled=True))  # torch AdamW
"""

import keras
import tensorflow as tf
from keras import ops

TORCH_EPSILON = 1e-8  # torch.optim.Adam's default eps


@keras.saving.register_keras_serializable(package="lvs")
class TorchAdam(keras.optimizers.Adam):
    """torch.optim.Adam (L2 weight decay) or torch.optim.AdamW (decoupled=True) as a Keras optimizer.

    Args:
        learning_rate: step size (float or schedule).
        weight_decay: 0 for none; an L2 term (decoupled=False) or decoupled decay (decoupled=True).
        decoupled: AdamW's decay instead of Adam's L2 term.
        beta_1, beta_2, epsilon: torch's betas and eps (defaults 0.9, 0.999, 1e-8).
        **kwargs: keras.optimizers.Optimizer arguments (name, clipnorm, ...).
    """

    def __init__(self, learning_rate=1e-4, weight_decay=0.0, decoupled=False, beta_1=0.9, beta_2=0.999,
                 epsilon=TORCH_EPSILON, **kwargs):
        kwargs.pop("amsgrad", None)
        kwargs.pop("l2_weight_decay", None)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kwargs)
        self.decoupled = bool(decoupled)
        self.l2_weight_decay = 0.0
        self.set_weight_decay(weight_decay)

    @property
    def decay_value(self):
        """The weight decay in use (0 for none), whichever kind."""
        if self.decoupled:
            return float(self.weight_decay or 0.0)
        return float(self.l2_weight_decay)

    def set_weight_decay(self, value):
        """Change the weight decay (train.py does it when a resumed run is given a new --weight_decay)."""
        value = float(value or 0.0)
        if self.decoupled:
            self.weight_decay = value or None  # Keras' decoupled decay: variable -= variable * decay * lr
            self.l2_weight_decay = 0.0
        else:
            self.weight_decay = None
            self.l2_weight_decay = value

    def update_step(self, gradient, variable, learning_rate):
        """One torch.optim.Adam step for one variable (the decoupled decay, if any, was applied before it).

        One fused TensorFlow kernel (ResourceApplyAdam) per variable instead of ~10 separate ops. It computes
        m += (g - m)(1 - beta_1), v += (g^2 - v)(1 - beta_2), then
        var -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon'),
        which with epsilon' = eps sqrt(1 - beta_2^t) is torch's
        var -= lr / (1 - beta_1^t) * m / (sqrt(v / (1 - beta_2^t)) + eps).
        """
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        if self.l2_weight_decay:
            gradient = gradient + ops.cast(self.l2_weight_decay, dtype) * variable  # torch: grad.add(p, alpha=wd)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=beta_1_power, beta2_power=beta_2_power, lr=ops.cast(learning_rate, dtype),
            beta1=ops.cast(self.beta_1, dtype), beta2=ops.cast(self.beta_2, dtype),
            epsilon=ops.cast(self.epsilon, dtype) * ops.sqrt(1 - beta_2_power), grad=gradient)

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        config.update(weight_decay=self.decay_value, decoupled=self.decoupled)
        return config
