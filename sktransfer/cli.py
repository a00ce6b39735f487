"""The ``sktransfer`` command.

One function per subcommand (``cache_info``, ``cache_prune``,
``cache_clear``); :func:`build_parser` wires them to argparse. Each returns
the process's exit status.

Examples
--------
From a shell::

    sktransfer cache info                      # size per backbone of the default cache
    sktransfer cache info --dir /shared/cache --json
    sktransfer cache prune --older-than 30d    # entries written more than 30 days ago
    sktransfer cache prune --backbone timm/tf_efficientnet_lite0
    sktransfer cache prune --max-size 20G --legacy
    sktransfer cache clear --dir /shared/cache
"""

import argparse
import json
import re
import sys

from . import _cache
from ._config import get_config

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
        print(f"compiled models (compiled/, not managed here): {_mib(info['compiled_bytes'])}")
    return 0


def cache_prune(args):
    """``sktransfer cache prune``: remove old entries, or a backbone's, or down to a size."""
    if args.older_than is None and args.backbone is None and args.max_size is None and not args.legacy:
        print("sktransfer cache prune: say what to remove: --older-than, --backbone, --max-size and/or --legacy",
              file=sys.stderr)
        return 2
    rep = _cache.prune_cache(
        _directory(args), older_than=args.older_than, backbone=args.backbone, max_bytes=args.max_size,
        legacy=args.legacy, grace=args.grace, dry_run=args.dry_run,
    )
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {rep['removed']:,} entries and {rep['legacy_removed']:,} files of the previous format, "
          f"{_mib(rep['freed_bytes'])}; {rep['rewritten']} segments rewritten, {rep['deleted']} deleted")
    if rep["skipped_active"]:
        print(f"{rep['skipped_active']} segments written to in the last {args.grace:g} s were left alone "
              "(a writer may be running; see --grace)")
    return 0


def cache_clear(args):
    """``sktransfer cache clear``: remove every embedding (compiled models are kept)."""
    rep = _cache.clear_cache(_directory(args), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {rep['files']:,} files, {_mib(rep['freed_bytes'])}")
    return 0


# ------------------------------------------------------------------ parser
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
                   help="leave segments written to in the last SECONDS alone (default 600)")
    q.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    q.set_defaults(func=cache_prune)

    q = csub.add_parser("clear", help="remove every embedding (compiled models are kept)")
    common(q)
    q.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    q.set_defaults(func=cache_clear)


def build_parser():
    """The ``sktransfer`` argument parser (one subparser per command)."""
    parser = argparse.ArgumentParser(prog="sktransfer", description="sktransfer command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
