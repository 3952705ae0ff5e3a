"""Data: readers for the real on-disk formats, image transforms, webdataset shards, the synthetic shapes world."""
