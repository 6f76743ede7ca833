"""One configuration schema for Python, YAML and the notebook cell."""

from jupyter_avml.config.config import AutoMLImageConfig, parse_tile_grid
from jupyter_avml.config.params import PARAMS, Param

__all__ = ["AutoMLImageConfig", "PARAMS", "Param", "parse_tile_grid"]
