"""Incident post-mortem analysis suite.

Data flows one way: ``ingest`` -> ``store`` -> ``rollups`` -> ``detection`` ->
``correlation`` -> ``chain`` -> ``charts`` and ``report``. ``simulate`` writes
raw incident files (the same files ``ingest`` reads); ``lab`` captures them
from a real reproduction; ``mechanism`` is the connection-pool model that both
the simulator and the what-if replay run.
"""

__version__ = "0.1.0"
