"""The SMSR network in PyTorch (converters only: the runtime never imports this)."""
from .checkpoint import (OFFICIAL_CHECKPOINTS, CheckpointError, download_checkpoint, load_smsr,
                         load_state_dict_file, sha256_of)
from .smsr import SMSR, ChannelSplit, SparseMaskBlock

__all__ = ["SMSR", "ChannelSplit", "SparseMaskBlock", "CheckpointError", "OFFICIAL_CHECKPOINTS",
           "download_checkpoint", "load_smsr", "load_state_dict_file", "sha256_of"]
