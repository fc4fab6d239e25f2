"""Real data in: data set readers, tokenizing and vocabulary, and the prepared HDF5 file the trainer reads.

A typical preparation (what ``rnncap prepare`` does, the feature extraction aside)::

    from rnncap.data import read_flickr8k, prepare_records, summary_line, create_store
    dataset = read_flickr8k("../shared/data/flickr8k", splits=("train", "dev"))
    prepared = prepare_records(dataset, min_count=5, max_length=16)   # vocabulary from the train split only
    print(summary_line(dataset, prepared))
    create_store("flickr8k.h5", dataset, *prepared, root=dataset.root, name=dataset.name)
    # ... features written through open_store("flickr8k.h5", writable=True) ...
    train = load_split("flickr8k.h5", "train")                          # rnncap.train.CaptionData

CS231n's ``coco_captioning`` folder already holds features and encoded captions: :func:`read_cs231n` returns
CaptionData directly.
"""

from rnncap.data.coco import read_coco
from rnncap.data.cs231n import CS231nData, read_cs231n
from rnncap.data.flickr8k import read_flickr8k
from rnncap.data.folder import read_folder
from rnncap.data.records import Dataset, ImageRecord, Prepared, prepare_records, summary_line
from rnncap.data.store import Store, StoreError, load_grid, load_references, load_split, open_split, open_store
from rnncap.data.store_create import create_store
from rnncap.data.stream import H5Rows
from rnncap.text import build_vocab, encode, has_words, tokenize

__all__ = [
    "CS231nData",
    "Dataset",
    "H5Rows",
    "ImageRecord",
    "Prepared",
    "Store",
    "StoreError",
    "build_vocab",
    "create_store",
    "encode",
    "has_words",
    "load_grid",
    "load_references",
    "load_split",
    "open_split",
    "open_store",
    "prepare_records",
    "read_coco",
    "read_cs231n",
    "read_flickr8k",
    "read_folder",
    "summary_line",
    "tokenize",
]
