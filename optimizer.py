"""PyTorch's Adam and AdamW in Keras: the optimizer train.py uses, equal step for step to torch.optim.

Two differences from keras.optimizers.Adam make it torch's:
- epsilon is added to the bias-corrected root, sqrt(v / (1 - beta_2^t)) + eps, with torch's default 1e-8
  (Keras adds its 1e-7 to the uncorrected sqrt(v), which amounts to an epsilon that changes with the step);
- weight_decay is torch.optim.Adam's: an L2 term weight_decay * variable added to the gradient before the
  moments. With decoupled=True it is torch.optim.AdamW's instead: variable *= 1 - learning_rate * weight_decay
  before the Adam step (Keras' own decoupled decay, which is the same formula).

The official LVS code (and SSL-TIE after it) trains with torch.optim.Adam; tests/test_model.py checks one step of
each kind against torch.optim.Adam / torch.optim.AdamW on the same parameters and gradients.

Usage:
    from optimizer import TorchAdam
    model.compile(optimizer=TorchAdam(learning_rate=1e-4, weight_decay=1e-4))                  # torch Adam
    model.compile(optimizer=TorchAdam(learning_rate=1e-4, weight_decay=1e-2, decoupled=True))  # torch AdamW
"""

import keras
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
        """One torch.optim.Adam step for one variable (the decoupled decay, if any, was applied before it)."""
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            gradient = gradient + ops.cast(self.l2_weight_decay, variable.dtype) * variable  # torch: grad.add(p, alpha=wd)
        step = ops.cast(self.iterations + 1, variable.dtype)
        bias_correction_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
        bias_correction_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
        first_moment = self._momentums[self._get_variable_index(variable)]
        second_moment = self._velocities[self._get_variable_index(variable)]
        self.assign_add(first_moment, ops.multiply(ops.subtract(gradient, first_moment), 1 - self.beta_1))
        self.assign_add(second_moment,
                        ops.multiply(ops.subtract(ops.square(gradient), second_moment), 1 - self.beta_2))
        denominator = ops.sqrt(second_moment) / ops.sqrt(bias_correction_2) + self.epsilon
        self.assign_sub(variable, learning_rate / bias_correction_1 * first_moment / denominator)

    def get_config(self):
        config = super().get_config()
        config.pop("amsgrad", None)
        config.update(weight_decay=self.decay_value, decoupled=self.decoupled)
        return config
