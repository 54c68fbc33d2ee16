"""Op-check cases, one module per op family (see ``minicnn/utils/opcheck.py``)."""
