"""`galleryrank publish`: an existing catalogue of (hotel_id, image_id, url) rows -> image.upserted events."""
