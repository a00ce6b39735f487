"""Federated transfer learning on Flower: clients fine-tune together, their rows stay where they are.

:class:`FederatedTransferClassifier` runs Flower's ``ClientApp`` /
``ServerApp`` (``sktransfer.federated._apps``) in Flower's simulation
runtime; the same apps run on Flower's deployment engine
(``sktransfer.federated._deployment``). Importing this package does not
import Flower: ``fit`` does.
"""

from ._estimator import FederatedOneClassWarning, FederatedTransferClassifier

__all__ = ["FederatedOneClassWarning", "FederatedTransferClassifier"]
