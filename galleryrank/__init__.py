"""galleryrank: keep every hotel's photo gallery in its best order, from a Kafka stream of image events.

One installed package with three rooms, each a folder at the top of the repository:

- ``galleryrank.consumer`` (``consumer/``): the streaming service and the ``galleryrank`` command;
- ``galleryrank.models`` (``models/``): networks, weights, training, evaluation, CAM, export;
- ``galleryrank.ranking`` (``ranking/``): pure gallery ordering and its metrics.

``docs/architecture.md`` walks the data path and names the module that owns each step.
"""

__version__ = "0.2.0"

# A source checkout on PYTHONPATH without an install (bench/gpu.sh on a machine without the
# project's venv): the rooms are folders beside this one, so look for subpackages there too.
# Installed (wheel or editable), consumer/ sits inside this package or the install maps it.
import os as _os  # noqa: E402

_here = _os.path.dirname(__file__)
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "consumer")) and _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")):
    __path__.append(_checkout)
