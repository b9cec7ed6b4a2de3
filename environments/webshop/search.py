"""Search over a catalog: BM25 in Tantivy over the spec's product document, built once per catalog and cached."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import ModuleType

from gymbox.tasks.cache import GameCache, source_digest
from gymbox.tasks.webshop import catalog as catalog_module
from gymbox.tasks.webshop.catalog import Catalog

TOP_K = 50  # the original keeps the top 50 results
MAX_QUERY = 500  # characters; shop queries are a few words
MAX_TERMS = 64
_WORD = re.compile(r"[^\W_]+")  # Tantivy's default tokenizer: runs of letters and digits, lower-cased
_LOCK = threading.Lock()
_ENGINES: dict[str, SearchEngine] = {}


class BadQuery(ValueError):
    """A query search cannot run; the message says why and what to send instead."""


def query_terms(query: str) -> list[str]:
    """The query's words, lower-cased, each once, in order: operators, quotes and field syntax are plain text here
    (the engine never parses the query), so nothing the agent types can make the engine fail."""
    if len(query) > MAX_QUERY:
        raise BadQuery(f"the query is {len(query):,} characters long; search takes a few words (at most "
                       f"{MAX_QUERY} characters), such as 'navy cotton shirt'.")
    terms = list(dict.fromkeys(t for t in _WORD.findall(query.lower()) if len(t.encode()) <= 40))
    if not terms:
        raise BadQuery("the query has no words to search for. Type a few words, such as 'navy cotton shirt'.")
    return terms[:MAX_TERMS]


class SearchEngine:
    """A Tantivy index of one catalog: one document per product (asin, and the text the spec defines)."""

    def __init__(self, folder: Path) -> None:
        import tantivy

        self.tantivy = tantivy
        self.index = tantivy.Index.open(str(folder))
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    @staticmethod
    def build(catalog: Catalog, folder: Path) -> None:
        """Write the index of `catalog` into `folder` (one writer thread, so the same catalog gives the same index)."""
        import tantivy

        builder = tantivy.SchemaBuilder()
        builder.add_text_field("asin", stored=True, tokenizer_name="raw")
        builder.add_text_field("text", stored=False)
        index = tantivy.Index(builder.build(), path=str(folder))
        writer = index.writer(heap_size=100_000_000, num_threads=1)
        for product in catalog.products:
            writer.add_document(tantivy.Document(asin=product.asin, text=product.document()))
        writer.commit()
        writer.wait_merging_threads()

    def search(self, query: str, top_k: int = TOP_K) -> list[str]:
        """The asins of the best `top_k` products for `query`, best first (BM25); `BadQuery` explains a bad query."""
        tantivy = self.tantivy
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "text", term))
                   for term in query_terms(query)]
        hits = self.searcher.search(tantivy.Query.boolean_query(clauses), top_k).hits
        return [self.searcher.doc(address)["asin"][0] for _, address in hits]


def engine_for(catalog: Catalog) -> SearchEngine:
    """The catalog's search engine: its index is built on first use into the cache (shared by processes), then opened
    once per process."""
    key = {**catalog.key, "index": source_digest(catalog_module, _this_module())}
    name = json.dumps(key, sort_keys=True)
    with _LOCK:
        if name not in _ENGINES:
            folder = GameCache("webshop-index").get(key, lambda path: SearchEngine.build(catalog, path))
            _ENGINES[name] = SearchEngine(folder)
        return _ENGINES[name]


def _this_module() -> ModuleType:
    import sys

    return sys.modules[__name__]
