"""fastbp's own exception types."""


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or inf; params were restored to the last finite epoch."""

    def __init__(self, message, epoch=None, step=None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
