"""Model: the message-passing layers (:mod:`~ggik_core.model.layers`, one file each and a
registry), their fused CPU kernels (:mod:`~ggik_core.model.fused`), and the GGIK conditional VAE
(:mod:`~ggik_core.model.cvae`) with its typed :class:`~ggik_core.model.config.ModelConfig`."""
