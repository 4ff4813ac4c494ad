"""Data: raw text in, packed pre-training shards and task examples out.

- sources.py: reading a corpus (text, JSONL, parquet, CSV/TSV, `datasets` folders); tables.py: the table formats
- tokenizer.py: WordPiece training, loading and the held-out report; segment.py: word segmenters (jieba)
- corpus.py: tokenise, pack and shard a corpus (`electra data build`); loader.py: read shards back (rows, the held-out slice, token distributions)
- readers.py: task files (TSV, CSV, JSONL, CoNLL, SQuAD, tables) into examples.py's dataclasses
"""
