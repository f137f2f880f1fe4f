"""Solve: from model samples to checked joint solutions.

``joints`` recovers joint angles in closed form from predicted points, ``refine`` runs batched
Levenberg–Marquardt on the full pose error inside the joint limits, ``solver`` ties sampling,
recovery, refinement and FK checks together for any robot, and ``metrics`` turns per-sample
errors into the evaluation statistics. ``rank`` orders solutions (near a configuration, limit
margin, manipulability), ``analytic`` lists closed-form 6R branches (eaik) and ``collision_free``
re-seeds until enough collision-free solutions.
"""
