"""Hotel state in Redis: the key layout, records, the gallery document, fenced writes."""
