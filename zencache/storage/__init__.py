"""The storage layer: bytes on disk and records about them; no pipeline knowledge.

    store.py        content-addressed objects under objects/ (put, get, verify)
    index.py        the LMDB index: records in, records out
    records.py      the frozen records the index keeps, and their encodings
    lease_slots.py  who is executing which key now (kernel locks, nothing written)
    cache.py        a cache folder: where it is, and the stores in it

Imports only errors and hashing from outside this folder.
"""
