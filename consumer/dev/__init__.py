"""Demo and embedded services (Tansu, Redis, sample photos). Never imported by production code."""
