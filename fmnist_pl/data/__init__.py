"""The data: IDX files (finding, reading, errors) and the DataModule that batches the reference split.

``fmnist_pl.data.idx`` needs no torch to look for files; ``fmnist_pl.data.datamodule`` holds
the Lightning side. Nothing is imported here so that the CLI's checks stay fast.
"""
