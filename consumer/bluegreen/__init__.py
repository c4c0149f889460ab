"""Blue/green: replay into a namespace, namespaces, hand-over of the live consumer."""
