"""Datasets: `metassl.data.sources.load_dataset` reads any of them as an `ArrayDataset`
(`metassl.data.arrays`), through one module per on-disk format; splits, augmentation and the
run directory's `data_info.json` build on that."""
