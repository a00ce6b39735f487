"""Append the per-benchmark sections (benchmarks/sections/*.md) to RESULTS.md.

bench_extractor.py writes its section into RESULTS.md directly; the other
scripts write their own file under sections/ so that they can run in
parallel without overwriting each other. This script rebuilds RESULTS.md
from the extractor part plus every section file, in a fixed order.
"""

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["suite", "suite_decisions", "da_selection", "dann_recipe", "confirm_top_k", "fine_tuning", "forgetting", "lora", "few_shot", "selection", "adaptation"]
MARK = "<!-- sections below are copied from benchmarks/sections/ by assemble_results.py -->"


def main():
    results = HERE / "RESULTS.md"
    text = results.read_text()
    text = text.split(MARK)[0].rstrip() + "\n\n" + MARK + "\n"
    for name in ORDER:
        path = HERE / "sections" / f"{name}.md"
        if path.exists():
            text += "\n" + path.read_text().strip() + "\n"
        else:
            text += f"\n## {name.replace('_', ' ').title()}\n\nNot measured yet: `benchmarks/sections/{name}.md` is missing.\n"
    results.write_text(text)


if __name__ == "__main__":
    main()
