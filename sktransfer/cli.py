"""The ``sktransfer`` command.

One function per subcommand (``embed``, ``cache_info``, ``cache_prune``,
``cache_clear``); :func:`build_parser` wires them to argparse. Each returns
the process's exit status.

Examples
--------
From a shell::

    sktransfer embed products.parquet embeddings.parquet --column description
    sktransfer embed "data/*.csv" emb.parquet --column text --id-column sku --on-error skip
    sktransfer embed photos/ photos.parquet --backbone timm/tf_efficientnet_lite0 --workers 2
    sktransfer embed big.parquet out.parquet --column text --scheduler tcp://10.0.0.5:8786
    sktransfer cache info                      # size per backbone of the default cache
    sktransfer cache info --dir /shared/cache --json
    sktransfer cache prune --older-than 30d    # entries written more than 30 days ago
    sktransfer cache prune --backbone timm/tf_efficientnet_lite0
    sktransfer cache prune --max-size 20G --legacy
    sktransfer cache prune --compiled --older-than 60d   # entries written, and exported ONNX / OpenVINO models used, more than 60 days ago
    sktransfer cache clear --dir /shared/cache
"""

import argparse
import glob
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from . import _cache
from ._config import get_config
from ._utils import glibc

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text):
    """``"20G"``, ``"500MB"``, ``"1.5 GiB"``, ``"123"`` (bytes) → bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: use e.g. 500M, 20G or a number of bytes.")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_duration(text):
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"3600s"``, ``"7"`` (days) → seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use e.g. 30d, 12h, 90m or 2w.")
    return float(m.group(1)) * _SECONDS[m.group(2) or "d"]


def _mib(n):
    return f"{n / 2**20:,.1f} MiB"


def _directory(args):
    return args.dir if args.dir is not None else get_config()["cache_dir"]


# ------------------------------------------------------------- subcommands
def cache_info(args):
    """``sktransfer cache info``: entries and size per backbone."""
    info = _cache.cache_info(_directory(args))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"cache: {info['directory']}")
    print(f"entries: {info['entries']:,} in {info['segments']} segments ({info['files']} files, {_mib(info['bytes'])})")
    if info["namespaces"]:
        rows = [(ns["description"], f"{ns['entries']:,}", _mib(ns["bytes"]), ns["oldest"] or "", ns["newest"] or "",
                 ns["namespace"][:16]) for ns in info["namespaces"]]
        head = ("backbone", "entries", "size", "oldest", "newest", "namespace")
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        for r in [head] + rows:
            print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    if info["legacy_entries"]:
        print(f"previous format (one file per entry): {info['legacy_entries']:,} entries, {_mib(info['legacy_bytes'])}; "
              "still read, and copied as they are used; `sktransfer cache prune --legacy` removes them")
    if info["compiled_bytes"]:
        print(f"compiled models: {info['compiled_models']:,} in compiled/ ({_mib(info['compiled_bytes'])}); "
              "`sktransfer cache prune --compiled` removes them")
    return 0


def cache_prune(args):
    """``sktransfer cache prune``: remove old entries, or a backbone's, or down to a size."""
    if (args.older_than is None and args.backbone is None and args.max_size is None and not args.legacy
            and not args.compiled):
        print("sktransfer cache prune: say what to remove: --older-than, --backbone, --max-size, --legacy "
              "and/or --compiled", file=sys.stderr)
        return 2
    if args.compiled and args.backbone is not None and args.older_than is None and args.max_size is None:
        print("sktransfer cache prune: --backbone does not select compiled models (their files are named by a "
              "hash of the weights): with --compiled, give --older-than and/or --max-size, or --compiled alone "
              "for all of them", file=sys.stderr)
        return 2
    rep = _cache.prune_cache(
        _directory(args), older_than=args.older_than, backbone=args.backbone, max_bytes=args.max_size,
        legacy=args.legacy, grace=args.grace, dry_run=args.dry_run, compiled=args.compiled,
    )
    verb = "would remove" if args.dry_run else "removed"
    if not args.compiled or args.older_than is not None or args.backbone is not None or args.max_size is not None \
            or args.legacy:
        print(f"{verb} {rep['removed']:,} entries and {rep['legacy_removed']:,} files of the previous format, "
              f"{_mib(rep['freed_bytes'])}; {rep['rewritten']} segments rewritten, {rep['deleted']} deleted")
    if rep["skipped_active"]:
        print(f"{rep['skipped_active']} segments written to in the last {args.grace:g} s were left alone "
              "(a writer may be running; see --grace)")
    if args.compiled:
        stray = rep["compiled_stray_removed"]
        print(f"{verb} {rep['compiled_removed']:,} compiled models"
              + (f" and {stray:,} stray temporary files" if stray else "")
              + f", {_mib(rep['compiled_freed_bytes'])}")
        if rep["compiled_skipped_active"]:
            print(f"{rep['compiled_skipped_active']} compiled models used in the last {args.grace:g} s were left "
                  "alone (see --grace)")
    return 0


def cache_clear(args):
    """``sktransfer cache clear``: remove every embedding (compiled models too with ``--compiled``)."""
    rep = _cache.clear_cache(_directory(args), dry_run=args.dry_run, compiled=args.compiled)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {rep['files']:,} files, {_mib(rep['freed_bytes'])}")
    return 0


# ------------------------------------------------------------------- embed
_TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".gz": "csv"}
_ROW_OF_X = re.compile(r"^\s*Row (\d+) of X(?::\s*|\s+)")
_ANY_ROW_OF_X = re.compile(r"\bRow (\d+) of X\b")
EMBEDDING = "embedding"  # the output column of the vectors


class EmbedError(Exception):
    """A problem ``sktransfer embed`` reports in one line and exits 1 on (bad input, bad row)."""


def _kind(path):
    name = path.lower()
    if name.endswith((".csv.gz", ".tsv.gz")):
        return "csv"
    from ._inputs import _IMAGE_SUFFIXES

    suffix = os.path.splitext(name)[1]
    if suffix in _IMAGE_SUFFIXES:
        return "image"
    return _TABLE_SUFFIXES.get(suffix) if suffix != ".gz" else None


def input_files(spec):
    """``(kind, files)`` of INPUT: a file, a folder (its tables, or its images) or a glob pattern.

    ``kind`` is ``"parquet"``, ``"csv"`` or ``"image"``; the files are sorted
    (the order of the rows in the output).
    """
    if any(c in spec for c in "*?["):
        files = sorted(f for f in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(f))
    elif os.path.isdir(spec):
        files = sorted(str(p) for p in Path(spec).rglob("*") if p.is_file() and not p.name.startswith("."))
    elif os.path.isfile(spec):
        files = [spec]
    else:
        raise EmbedError(f"INPUT {spec!r}: no such file or folder, and not a glob pattern that matches files.")
    kinds = {}
    for f in files:
        k = _kind(f)
        if k is not None:
            kinds.setdefault(k, []).append(f)
    tables = [k for k in ("parquet", "csv") if k in kinds]
    if len(tables) > 1:
        raise EmbedError(
            f"INPUT {spec!r} holds both Parquet ({len(kinds['parquet'])}) and CSV ({len(kinds['csv'])}) files; "
            "give one kind, e.g. with a glob pattern such as 'data/*.parquet'."
        )
    if tables:
        return tables[0], kinds[tables[0]]
    if "image" in kinds:
        return "image", kinds["image"]
    raise EmbedError(
        f"INPUT {spec!r}: no Parquet (.parquet, .pq), CSV (.csv, .tsv, .csv.gz) or image files "
        f"{'match' if any(c in spec for c in '*?[') else 'found'}."
    )


def _columns_of(kind, path):
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    import pandas as pd

    return list(pd.read_csv(path, nrows=0, sep=None if path.lower().endswith((".tsv", ".tsv.gz")) else ",",
                            engine="python").columns)


def _check_columns(kind, files, wanted):
    """Each table file has every column in ``wanted``: else an error naming the file and its columns."""
    for f in files:
        try:
            have = _columns_of(kind, f)
        except Exception as exc:  # noqa: BLE001 - unreadable: say which file
            raise EmbedError(f"{f}: cannot read it as {kind.upper()} ({type(exc).__name__}: {exc}).") from None
        for col in wanted:
            if col not in have:
                shown = ", ".join(repr(c) for c in have[:20]) + (", ..." if len(have) > 20 else "")
                raise EmbedError(f"{f} has no column {col!r}; its columns are {shown}. Choose one with "
                                 f"{'--column' if col == wanted[0] else '--id-column'}.")


def _is_missing(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    import pandas as pd

    return value is pd.NA or value is pd.NaT


def check_row(value, modality, root=None):
    """``(item, reason)``: the input to embed for one row, or None and why the row can't be embedded.

    Text: missing (null/NaN), not a string, or empty / blank. Image paths:
    missing, not a string, no such file (relative paths are read from
    ``root``, default the current folder), or a file whose header is not an
    image's (``_inputs.check_image_headers``: nothing is decoded).
    """
    if _is_missing(value):
        return None, "the value is missing (null)"
    if isinstance(value, np.str_):
        value = str(value)
    if modality == "text":
        if not isinstance(value, str):
            return None, f"not text but a {type(value).__name__} ({value!r:.40})"
        if not value.strip():
            return None, "the text is empty" if not value else "the text is blank (only whitespace)"
        return value, None
    if not isinstance(value, str):
        return None, f"not an image path but a {type(value).__name__} ({value!r:.40})"
    path = os.path.expanduser(value)
    if root is not None and not os.path.isabs(path):
        path = os.path.join(root, path)
    if not os.path.isfile(path):
        return None, f"image file not found: {path!r}"
    from ._inputs import check_image_headers

    try:
        check_image_headers([path])
    except ValueError as exc:
        return None, _ROW_OF_X.sub("", str(exc))
    return path, None


def _describe(row, ident, id_name, file=None):
    where = f"row {row}" + (f" ({id_name}={ident!r})" if id_name != "row" else "")
    return where + (f" of {file}" if file else "")


def embed_frame(frame, ext, start, *, column, id_column=None, on_error="raise", root=None, file=None):
    """Embed ``frame[column]`` (a pandas chunk of the input); rows that fail are reported, not embedded.

    Parameters
    ----------
    frame : pandas.DataFrame
        A chunk of the input: ``column``, and ``id_column`` when given.
    ext : PretrainedFeatureExtractor
        Fitted.
    start : int
        The input row number of the chunk's first row (rows are numbered
        from 0 across all the input files, in order).
    column, id_column : str
        What to embed, and what names each row (None: its row number).
    on_error : {"raise", "skip"}
        ``"raise"``: a row that can't be embedded raises an ``EmbedError``
        naming it. ``"skip"``: its embedding is missing (None) and its
        ``error`` says why.
    root : str or None
        Folder of relative image paths.
    file : str or None
        The input file, named in errors.

    Returns
    -------
    out : pandas.DataFrame
        Columns ``id`` (named ``id_column``, else ``"row"``), ``embedding``
        (a float array per row, or None), ``error`` (None, or why) and
        ``_row`` (the row number).
    """
    import pandas as pd

    id_name = id_column or "row"
    n = len(frame)
    rows = np.arange(start, start + n, dtype=np.int64)
    ids = frame[id_column].tolist() if id_column else rows  # Python scalars: named as the user wrote them
    items, reasons = [None] * n, [None] * n
    for i, value in enumerate(frame[column].tolist()):
        items[i], reasons[i] = check_row(value, ext.modality_, root)
        if reasons[i] is not None and on_error == "raise":
            raise EmbedError(f"{_describe(rows[i], ids[i], id_name, file)} can't be embedded: {reasons[i]}. "
                             "Fix or drop it, or pass --on-error skip to list such rows and go on.")
    good = [i for i in range(n) if reasons[i] is None]
    emb = np.empty(n, dtype=object)
    while good:
        try:
            Z = np.asarray(ext.transform([items[i] for i in good]))
            break
        except (ValueError, OSError) as exc:  # the extractor names the row: "Row k of X ..."
            m = _ANY_ROW_OF_X.search(str(exc))
            if m is None or int(m.group(1)) >= len(good):
                raise
            i = good[int(m.group(1))]
            message = str(exc)  # "Row k of X: why" -> "why"; "... Row k of X ..." -> "... the row ..."
            reason = _ROW_OF_X.sub("", message) if _ROW_OF_X.match(message) else _ANY_ROW_OF_X.sub(
                "the row", message, count=1)
            if on_error == "raise":
                raise EmbedError(f"{_describe(rows[i], ids[i], id_name, file)} can't be embedded: {reason}") from exc
            reasons[i] = reason
            good.remove(i)  # embed the others again (the rows already embedded come from the cache)
    else:
        Z = None
    for k, i in enumerate(good):
        emb[i] = Z[k]
    return pd.DataFrame({id_name: ids, EMBEDDING: emb, "error": pd.Series(reasons, dtype=object), "_row": rows})


def _release_chunk(ext):
    """Let go of what embedding a chunk left behind, so that memory stays one chunk whatever the input.

    Two things grow with the rows otherwise (``benchmarks/bench_cli.py``,
    MiniLM on short texts: about 14 KB per row over 10,000 rows, and
    growing):

    - the extractor keeps the rows it computes in an in-process layer (up to
      512 MiB, for clones that embed the same rows again). Once a chunk is
      written out its rows are not needed again (they are in the cache on
      disk): its copies are dropped;
    - glibc's heap. Batches of texts padded to different lengths allocate
      tensors of ever new sizes; with glibc's adaptive mmap threshold they
      come from the heap, whose freed holes are kept, not returned, so the
      heap only grows. ``malloc_trim(0)`` hands the free pages back after
      each chunk (a few ms against seconds of embedding). Nothing is done
      outside glibc.
    """
    directory = ext._cache_directory()
    if directory is not None:
        directory = os.path.abspath(os.path.expanduser(os.fsdecode(directory)))  # as EmbeddingCache keys it
        _cache.forget_rows(directory)
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _embed_partition(frame, ext, offsets, partition_info=None, **kw):
    """``embed_frame`` on a dask worker: the backbone loaded once per process, no progress bars."""
    from . import _dask

    number = partition_info["number"] if partition_info else 0
    ext = _dask._loaded(ext)
    try:
        return embed_frame(frame, ext, offsets[number], **kw)
    finally:
        _release_chunk(ext)  # a worker embeds many partitions: memory stays one partition


def _read_chunks(kind, files, columns, chunk_rows, text_column):
    """``(frame, file)`` chunks of at most ``chunk_rows`` rows, in input order, read as they are needed."""
    import pandas as pd

    if kind == "image":
        for s in range(0, len(files), chunk_rows):
            yield pd.DataFrame({"path": files[s : s + chunk_rows]}), None
        return
    for f in files:
        if kind == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetFile(f) as pf:
                for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
                    yield batch.to_pandas(), f
        else:
            sep = "\t" if f.lower().endswith((".tsv", ".tsv.gz")) else ","
            with pd.read_csv(f, usecols=columns, dtype={text_column: object}, sep=sep,
                             chunksize=chunk_rows, keep_default_na=False, na_values=[""]) as reader:
                for part in reader:
                    yield part, f


def _n_rows(kind, files):
    """Rows of the input when cheap to know (Parquet footers, image count), else None (CSV)."""
    if kind == "image":
        return len(files)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return None


def _to_arrow(frame, dim, id_name):
    import pyarrow as pa

    out = frame[[id_name, EMBEDDING]]
    table = pa.Table.from_pandas(out, preserve_index=False)
    i = table.schema.get_field_index(EMBEDDING)
    return table.set_column(i, pa.field(EMBEDDING, pa.list_(pa.float32(), dim)),
                            pa.array(out[EMBEDDING].tolist(), type=pa.list_(pa.float32(), dim)))


def _errors_path(args):
    if args.errors is not None:
        return args.errors
    out = str(args.output).rstrip("/")
    base = out[: -len(".parquet")] if out.endswith(".parquet") else out
    return base + ".errors.csv"


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def _stats_sum(per_worker):
    total = {}
    for stats in per_worker:
        for k, v in stats.items():
            total[k] = total.get(k, 0) + v
    return total


def _local_embed(args, ext, kind, files, columns, root):
    """Chunk by chunk in this process: memory is one chunk, whatever the size of the input."""
    import pyarrow.parquet as pq

    total = _n_rows(kind, files)
    tmp = f"{args.output}.partial-{os.getpid()}"
    writer, schema, start, errors = None, None, 0, []
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="Rows", unit="row", file=sys.stderr, dynamic_ncols=True)
    try:
        for frame, f in _read_chunks(kind, files, columns, args.chunk_size, args.column):
            out = embed_frame(frame, ext, start, column=args.column, id_column=args.id_column,
                              on_error=args.on_error, root=root, file=f)
            _release_chunk(ext)  # the chunk's rows are in the cache and in `out`: memory stays one chunk
            bad = out[out["error"].notna()]
            errors.extend(zip(bad["_row"].tolist(), bad.iloc[:, 0].tolist(), bad["error"].tolist(), [f] * len(bad)))
            table = _to_arrow(out, ext.embedding_dim_, args.id_column or "row")
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(schema))
            start += len(out)
            if bar is not None:
                bar.update(len(out))
        if writer is None:
            raise EmbedError(f"INPUT {args.input!r} has no rows.")
        writer.close()
        writer = None
        _remove(args.output)
        os.replace(tmp, args.output)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return start, errors


def _dask_embed(args, ext, kind, files, columns, root, client):
    """On a Dask cluster: one task per partition, each worker loads the backbone once; Parquet parts."""
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow as pa

    from . import _dask

    if kind == "parquet":
        ddf = dd.read_parquet(files, columns=columns)
    elif kind == "csv":
        ddf = dd.read_csv(files, usecols=columns, dtype={args.column: object}, keep_default_na=False,
                          na_values=[""], blocksize="16MiB")
    else:
        ddf = dd.from_pandas(pd.DataFrame({"path": files}), chunksize=args.chunk_size, sort=False)
    lengths = ddf.map_partitions(len).compute()  # a read, nothing embedded: row numbers of each partition
    offsets = [0, *np.cumsum(lengths).tolist()]
    if offsets[-1] == 0:
        raise EmbedError(f"INPUT {args.input!r} has no rows.")
    id_name = args.id_column or "row"
    id_dtype = ddf._meta[args.id_column].dtype if args.id_column else np.dtype(np.int64)
    meta = pd.DataFrame({id_name: pd.Series([], dtype=id_dtype), EMBEDDING: pd.Series([], dtype=object),
                         "error": pd.Series([], dtype=object), "_row": pd.Series([], dtype=np.int64)})
    parts = ddf.map_partitions(
        _embed_partition, _dask._extractor_arg(ext), offsets, column=args.column, id_column=args.id_column,
        on_error=args.on_error, root=root, meta=meta, enforce_metadata=False,
    )
    tmp = f"{args.output}.partial-{os.getpid()}"
    id_field = pa.Schema.from_pandas(meta[[id_name]], preserve_index=False).field(0)
    if pa.types.is_null(id_field.type):  # an object column: its values are strings, read as text
        id_field = pa.field(id_name, pa.large_string())
    schema = pa.schema([id_field, pa.field(EMBEDDING, pa.list_(pa.float32(), ext.embedding_dim_))])
    write = parts[[id_name, EMBEDDING]].to_parquet(tmp, write_index=False, compute=False, schema=schema)
    errs = parts[parts["error"].notnull()][["_row", id_name, "error"]]
    try:
        futures = client.compute([write, errs])
        if not args.quiet:
            from distributed import progress

            progress(futures)
            print(file=sys.stderr)
        _, bad = client.gather(futures)
        _remove(args.output)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            _remove(tmp)
    errors = list(zip(bad["_row"].tolist(), bad[id_name].tolist(), bad["error"].tolist(), [None] * len(bad)))
    return offsets[-1], errors


def _write_errors(path, errors, id_name):
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["row", id_name if id_name != "row" else "id", "file", "reason"])
        for row, ident, reason, f in errors:
            w.writerow([row, ident, f or "", reason])


def embed(args):
    """``sktransfer embed``: embed a column of Parquet/CSV files (or a folder of images) into Parquet."""
    try:
        return _embed(args)
    except EmbedError as exc:
        print(f"sktransfer embed: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, ImportError) as exc:  # a backbone that can't load, a file that can't be read
        print(f"sktransfer embed: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.no_cache:
            print("\nsktransfer embed: interrupted (--no-cache: nothing was kept).", file=sys.stderr)
        else:
            print("\nsktransfer embed: interrupted. The rows embedded so far are in the cache: run the same "
                  "command again to go on from there.", file=sys.stderr)
        return 130


def _embed(args):
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise EmbedError('writing Parquet needs pyarrow: pip install pyarrow (or "sktransfer[dask]", '
                         "which brings it)") from None
    kind, files = input_files(args.input)
    if kind == "image":
        if args.column not in (None, "path"):
            raise EmbedError(f"INPUT {args.input!r} is a folder of images: there is no column {args.column!r} "
                             "(each row is an image file; its id is its path). Leave out --column.")
        args.column = "path"
        args.id_column = args.id_column or "path"
        if args.id_column != "path":
            raise EmbedError("--id-column: a folder of images has no columns; each row's id is its path.")
    else:
        if args.column is None:
            raise EmbedError(f"--column: say which column of {args.input!r} to embed, e.g. --column text.")
        _check_columns(kind, files, [args.column] + ([args.id_column] if args.id_column else []))
    if args.id_column == EMBEDDING:
        raise EmbedError(f"--id-column {EMBEDDING!r}: that is the name of the output's embedding column.")
    if os.path.lexists(args.output) and not args.overwrite:
        raise EmbedError(f"OUTPUT {args.output!r} exists; pass --overwrite to replace it.")
    columns = list(dict.fromkeys([args.column] + ([args.id_column] if args.id_column else [])))
    cache = None if args.no_cache else (args.cache_dir or True)
    root = args.image_root

    client = cluster = None
    if args.scheduler or args.workers:
        from . import _dask

        _dask._require("distributed")
        _dask._require("dask.dataframe")
        if args.scheduler:
            try:
                client = _dask.connect(args.scheduler, timeout=args.connect_timeout)
            except ConnectionError as exc:
                raise EmbedError(str(exc)) from None
        else:
            cluster, client = _dask.local_cluster(args.workers)
    from . import PretrainedFeatureExtractor

    try:
        ext = PretrainedFeatureExtractor(args.backbone, batch_size=args.batch_size, normalize=args.normalize,
                                         cache=cache, verbose=not args.quiet and client is None)
        ext.fit(None)
        if kind == "image" and ext.modality_ != "image":
            raise EmbedError(f"{args.backbone!r} embeds {ext.modality_}, but INPUT is a folder of images: choose an "
                             "image backbone, e.g. --backbone timm/tf_efficientnet_lite0.")
        local = f"{args.workers} local worker{'s' if args.workers != 1 else ''}"
        where = f"a Dask cluster ({args.scheduler or local})" if client else "this process"
        print(f"sktransfer embed: {_n_rows(kind, files) or 'the'} rows of {len(files)} {kind} file(s), column "
              f"{args.column!r}, with {args.backbone} ({ext.embedding_dim_} dimensions) in {where}; cache: "
              f"{ext._cache_directory() or 'none'}", file=sys.stderr)
        before = _cache.embedding_stats() if client is None else _stats_sum(client.run(_cache.embedding_stats).values())
        if client is None:
            n, errors = _local_embed(args, ext, kind, files, columns, root)
        else:
            with client.as_current():  # the partition lengths and the progress bar use it too
                n, errors = _dask_embed(args, ext, kind, files, columns, root, client)
        after = _cache.embedding_stats() if client is None else _stats_sum(client.run(_cache.embedding_stats).values())
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    computed = after.get("computed", 0) - before.get("computed", 0)
    hits = after.get("cache_hits", 0) - before.get("cache_hits", 0)
    errors_path = _errors_path(args)
    stale = os.path.exists(errors_path)
    if errors:
        _write_errors(errors_path, errors, args.id_column or "row")
    elif stale:
        os.remove(errors_path)  # from an earlier run: no longer true
    print(f"wrote {n:,} rows to {args.output}: {n - len(errors):,} embedded ({computed:,} computed, {hits:,} from "
          f"the cache){f', {len(errors):,} could not be: listed in {errors_path}' if errors else ''}")
    if errors:
        for row, ident, reason, f in errors[:5]:
            print(f"  {_describe(row, ident, args.id_column or 'row', f)}: {reason}", file=sys.stderr)
        if len(errors) > 5:
            print(f"  ... and {len(errors) - 5:,} more in {errors_path}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ parser
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number.")
    return value


_EMBED_HELP = """\
Embed one column of Parquet or CSV files (text, or paths of image files), or
every image of a folder, with a pretrained backbone, and write the
embeddings to Parquet: one row per input row, in input order, with the row's
id (--id-column, else its row number) and an `embedding` column (a
fixed-size list of float32).

Every embedding goes to the embedding cache as soon as its batch is done, so
a run that was interrupted (Ctrl-C, a killed job, a lost machine) resumes
when the same command is run again: rows already in the cache are read, not
recomputed. OUTPUT is written under a temporary name and renamed when
complete: it exists only when every row is in it.

Without --workers or --scheduler the rows are embedded in this process,
--chunk-size rows at a time (memory does not grow with the input). With
them, on Dask: one task per partition of the input (a Parquet file or row
group, 16 MiB of CSV, --chunk-size images), each worker loading the
backbone once; OUTPUT is then a folder of Parquet files (pandas, pyarrow,
DuckDB and Spark read it as one table). Needs `pip install "sktransfer[dask]"`.
"""

_EMBED_EXAMPLES = """\
examples:
  sktransfer embed products.parquet products-emb.parquet --column description --id-column sku
  sktransfer embed "reviews/*.csv" reviews-emb.parquet --column text --on-error skip
  sktransfer embed photos/ photos-emb.parquet --backbone timm/tf_efficientnet_lite0 --workers 2
  sktransfer embed big/ big-emb.parquet --column text --scheduler tcp://10.0.0.5:8786 --cache-dir /shared/cache

Read the result with pandas:  df = pd.read_parquet("products-emb.parquet")
                              X = np.stack(df["embedding"])       # (n_rows, dim) float32
"""


def _add_embed(sub):
    p = sub.add_parser("embed", help="embed a column of Parquet/CSV files, or a folder of images, into Parquet",
                       description=_EMBED_HELP, epilog=_EMBED_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="a Parquet or CSV file, a folder of them (or of images), "
                   "or a glob pattern in quotes ('data/*.parquet')")
    p.add_argument("output", metavar="OUTPUT", help="the Parquet file to write (a folder of parts on Dask)")
    p.add_argument("--column", "-c", default=None, help="the column to embed: texts, or paths of image files "
                   "(not needed for a folder of images)")
    p.add_argument("--backbone", "-b", default="sentence-transformers/all-MiniLM-L6-v2",
                   help="the model, as PretrainedFeatureExtractor takes it (default: %(default)s)")
    p.add_argument("--id-column", default=None, metavar="COLUMN",
                   help="a column copied to the output to name each row (default: the row number, from 0 across "
                        "all input files in order, in a column `row`; for images: the file's path)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a row that can't be embedded (missing or empty text, a missing or unreadable image "
                        "file): `raise` stops, naming the row; `skip` writes its embedding as missing (null) "
                        "and lists it, with the reason, in the errors file (default: %(default)s)")
    p.add_argument("--errors", default=None, metavar="PATH",
                   help="where --on-error skip lists the rows it skipped, as CSV (default: OUTPUT with "
                        "`.errors.csv` in place of `.parquet`)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="embed on a local Dask cluster of N single-thread worker processes (about one per core)")
    where.add_argument("--scheduler", "--dask-scheduler", default=None, metavar="ADDRESS",
                       help="embed on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); its workers "
                            "must read INPUT, the cache directory and the backbone's weights")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up reaching --scheduler after SECONDS (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                   help="rows per forward pass of the model (default: the extractor's, by modality and device)")
    p.add_argument("--chunk-size", type=_positive_int, default=1000, metavar="N",
                   help="rows read and embedded at a time in this process, and images per Dask partition "
                        "(default: %(default)s)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="the embedding cache that makes a rerun resume (default: the configured cache_dir, "
                            "$SKTRANSFER_CACHE_DIR or ~/.cache/sktransfer); on Dask, a folder every worker can write")
    cache.add_argument("--no-cache", action="store_true", help="no cache: a rerun embeds everything again")
    p.add_argument("--image-root", default=None, metavar="DIR",
                   help="the folder relative image paths of --column are read from (default: the current folder)")
    p.add_argument("--normalize", action="store_true", help="scale each embedding to unit length")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=embed)


def _add_cache(sub):
    p = sub.add_parser("cache", help="inspect and clean the embedding cache",
                       description="Inspect and clean the embedding cache.")
    csub = p.add_subparsers(dest="cache_command", metavar="{info,prune,clear}", required=True)

    def common(q):
        q.add_argument("--dir", default=None, help="cache directory (default: the configured cache_dir, "
                       "$SKTRANSFER_CACHE_DIR or ~/.cache/sktransfer)")

    q = csub.add_parser("info", help="entries and size per backbone")
    common(q)
    q.add_argument("--json", action="store_true", help="print the figures as JSON")
    q.set_defaults(func=cache_info)

    q = csub.add_parser("prune", help="remove old entries",
                        description="Remove entries; the segments that held them are rewritten.")
    common(q)
    q.add_argument("--older-than", type=parse_duration, default=None, metavar="AGE",
                   help="entries written more than AGE ago (30d, 12h, 90m; a bare number is days)")
    q.add_argument("--backbone", default=None, help="entries of this backbone (as given to the extractor) "
                   "or of this namespace (a prefix of at least 16 hex digits, from `cache info`)")
    q.add_argument("--max-size", type=parse_size, default=None, metavar="SIZE",
                   help="then the oldest entries until the store is at most SIZE (500M, 20G)")
    q.add_argument("--legacy", action="store_true", help="the entries of the previous one-file-per-entry format")
    q.add_argument("--grace", type=float, default=600.0, metavar="SECONDS",
                   help="leave segments written to (and compiled models used) in the last SECONDS alone "
                        "(default 600)")
    q.add_argument("--compiled", action="store_true",
                   help="also the compiled models (exported ONNX / OpenVINO files under compiled/): with "
                        "--older-than, those not used for AGE; with --max-size, then the least recently used until "
                        "compiled/ is at most SIZE (a budget of its own); alone, all of them. A removed model is "
                        "built again when needed, but an estimator fitted with a calibrated int8 model must be "
                        "fitted again")
    q.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    q.set_defaults(func=cache_prune)

    q = csub.add_parser("clear", help="remove every embedding (compiled models are kept unless --compiled)")
    common(q)
    q.add_argument("--compiled", action="store_true", help="also remove the compiled models (compiled/)")
    q.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    q.set_defaults(func=cache_clear)


def build_parser():
    """The ``sktransfer`` argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(prog="sktransfer", description="sktransfer command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_embed(sub)
    _add_cache(sub)
    return parser


def main(argv=None):
    """Run ``sktransfer`` with ``argv`` (default: the command line); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
