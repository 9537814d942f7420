"""Spark job files shipped with the provider (submitted by path with ``spark-submit``, never imported)."""
