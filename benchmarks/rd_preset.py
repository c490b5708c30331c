"""`rd.py` with fields of the ``default`` preset replaced (``encoder.PRESETS``).

``--set NAME=VALUE`` (repeatable) replaces one field of the preset the run
uses (``--preset``, ``default`` if not given), for measuring a setting before
changing it: ``steps``, ``sample_fraction``, ``ste_fraction``, ``lr_scale``,
``runs``. Every other argument goes to ``rd.py``. The README's runs:

    python benchmarks/rd_preset.py --set ste_fraction=0.15 --codecs nncodec --budgets 16k \\
        --tag ste15-16k-kodak
    python benchmarks/rd_preset.py --set ste_fraction=0.04 --codecs nncodec --budgets 16k \\
        --tag ste04-16k-kodak
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rd  # noqa: E402


def patch(preset: str, settings: dict) -> None:
    """Replace the fields ``settings`` of ``encoder.PRESETS[preset]``."""
    rd.import_nncodec()
    from nncodec import encoder

    old = encoder.PRESETS[preset]
    fields = {f.name: f.type for f in dataclasses.fields(old)}
    values = {}
    for name, text in settings.items():
        if name not in fields:
            raise ValueError(f"the preset has no field {name!r}; fields: {', '.join(fields)}")
        values[name] = type(getattr(old, name))(text)
    encoder.PRESETS[preset] = dataclasses.replace(old, **values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a preset field and its value for this run")
    ap.add_argument("--preset", default=None)
    args, rest = ap.parse_known_args(argv)
    if args.preset is not None:
        rest += ["--preset", args.preset]
    settings = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set takes NAME=VALUE, got {item!r}")
        settings[name.strip()] = value.strip()
    try:
        patch(args.preset or "default", settings)
    except (KeyError, ValueError) as exc:
        ap.error(str(exc))
    return rd.main(rest)


if __name__ == "__main__":
    sys.exit(main())
