"""The read API and the gallery page (`galleryrank serve`)."""
