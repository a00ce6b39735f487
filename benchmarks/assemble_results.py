"""Rebuild RESULTS.md from the per-benchmark sections (benchmarks/sections/*.md).

Every script writes its own file under sections/ (so that scripts can run in
parallel without overwriting each other). RESULTS.md = its own introduction
(the text before the first ``## `` heading, kept as it is), the extractor's
section, then every section of ORDER, in that order.
"""

from pathlib import Path

HERE = Path(__file__).parent
FIRST = "extractor"
ORDER = ["fast_inference", "int8_recipes", "inference_extras", "image_preprocessing", "cache", "dask", "cli", "lazy_training", "suite", "suite_decisions", "da_selection", "dann_recipe", "confirm_top_k", "fine_tuning", "forgetting", "lora", "few_shot", "selection", "adaptation", "merging", "merging_soup_val", "continual", "federated"]
MARK = "<!-- sections below are copied from benchmarks/sections/ by assemble_results.py -->"


def section(name):
    path = HERE / "sections" / f"{name}.md"
    if path.exists():
        return path.read_text().strip() + "\n"
    return f"## {name.replace('_', ' ').title()}\n\nNot measured yet: `benchmarks/sections/{name}.md` is missing.\n"


def main():
    results = HERE / "RESULTS.md"
    intro = results.read_text().split(MARK)[0].split("\n## ", 1)[0].rstrip()
    text = intro + "\n\n" + section(FIRST) + "\n" + MARK + "\n"
    for name in ORDER:
        text += "\n" + section(name)
    results.write_text(text)


if __name__ == "__main__":
    main()
