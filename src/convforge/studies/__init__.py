"""The studies the reference reports publish, one module each; every study writes a table and a plot to a folder.

compare_solvers(source, epochs=5, sweep=3)     # solvers.py
lr_find(source) / suggest_lr(cfg) -> float    # lr_find.py
tune(source, space="space.yaml", trials=20)   # tune.py (optuna)
baselines(source, run=RUN_DIR)                # baselines.py (scikit-learn, scikit-image)
detect(images, crop_to=DIR)                   # faces.py (opencv-python-headless<5)
"""

from ._common import StudyResult

__all__ = ["StudyResult"]
