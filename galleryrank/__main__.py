"""`python -m galleryrank ...` is the `galleryrank` command."""

from galleryrank.consumer.cli import main

main()
