"""Measuring what transfer did to a model.

- forgetting: how much of the pretrained features survived fine-tuning
  (:func:`linear_cka`, :func:`forgetting_report`);
- bias: how a model's quality differs between groups of people, and how
  fine-tuning moved those differences (``group_report``, ``compare_transfer``).
"""

from ._forgetting import forgetting_report, linear_cka

__all__ = ["forgetting_report", "linear_cka"]
