"""fastbp: fully-connected neural networks trained fast on multicore CPUs.

Forward pass, backpropagation and optimizer updates are loops compiled with numba over one
contiguous parameter buffer; `MLP` is the thin class around them.
"""
__version__ = "0.1.0"

from .callbacks import (Callback, EarlyStopping, History, LearningRateScheduler, ModelCheckpoint,
                        ReduceLROnPlateau)
from .errors import TrainingDiverged
from .io import load
from .model import MLP
from .optim import SGD, Adam, AdamW, Momentum, Nesterov, Optimizer
from .tables import TablePreprocessor
from .threads import get_num_threads, set_num_threads
from .warmup import compile_kernels

__all__ = ["MLP", "SGD", "Momentum", "Nesterov", "Adam", "AdamW", "Optimizer", "load",
           "set_num_threads", "get_num_threads", "Callback", "History", "EarlyStopping",
           "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau", "TrainingDiverged",
           "compile_kernels", "TablePreprocessor", "__version__"]
