"""Stage `train`: the loop (:mod:`.loop`), its schedules, batches, checkpoints, precision and
process group, and the ``train`` and ``model`` params (:mod:`.params`)."""
