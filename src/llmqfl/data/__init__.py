"""Data: sources (embedded, csv, online), the server's splits, client partitions, item encoders."""

from llmqfl.data.encoders import AngleEncoder, kmers, onehot
from llmqfl.data.labelled import LabelledData, balanced_subsample
from llmqfl.data.partition import (
    PARTITIONERS,
    build_partitions,
    partition_dirichlet,
    partition_iid,
    partition_indices,
    partition_quantity,
)
from llmqfl.data.preflight import check_config_data
from llmqfl.data.sources import load_source
from llmqfl.data.split import split_data, split_sizes

__all__ = [
    "PARTITIONERS",
    "AngleEncoder",
    "LabelledData",
    "balanced_subsample",
    "build_partitions",
    "check_config_data",
    "kmers",
    "load_source",
    "onehot",
    "partition_dirichlet",
    "partition_iid",
    "partition_indices",
    "partition_quantity",
    "split_data",
    "split_sizes",
]
