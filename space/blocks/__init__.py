"""Block choices: one module per block family; importing this package registers them all."""
from .._autoload import import_submodules

import_submodules(__name__, __path__)
