"""galleryrank: keep every hotel's photo gallery in its best order, from a Kafka stream of image events.

One installed package with three rooms, each a folder at the top of the repository:

- ``galleryrank.consumer`` (``consumer/``): the streaming service and the ``galleryrank`` command;
- ``galleryrank.models`` (``models/``): networks, weights, training, evaluation, CAM, export;
- ``galleryrank.ranking`` (``ranking/``): pure gallery ordering and its metrics.

``docs/architecture.md`` walks the data path and names the module that owns each step.
"""

__version__ = "0.2.0"
