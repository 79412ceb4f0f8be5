"""fastbp's own exception types."""


class TrainingDiverged(FloatingPointError):
    """Training diverged: a minibatch loss became NaN or inf, or an update left NaN or inf in the
    params or optimizer state. `fit` restored the params and optimizer state of the end of the
    last finite epoch before raising (`train_step`: it made no update).

    Attributes
    ----------
    epoch : int or None
        The epoch (0-based, as in ``History.epoch``) in which training diverged.
    step : int or None
        The minibatch of that epoch at (or before) which it was detected.
    """

    def __init__(self, message, epoch=None, step=None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
