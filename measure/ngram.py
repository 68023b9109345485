"""Interpolated modified Kneser-Ney token n-gram: the baseline of `edgetype eval ksr`.

EVALUATION.md asks for a word n-gram baseline trained on the model's training text with the same
prefix-filtered suggestions. To keep the comparison fair it sees exactly what the transformer
sees (runtime/tokenizer.py): lowercased words (maximal runs of `[A-Za-z0-9']`), single
punctuation characters and "\\n" (a line break: paragraphs are separated by one), and words seen
fewer than `min_count` times become `<unk>`. Suggestions are lowercase vocabulary words; casing
is applied afterwards with the same rule as the model (`runtime.tokenizer.apply_casing` with the
most frequent mid-sentence form, stored here as `casing`; `suggest_cased`).

Model (Chen & Goodman 1999, "interpolated modified Kneser-Ney"), order N <= 5:
    P_n(w | h) = max(c_n(h w) - D_n(c_n(h w)), 0) / c_n(h .) + gamma_n(h) * P_{n-1}(w | h')
    gamma_n(h) = (D_n1 * N1(h .) + D_n2 * N2(h .) + D_n3 * N3+(h .)) / c_n(h .)
    P_0(w) = 1 / V
where h' drops the oldest token of h, c_N is the raw count at the highest order and c_n (n < N)
the continuation count N1+(. h w) (distinct left neighbours), D_n1..3 from the count-of-counts
of c_n (D_k = k - (k + 1) Y n_{k+1} / n_k, Y = n_1 / (n_1 + 2 n_2)), and a context h never seen
at order n passes its whole mass down (gamma = 1).

Storage: every n-gram level keeps its unique n-grams as sorted int64 keys
`prefix_id * V + token` (prefix_id = the row of the (n-1)-gram in the level below), so a context
is found by one `searchsorted` per level and the followers of a context are one contiguous slice.
Files are `.npz` (no pickle). numpy + stdlib only.

Suggestions: for a context, the words seen after any of its suffixes get exact probabilities and
are sorted once (cached per context); every other word has probability Gamma * P_1(w), so it
ranks by the global unigram order. A typed prefix is an alphabetical range of the vocabulary,
so filtering is one vectorised range test per keystroke.
"""
from __future__ import annotations

import bisect
import gzip
import hashlib
import io
import json
import math
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from runtime.errors import UserError
from runtime.tokenizer import WORD, split_pieces

FORMAT = "edgetype-kn-ngram"
FORMAT_VERSION = 1
UNK = "<unk>"
NL = "\n"
MAX_ORDER = 5
DEFAULT_ORDER = 5  # best on valid (docs/corpus.md): ppl 160.4 vs 162.3, KSR 29.81% vs 29.79% at 4
_SENTENCE_END = {".", "!", "?", NL}


def text_tokens(text: str) -> Iterator[tuple[str, bool]]:
    """(token, is_word) of a text: lowercased words, punctuation characters, "\\n" for line breaks.

    The same pieces as the transformer's tokenizer (runtime.tokenizer.split_pieces).
    """
    for piece, is_word in split_pieces(text):
        yield (NL, False) if piece == "\n" else (piece, is_word)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified-KN discounts (D1, D2, D3+) from the count-of-counts of `counts` (float64 (3,))."""
    n = [int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4)]
    if min(n) == 0:  # tiny corpora: the estimate is undefined, fall back to absolute discounting
        y = n[0] / (n[0] + 2 * n[1]) if n[0] + n[1] else 0.5
        return np.clip(np.array([y, 2 * y, 3 * y], dtype=np.float64), 0.1, np.array([1.0, 2.0, 3.0]))
    y = n[0] / (n[0] + 2 * n[1])
    d = np.array([1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]])
    return np.clip(d, 0.0, np.array([1.0, 2.0, 3.0]))


class NgramModel:
    """Interpolated modified Kneser-Ney over lowercased tokens; see the module docstring."""

    def __init__(self, vocab: list[str], casing: dict[str, str], levels: list[dict], meta: dict):
        self.vocab = list(vocab)  # (V,) id -> token; vocab[0] = "<unk>", vocab[1] = "\n"
        self.casing = dict(casing)  # lowercase word -> usual surface form, where they differ
        self.order = len(levels)
        self.meta = dict(meta)
        V = len(self.vocab)
        self.V = V
        self.ids = {t: i for i, t in enumerate(self.vocab)}
        # levels[n-1] describes n-grams:
        #   keys (G_n,) int64 sorted: prefix_id * V + token (prefix_id = row in level n-1; 0 for n=1)
        #   count (G_n,) float64: c_n (raw at the top order, continuation count below)
        #   discount (3,) float64: D1, D2, D3+
        #   ctx_total (G_{n-1},) float64: c_n(h .) per context row of level n-1 (n >= 2)
        #   ctx_gamma (G_{n-1},) float64: gamma_n(h) (1.0 where the context has no followers)
        self.levels = levels
        uni = levels[0]
        p_uni = np.full(V, uni["ctx_gamma"][0] / V, dtype=np.float64)  # (V,) P_1(w)
        tokens = (uni["keys"] % V).astype(np.int64)
        p_uni[tokens] += np.maximum(uni["count"] - self._discount_of(uni["discount"], uni["count"]),
                                    0.0) / uni["ctx_total"][0]
        self.p_unigram = p_uni
        # ids after the first two are in alphabetical order (train() sorts them), so the words
        # starting with a typed prefix are one contiguous id range
        if self.vocab[:2] != [UNK, NL] or any(a >= b for a, b in zip(self.vocab[2:], self.vocab[3:])):
            raise ValueError("n-gram vocabulary must be [<unk>, \\n] + sorted unique tokens")
        self._sorted_tail = self.vocab[2:]  # (V-2,) for bisect
        self.is_word = np.array([bool(WORD.fullmatch(t)) for t in self.vocab], dtype=bool)  # (V,)
        word_ids = np.flatnonzero(self.is_word)
        # word ids by descending unigram probability (ties: alphabetical) for the backoff part
        self.unigram_order = word_ids[np.lexsort((word_ids, -p_uni[word_ids]))]  # (W,)
        self._in_seen = np.zeros(V, dtype=bool)  # (V,) scratch: words with exact probs in a context
        self._context_cache: OrderedDict = OrderedDict()  # context ids -> (ids, probs, Gamma)
        self._prefix_cache: OrderedDict = OrderedDict()  # prefix -> unigram_order in its range

    # -- training ----------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], order: int = DEFAULT_ORDER, min_count: int = 2,
              max_vocab: int | None = None, discounts: list[list[float]] | None = None,
              log=None) -> "NgramModel":
        """Count n-grams of `texts` (any iterable of strings: lines, paragraphs, documents).

        Texts are concatenated into one token stream; a text that does not end in a line break
        gets one, and consecutive line breaks count as one (as in the tokenizer). `discounts`
        (order x 3) overrides the estimated D1, D2, D3+ per level (tests).
        """
        if not 1 <= order <= MAX_ORDER:
            raise UserError(f"n-gram order {order}: must be 1..{MAX_ORDER} (--ngram-order)")
        stream: list[str] = [NL]
        counts: Counter[str] = Counter()
        forms: Counter[tuple[str, str]] = Counter()
        sentence_start = True
        for text in texts:
            for piece, is_word in text_tokens(text if text.endswith("\n") else text + "\n"):
                if is_word:
                    low = piece.lower()
                    counts[low] += 1
                    if not sentence_start:
                        forms[(low, piece)] += 1
                    stream.append(low)
                    sentence_start = False
                else:
                    if piece == NL and stream[-1] == NL:
                        continue
                    if piece != NL:
                        counts[piece] += 1
                    stream.append(piece)
                    sentence_start = sentence_start or piece in _SENTENCE_END
        chosen = [t for t, c in counts.most_common() if c >= min_count]
        if max_vocab is not None:
            chosen = chosen[:max(0, max_vocab - 2)]
        vocab = [UNK, NL] + sorted(chosen)
        ids = {t: i for i, t in enumerate(vocab)}
        best_form: dict[str, tuple[int, str]] = {}
        for (low, form), n in forms.items():
            if low in ids and n > best_form.get(low, (0, ""))[0]:
                best_form[low] = (n, form)
        casing = {low: form for low, (_, form) in best_form.items() if form != low}
        token_ids = np.fromiter((ids.get(t, 0) for t in stream), dtype=np.int64, count=len(stream))
        del stream
        if log:
            log.write(f"n-gram: {len(token_ids)} tokens, vocabulary {len(vocab)}\n")
        levels = cls._count_levels(token_ids, len(vocab), order, discounts)
        meta = {"tokens": int(len(token_ids)), "min_count": min_count, "max_vocab": max_vocab}
        return cls(vocab, casing, levels, meta)

    @staticmethod
    def _discount_of(d: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.where(c >= 3, d[2], np.where(c >= 2, d[1], np.where(c >= 1, d[0], 0.0)))

    @classmethod
    def _count_levels(cls, token_ids: np.ndarray, V: int, order: int,
                      discounts: list[list[float]] | None) -> list[dict]:
        T = len(token_ids)
        rows = []  # rows[n-1]: (T-n+1,) row of the n-gram starting at each position
        keys_per_level, raw_counts = [], []
        prefix_rows = np.zeros(T, dtype=np.int64)
        for n in range(1, order + 1):
            positions = T - n + 1
            keys = prefix_rows[:positions] * V + token_ids[n - 1:]
            unique_keys, inverse, count = np.unique(keys, return_inverse=True, return_counts=True)
            keys_per_level.append(unique_keys)
            raw_counts.append(count.astype(np.float64))
            rows.append(inverse.astype(np.int64))
            prefix_rows = rows[-1]
        levels = []
        for n in range(1, order + 1):
            keys = keys_per_level[n - 1]
            if n == order:
                count = raw_counts[n - 1]
            else:
                # continuation count: distinct left neighbours = number of unique (n+1)-grams
                # whose suffix is this n-gram; the (n+1)-gram at position i has suffix row
                # rows[n-1][i+1]
                upper_rows = rows[n]  # (T-n,) row of the (n+1)-gram at each position
                first = np.unique(upper_rows, return_index=True)[1]
                suffix = rows[n - 1][first + 1]
                count = np.bincount(suffix, minlength=len(keys)).astype(np.float64)
                # an n-gram seen only at the very start has no left neighbour: keep its raw count
                count = np.where(count == 0, raw_counts[n - 1], count)
            d = (np.asarray(discounts[n - 1], dtype=np.float64) if discounts is not None
                 else _discounts(count))
            context_rows = keys // V
            n_contexts = 1 if n == 1 else len(keys_per_level[n - 2])
            ctx_total = np.bincount(context_rows, weights=count, minlength=n_contexts)
            mass = np.bincount(context_rows, weights=cls._discount_of(d, count), minlength=n_contexts)
            ctx_gamma = np.ones(n_contexts, dtype=np.float64)
            seen = ctx_total > 0
            ctx_gamma[seen] = mass[seen] / ctx_total[seen]
            levels.append({"keys": keys, "count": count, "discount": d,
                           "ctx_total": ctx_total, "ctx_gamma": ctx_gamma})
        return levels

    # -- queries ---------------------------------------------------------------------------
    def _context_rows(self, context: list[int]) -> list[int]:
        """rows[j] = row of the context's last j tokens in level j (rows[0] = 0; -1 = unseen)."""
        rows = [0]
        for j in range(1, min(self.order - 1, len(context)) + 1):
            row = 0
            for depth, token in enumerate(context[len(context) - j:], start=1):
                keys = self.levels[depth - 1]["keys"]
                key = row * self.V + token
                at = int(np.searchsorted(keys, key))
                if at >= len(keys) or keys[at] != key:
                    return rows + [-1] * (min(self.order - 1, len(context)) - j + 1)
                row = at
            rows.append(row)
        return rows

    def _history(self, context: list[int]) -> list[int]:
        """The last order-1 ids of a paragraph-start-padded context."""
        if self.order == 1:
            return []
        return ([1] + list(context))[-(self.order - 1):]

    def _followers(self, n: int, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, counts) of the n-grams whose (n-1)-gram context is `row` of level n-1."""
        level = self.levels[n - 1]
        keys = level["keys"]
        start, end = np.searchsorted(keys, [row * self.V, (row + 1) * self.V])
        return keys[start:end] % self.V, level["count"][start:end]

    def _prepare(self, context: list[int]):
        """(ids seen after the context at some order >= 2, sorted by id; their probs; Gamma).

        Gamma is the product of the gammas of the context's seen suffixes: every token not in
        the first array has probability Gamma * P_1(token). Cached per context.
        """
        history = self._history(context)
        key = tuple(history)
        cached = self._context_cache.get(key)
        if cached is not None:
            self._context_cache.move_to_end(key)
            return cached
        rows = self._context_rows(history)
        parts = []
        for n in range(2, self.order + 1):
            row = rows[n - 1] if n - 1 < len(rows) else -1
            if row >= 0 and self.levels[n - 1]["ctx_total"][row] > 0:
                parts.append((n, row) + self._followers(n, row))
        if parts:
            cand = np.unique(np.concatenate([p[2] for p in parts]))
        else:
            cand = np.zeros(0, dtype=np.int64)
        prob = self.p_unigram[cand]
        gamma_total = 1.0
        for n, row, tokens, count in parts:  # lowest order first: P_n = disc_n + gamma_n P_{n-1}
            level = self.levels[n - 1]
            gamma = float(level["ctx_gamma"][row])
            prob *= gamma
            gamma_total *= gamma
            discounted = np.maximum(count - self._discount_of(level["discount"], count), 0.0)
            prob[np.searchsorted(cand, tokens)] += discounted / level["ctx_total"][row]
        result = (cand, prob, gamma_total)
        self._context_cache[key] = result
        if len(self._context_cache) > 64:
            self._context_cache.popitem(last=False)
        return result

    def _prob_id(self, history: list[int], token: int) -> float:
        """P(token | history) by direct lookups (no caching, no sorting): for perplexity."""
        history = self._history(history)
        rows = self._context_rows(history)
        p = float(self.p_unigram[token])
        for n in range(2, self.order + 1):
            row = rows[n - 1] if n - 1 < len(rows) else -1
            if row < 0:
                break
            level = self.levels[n - 1]
            total = level["ctx_total"][row]
            if total == 0:
                break
            keys = level["keys"]
            key = row * self.V + token
            at = int(np.searchsorted(keys, key))
            disc = 0.0
            if at < len(keys) and keys[at] == key:
                c = level["count"][at]
                d = level["discount"][2 if c >= 3 else 1 if c >= 2 else 0]
                disc = max(c - d, 0.0) / total
            p = disc + level["ctx_gamma"][row] * p
        return p

    def token_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens given as text (words lowercased; unknown -> <unk> = 0)."""
        return [self.ids.get(t.lower() if WORD.fullmatch(t) else t, 0) for t in tokens]

    def prob(self, context: list[str], token: str) -> float:
        """P(token | context) (tokens as text; unknown ones are <unk>)."""
        return self._prob_id(self.token_ids(context), self.token_ids([token])[0])

    def distribution(self, context: list[str]) -> np.ndarray:
        """(V,) float64 P(. | context) over the whole vocabulary (sums to 1)."""
        cand, prob, gamma_total = self._prepare(self.token_ids(context))
        dist = gamma_total * self.p_unigram
        dist[cand] = prob
        return dist

    def _prefix_range(self, prefix: str) -> tuple[int, int]:
        """[lo, hi) of the ids of tokens starting with `prefix` (a non-empty lowercase prefix)."""
        lo = bisect.bisect_left(self._sorted_tail, prefix)
        hi = bisect.bisect_left(self._sorted_tail, prefix + "\x7f", lo=lo)
        return lo + 2, hi + 2

    def _unigram_pool(self, prefix: str) -> np.ndarray:
        """Word ids starting with `prefix`, by descending P_1 (cached per prefix)."""
        if not prefix:
            return self.unigram_order
        found = self._prefix_cache.get(prefix)
        if found is None:
            lo, hi = self._prefix_range(prefix)
            pool = self.unigram_order
            found = pool[(pool >= lo) & (pool < hi)]
            self._prefix_cache[prefix] = found
            if len(self._prefix_cache) > 4096:
                self._prefix_cache.popitem(last=False)
        else:
            self._prefix_cache.move_to_end(prefix)
        return found

    def suggest(self, context_words: list[str], prefix: str = "", k: int = 3) -> list[tuple[str, float]]:
        """Top-k vocabulary WORDS starting with `prefix` (lowercase), with P(word | context).

        `context_words`: the preceding tokens, oldest first (words, punctuation, "\n"; any case).
        An empty context means the start of a paragraph. Ties break alphabetically.
        """
        prefix = prefix.lower()
        if k <= 0 or (prefix and not WORD.fullmatch(prefix)):
            return []
        cand, prob, gamma_total = self._prepare(self.token_ids(context_words))
        if prefix:
            lo, hi = self._prefix_range(prefix)
            if lo >= hi:
                return []
            start, end = np.searchsorted(cand, [lo, hi])
            seen_ids, seen_prob = cand[start:end], prob[start:end]
        else:
            words = self.is_word[cand]
            seen_ids, seen_prob = cand[words], prob[words]
        if len(seen_ids) > k:
            top = np.argpartition(-seen_prob, k - 1)[:k]
            seen_ids, seen_prob = seen_ids[top], seen_prob[top]
        result = list(zip(seen_ids.tolist(), seen_prob.tolist()))
        # words never seen after this context: Gamma * P_1(w), in unigram order
        pool = self._unigram_pool(prefix)
        self._in_seen[cand] = True
        try:
            head = pool[:len(cand) + k] if len(pool) > len(cand) + k else pool
            extra = head[~self._in_seen[head]][:k]
        finally:
            self._in_seen[cand] = False
        result.extend((int(t), float(gamma_total * self.p_unigram[t])) for t in extra)
        result.sort(key=lambda item: (-item[1], item[0]))
        return [(self.vocab[t], p) for t, p in result[:k]]

    def suggest_cased(self, context_words: list[str], typed_prefix: str, sentence_start: bool,
                      k: int = 3) -> list[str]:
        """Suggestions cased like the model's (runtime.tokenizer.apply_casing)."""
        from runtime.suggestion_rule import pick
        from runtime.tokenizer import apply_casing

        return pick((apply_casing(word, typed_prefix, sentence_start, self.casing.get(word))
                     for word, _ in self.suggest(context_words, typed_prefix.lower(), k + 3)), typed_prefix, k)

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a compressed .npz (arrays + a JSON header; no pickle) at exactly `path`."""
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "order": self.order,
                  "vocab": self.vocab, "casing": self.casing, "meta": self.meta}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for n, level in enumerate(self.levels, start=1):
            for name, value in level.items():
                arrays[f"l{n}_{name}"] = value
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "NgramModel":
        with np.load(Path(path), allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format") != FORMAT:
                raise ValueError(f"{path}: not an {FORMAT} file")
            if header.get("format_version", 0) > FORMAT_VERSION:
                raise ValueError(f"{path}: n-gram format {header['format_version']} is newer "
                                 f"than this edgetype ({FORMAT_VERSION})")
            levels = []
            for n in range(1, header["order"] + 1):
                levels.append({name: data[f"l{n}_{name}"] for name in
                               ("keys", "count", "discount", "ctx_total", "ctx_gamma")})
        return cls(header["vocab"], header["casing"], levels, header.get("meta", {}))


# -- corpus helpers ------------------------------------------------------------------------------

def iter_corpus_paragraphs(path: str | Path) -> Iterator[str]:
    """Paragraphs of a corpus split (`*.txt.gz` or plain text; blank lines separate them)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        current: list[str] = []
        for line in handle:
            if line.strip():
                current.append(line.strip())
            elif current:
                yield " ".join(current)
                current = []
        if current:
            yield " ".join(current)


def cache_path(train_path: str | Path, order: int, min_count: int = 2) -> Path:
    """~/.cache/edgetype/ngram/<sha256 of the training file + order + min_count>.npz"""
    digest = hashlib.sha256()
    with open(train_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(f"|order={order}|min_count={min_count}|v{FORMAT_VERSION}".encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgetype" / "ngram"
    return root / f"{digest.hexdigest()[:20]}.npz"


def load_or_train(train_path: str | Path, order: int = DEFAULT_ORDER, min_count: int = 2, log=sys.stderr) -> NgramModel:
    """The model for a training file, from the cache when present (trained and cached otherwise)."""
    path = cache_path(train_path, order, min_count)
    if path.exists():
        try:
            return NgramModel.load(path)
        except (OSError, ValueError, KeyError) as error:
            log.write(f"n-gram: cache {path} unreadable ({error}); retraining\n")
    log.write(f"n-gram: training order {order} on {train_path} (cache {path})\n")
    model = NgramModel.train(iter_corpus_paragraphs(train_path), order, min_count, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


def perplexity(model: NgramModel, paragraphs: Iterable[str]) -> dict:
    """Per-token perplexity over paragraphs (each followed by "\\n"), and over word tokens only.

    Every token is scored, <unk> included (its rate is reported: compare perplexities only
    between models with the same vocabulary)."""
    log_total, n_total, unk_total = 0.0, 0, 0
    word_log, word_n = 0.0, 0
    history: list[int] = []
    keep = max(model.order - 1, 0)
    for paragraph in paragraphs:
        for piece, is_word in text_tokens(paragraph.strip() + "\n"):
            tid = model.ids.get(piece.lower() if is_word else piece, 0)
            lp = math.log(model._prob_id(history, tid))
            log_total += lp
            n_total += 1
            unk_total += tid == 0
            if is_word:
                word_log += lp
                word_n += 1
            history = (history + [tid])[-keep:] if keep else []
    return {"tokens": n_total, "perplexity": math.exp(-log_total / max(n_total, 1)),
            "word_tokens": word_n, "word_perplexity": math.exp(-word_log / max(word_n, 1)),
            "unk_rate": unk_total / max(n_total, 1)}
