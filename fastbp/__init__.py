"""fastbp: fully-connected neural networks trained fast on multicore CPUs.

Forward pass, backpropagation and optimizer updates are loops compiled with numba over one
contiguous parameter buffer; `MLP` is the thin class around them.
"""
from ._version import __version__

from .callbacks import (Callback, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint,
                        ReduceLROnPlateau)
from .errors import TrainingDiverged
from . import metrics
from .loggers import CSVLogger, TensorBoard
from .model import MLP, load
from .optim import LAMB, SGD, Adagrad, Adam, AdamW, Lion, Momentum, Nesterov, Optimizer, RMSprop
from . import schedules
from .tables import TablePreprocessor
from .threads import get_num_threads, set_num_threads
from .warmup import compile_kernels

__all__ = ["MLP", "SGD", "Momentum", "Nesterov", "Adam", "AdamW", "RMSprop", "Adagrad", "Lion", "LAMB",
           "Optimizer", "schedules", "load",
           "set_num_threads", "get_num_threads", "Callback", "History", "EarlyStopping",
           "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau", "TrainingDiverged",
           "compile_kernels", "CSVLogger", "TensorBoard", "metrics", "TablePreprocessor", "__version__"]
