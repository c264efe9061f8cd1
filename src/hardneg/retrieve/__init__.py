"""Retrievers that produce candidates: BM25, dense (FAISS) and hybrid."""

from hardneg.retrieve.base import Retriever
from hardneg.retrieve.bm25 import BM25Config, BM25Retriever
from hardneg.retrieve.search import IndexConfig

__all__ = ["BM25Config", "BM25Retriever", "IndexConfig", "Retriever"]
