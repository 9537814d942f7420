"""The end-to-end demo of airflow-rtml: a real-time ML chain on the embedded stack, with a known ground truth."""
