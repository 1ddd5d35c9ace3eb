"""The engine: training (``train``), clip-level validation (``evaluate``), multi-view testing
(``multiview_test``), batch inference (``predict``), optimizers and schedules (``optim``), distributed helpers,
meters, the stats.jsonl log, prediction files (``results``) and ``run(cfg)``, the stage dispatcher.

Submodules are imported where used (``from video_iared.engine.train import train``) so that importing one
piece does not pull in the rest.
"""
