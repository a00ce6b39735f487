"""The rows a trainer reads, as a torch ``Dataset``: validated inputs, prepared one batch at a time.

A trainer never holds its training set in the model's input form (all
images decoded into one ``N×3×S×S`` array, all texts padded to
``max_length``): :class:`RowDataset` keeps the rows as
:meth:`Backbone.check_inputs <sktransfer.backbones.Backbone.check_inputs>`
gave them (texts; image paths, PIL images or arrays) with their targets, and
:meth:`RowDataset.collate` prepares one batch with the backbone's own
``module_inputs``: images decoded, resized and cropped to uint8, texts
tokenized and padded to the longest text of the batch (dynamic padding). A
``DataLoader`` with ``num_workers > 0`` runs that in its worker processes
while the model trains on the batch before. Memory is a few batches of
inputs, flat in the number of rows.

skorch takes the dataset as ``X`` (its ``ValidSplit`` splits it with ``y``,
stratified, into ``torch.utils.data.Subset`` views) and the collate function
as ``iterator_train__collate_fn`` / ``iterator_valid__collate_fn``
(:func:`sktransfer._trainer.make_net`). Every pass over the training rows
outside skorch's loop (the probe of ``head_init``, WiSE-FT's BatchNorm
recalibration) reads them through :meth:`RowDataset.batches`, in order.
Augmentation stays on the batch tensors, inside the
:class:`~sktransfer._transfer_module.TransferModule`, in training mode only.
"""

import numpy as np
import torch


class RowDataset(torch.utils.data.Dataset):
    """Validated input rows and their targets; batches are prepared by :meth:`collate`.

    An item of the dataset is its position (an ``int``): a ``DataLoader``
    gathers positions, and :meth:`collate` turns them into one batch, so
    nothing but the rows themselves is ever stored.

    Parameters
    ----------
    backbone : Backbone
        Prepares a batch (``module_inputs``); its body is not used.
    items : list
        The rows, as ``backbone.check_inputs`` returns them.
    y : array-like or None
        Targets, one per row of ``items`` (class codes, or standardised
        regression targets), or None (inputs only).
    max_length, image_size : int or None
        The estimator's preprocessing parameters (None: the model's).
    rows : array-like of int or None
        The rows of ``items`` this dataset covers, in order (None: all).
        Errors name the row of ``items`` (as in "Row 12 of X").
    """

    def __init__(self, backbone, items, y=None, *, max_length=None, image_size=None, rows=None):
        self.backbone = backbone
        self.items = items
        self.y = None if y is None else np.asarray(y)
        self.max_length = max_length
        self.image_size = image_size
        self.rows = np.arange(len(items), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, position):
        return int(position)

    def inputs(self, positions):
        """Keyword inputs of a ``TransferModule`` for the rows at ``positions``: one batch of tensors."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return self.backbone.module_inputs(self.items, rows, self.max_length, self.image_size)

    def targets(self, positions=None):
        """The targets of the rows at ``positions`` (None: every row), a numpy array."""
        rows = self.rows if positions is None else self.rows[np.asarray(positions, dtype=np.int64)]
        return self.y[rows]

    def collate(self, positions):
        """One batch ``(inputs, targets)`` as skorch's loaders hand it to ``train_step``.

        The ``collate_fn`` of the training and validation loaders; with
        ``num_workers > 0`` it runs in the loader's worker processes.
        """
        X = self.inputs(positions)
        return X, (None if self.y is None else torch.as_tensor(self.targets(positions)))

    def subset(self, positions):
        """A dataset of the rows at ``positions`` (sharing the items and targets, copying nothing)."""
        return RowDataset(
            self.backbone, self.items, self.y, max_length=self.max_length, image_size=self.image_size,
            rows=self.rows[np.asarray(positions, dtype=np.int64)],
        )

    def batches(self, batch_size=32, *, bounds=None, num_workers=0):
        """Inputs of consecutive batches of the rows, in order: a generator of keyword-input dicts.

        For the passes over the rows outside training (frozen features,
        BatchNorm recalibration). ``bounds``: the ``(start, end)`` positions
        of each batch (default: ``batch_size`` rows each, the last one
        shorter). With ``num_workers > 0`` the batches are prepared in a
        ``DataLoader``'s worker processes.
        """
        n = len(self)
        if bounds is None:
            bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
        batches = [list(range(s, e)) for s, e in bounds]
        if not num_workers:
            for positions in batches:
                yield self.inputs(positions)
            return
        # A generator of its own: the loader draws its workers' base seed from
        # it, which would otherwise come from torch's global generator (the
        # fit's random stream: init, dropout, augmentation).
        loader = torch.utils.data.DataLoader(
            self, batch_sampler=batches, collate_fn=self.inputs, num_workers=int(num_workers),
            generator=torch.Generator(),
        )
        yield from loader

