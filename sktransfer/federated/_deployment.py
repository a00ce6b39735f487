"""The federated apps for Flower's deployment engine (SuperLink + SuperNodes as separate processes).

The same ``ClientApp`` and ``ServerApp`` as the simulation
(:mod:`sktransfer.federated._apps`); only where they find their inputs
differs. A Flower App (a directory with a ``pyproject.toml`` naming
``serverapp`` and ``clientapp`` below as its components) runs them:

- each SuperNode reads its own rows from the file named by its node config
  ``data-file`` (JSON ``{"X": [...], "y": [...]}``, labels encoded
  ``0..n_classes-1``), and its partition id from ``partition-id``
  (``flower-supernode --node-config "partition-id=0 data-file='...'"``);
- the ServerApp reads the settings (a :class:`~sktransfer.federated._apps.FederationSpec`
  as JSON) from the run config ``spec-file``, and writes the final global
  weights and the per-round metrics to ``result-file``
  (``.npz`` of the weights, plus ``result-file + ".json"`` for the metrics).

``write_app(directory, spec_file, result_file)`` writes such a Flower App.
"""

import json
import os

import numpy as np

from . import _apps


def _spec(context):
    with open(context.run_config["spec-file"], encoding="utf-8") as f:
        return _apps.FederationSpec.from_json(f.read())


def _partition(context):
    with open(context.node_config["data-file"], encoding="utf-8") as f:
        data = json.load(f)
    return data["X"], np.asarray(data["y"], dtype=np.int64)


def _write_result(out, context):
    path = context.run_config["result-file"]
    np.savez(path, **{f"a{i}": v for i, v in enumerate(out["arrays"].values())})
    meta = {
        "names": list(out["arrays"]),
        "train": {str(k): v for k, v in out["train"].items()},
        "evaluate": {str(k): v for k, v in out["evaluate"].items()},
        "grid_log": out["grid_log"],
    }
    with open(path + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, default=float)


clientapp = _apps.make_client_app(_spec, _partition)
serverapp = _apps.make_server_app(_spec, _write_result)


_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "sktransfer-federated-app"
version = "0.1.0"
description = "sktransfer's federated transfer apps (FederatedTransferClassifier) for Flower's deployment engine"
license = "BSD-3-Clause"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "sktransfer"

[tool.flwr.app.components]
serverapp = "sktransfer_federated_app:serverapp"
clientapp = "sktransfer_federated_app:clientapp"

[tool.flwr.app.config]
spec-file = {spec_file!r}
result-file = {result_file!r}
"""


def write_app(directory, spec_file, result_file):
    """Write a Flower App in ``directory`` that runs the apps above (``flwr run directory``)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "pyproject.toml"), "w", encoding="utf-8") as f:
        f.write(_PYPROJECT.replace("{spec_file!r}", json.dumps(str(spec_file))).replace(
            "{result_file!r}", json.dumps(str(result_file))))
    with open(os.path.join(directory, "sktransfer_federated_app.py"), "w", encoding="utf-8") as f:
        # Plain assignments: Flower checks the components by reading this file (AST), not by importing it.
        f.write("from sktransfer.federated import _deployment\n\n"
                "clientapp = _deployment.clientapp\nserverapp = _deployment.serverapp\n")
    return directory
