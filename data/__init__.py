"""Data: sources, the train/val split, batched augmentation, in-memory or streaming loaders.

``create_data`` turns a ``DataConfig`` into everything training needs; ``create_eval_loader``
rebuilds one split for evaluation from what a checkpoint recorded (``data/build.py``); where
the images come from is ``data/sources.py``.
"""

from data.build import DataBundle, Loader, channel_stats, create_data, create_eval_loader
from data.sources import DATA_ROOT_ENV, resolve_data_root, use_streaming
from data.split import check_same_data

__all__ = [
    "DATA_ROOT_ENV",
    "DataBundle",
    "Loader",
    "channel_stats",
    "check_same_data",
    "create_data",
    "create_eval_loader",
    "resolve_data_root",
    "use_streaming",
]
