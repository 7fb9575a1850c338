"""Datasets: on-disk readers (`metassl.data.sources`) and everything built on them."""
