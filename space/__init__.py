"""What an architecture is: the spec, the registries of choices, the builder and the presets."""
from . import (  # noqa: F401  (registers the choices)
                       activations,
                       attention,
                       blocks,
                       norms,
                       timm_model,
)
from .builder import NasNet, build_model, build_stage
from .errors import SpecError
from .layers import Layers, conv2d, conv_unit
from .presets import get_preset, list_presets, load_arch, nb201, preset_meta, wrn
from .registry import (
                       ACTIVATIONS,
                       ATTENTIONS,
                       BLOCKS,
                       NORMS,
                       OptionSpec,
                       Registry,
                       register_activation,
                       register_attention,
                       register_block,
                       register_norm,
)
from .spec import ORDERS, Arch, Head, Stage, Stem, from_dict, from_yaml, to_dict, to_yaml

__all__ = [
    "ACTIVATIONS", "ATTENTIONS", "BLOCKS", "NORMS", "ORDERS", "Arch", "Head", "Layers", "NasNet", "OptionSpec",
    "Registry", "SpecError", "Stage", "Stem", "build_model", "build_stage", "conv2d", "conv_unit", "from_dict",
    "from_yaml", "get_preset", "list_presets", "load_arch", "nb201", "preset_meta", "register_activation",
    "register_attention", "register_block", "register_norm", "to_dict", "to_yaml", "wrn",
]
