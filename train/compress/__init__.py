"""Compression of a retrained network: Taylor channel pruning (Molchanov et al. 2019), LRPET low-rank
training (Guo et al. 2023) and a gradient-redundancy pruning budget; ``nas prune`` runs them."""
from .config import CompressConfig
from .lrpet import (
                    LrpetCallback,
                    export_lowrank,
                    lowrank_arch,
                    lowrank_cost,
                    lrpet_project,
                    plan_ranks,
                    project_weight,
                    ranks_for_target,
                    redundancy_ranks,
)
from .pipeline import compress, load_weights
from .redundancy import GradientRedundancy, LayerRedundancy, allocate, energy_rank, group_redundancy, redundancy_widths
from .structure import ChannelGroup, ConvInfo, Structure, analyse
from .surgery import apply_pruning, pruned_arch, pruned_state_dict
from .taylor import TaylorPruner, taylor_scores

__all__ = [
    "ChannelGroup", "CompressConfig", "ConvInfo", "GradientRedundancy", "LayerRedundancy", "LrpetCallback", "Structure",
    "TaylorPruner", "allocate", "analyse", "apply_pruning", "compress", "energy_rank", "export_lowrank",
    "group_redundancy", "load_weights", "lowrank_arch", "lowrank_cost", "lrpet_project", "plan_ranks",
    "project_weight", "pruned_arch", "pruned_state_dict", "ranks_for_target", "redundancy_ranks",
    "redundancy_widths", "taylor_scores",
]
