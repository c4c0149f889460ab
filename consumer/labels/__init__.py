"""Learning from reviewers' labels (issue 24 b): read the label events, export training data,
find suspected label errors, promote a retrained model with evidence, and Label Studio I/O.

Reading only: the label events are written by the write API and applied by the scorer
(docs/labelling.md); this package reads them from ``labels_topic`` and never from the main topic.
"""
