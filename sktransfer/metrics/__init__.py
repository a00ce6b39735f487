"""Measuring what transfer did to a model.

- forgetting: how much of the pretrained features survived fine-tuning
  (:func:`linear_cka`, :func:`forgetting_report`);
- bias: how a model's quality differs between groups of people, and how
  fine-tuning moved those differences (:func:`group_report`,
  :func:`compare_transfer`, built on fairlearn's ``MetricFrame``).
"""

from ._fairness import GroupReport, TransferComparison, compare_transfer, group_report
from ._forgetting import forgetting_report, linear_cka

__all__ = [
    "GroupReport",
    "TransferComparison",
    "compare_transfer",
    "forgetting_report",
    "group_report",
    "linear_cka",
]
