"""Real models held fixed: load them, name every activation site, read, patch or ablate it.

>>> from polysemy.models import load_model, list_sites, read_sites   # doctest: +SKIP
>>> loaded = load_model("minilm")                                    # doctest: +SKIP
>>> [s.name for s in list_sites(loaded) if s.name.endswith("layer.3.output")]  # doctest: +SKIP
['encoder.layer.3.output']
"""

from polysemy.models.loading import MINILM, LoadedModel, load_model, minilm_path
from polysemy.models.sites import (
    Site,
    SiteReader,
    ablate_site,
    get_site,
    list_sites,
    patch_site,
    read_sites,
)

__all__ = [
    "MINILM",
    "LoadedModel",
    "Site",
    "SiteReader",
    "ablate_site",
    "get_site",
    "list_sites",
    "load_model",
    "minilm_path",
    "patch_site",
    "read_sites",
]
