"""Gradient reversal layer (DANN)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="midg")
class GradientReversal(keras.layers.Layer):
    """Identity forward, `-lambda * upstream` backward (docs/design.md §4.4).

    Placed between the experts and the domain discriminator: the
    discriminator learns to tell domains apart while the experts receive the
    reversed gradient and learn features that hide the domain (paper §3.3).
    `lambda` lives in the non-trainable float32 weight `grl_lambda`, which a
    callback sets each step with `layer.grl_lambda.assign(value)` (DANN
    schedule). Built on `keras.ops.custom_gradient` for every backend: the
    forward returns `ops.copy(x)` (an identity op can be optimized away
    together with its custom gradient), the gradient function accepts both
    the `grad(upstream)` and the `grad(*args, upstream=...)` forms, and
    lambda is cast to the upstream dtype (float16 under mixed precision).

    Args:
        initial_lambda: starting value of `grl_lambda`. The weight is created
            in `__init__` (it has no shape to infer), so a schedule callback
            can set it before the first call.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        x: any floating tensor.

    Returns:
        `x`, unchanged.

    Example:
    >>> grl = GradientReversal(initial_lambda=0.5)
    >>> grl(np.ones((2, 3))).shape
    (2, 3)

    References:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR
        2016; MIDG paper §3.3.
    """

    def __init__(self, initial_lambda=1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_lambda = initial_lambda
        self.supports_masking = True
        self.grl_lambda = self.add_weight(
            name="grl_lambda",
            shape=(),
            initializer=keras.initializers.Constant(initial_lambda),
            dtype="float32",
            trainable=False,
            autocast=False,
        )

    def call(self, x):
        reversal_scale = ops.convert_to_tensor(self.grl_lambda)

        @ops.custom_gradient
        def reverse_gradient(inputs):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return ops.negative(ops.cast(reversal_scale, upstream.dtype) * upstream)

            return ops.copy(inputs), grad

        return reverse_gradient(x)

    def get_config(self):
        config = super().get_config()
        config.update({"initial_lambda": self.initial_lambda})
        return config
