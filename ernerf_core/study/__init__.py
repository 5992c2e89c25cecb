"""The refinement study: variants of the head's training config compared on equal budgets.

Each variant (named overrides of ``train.head``, applied to ``train.lips`` where the key
exists there, and ``grids`` for all three tri-plane grids) trains with several seeds on the
same subject folder, step budget and val split (``workflow/rules/study.smk``). The stages:

- ``head.train_study_head``: one head run (:class:`ernerf_core.train.head.HeadRun`), plus its
  learning curve (val PSNR vs steps) and the error map's per-pixel sampling density
- ``metrics.measure_study_run``: the trained head on the val split: PSNR, SSIM, LPIPS, LMD,
  the lip-sync numbers of ``render_test``, training time, steps/s, model size
- ``table.write_study``: ``table.csv``/``.md``/``.html`` (mean and spread over seeds, best per
  metric, which differences exceed the seed-to-seed spread) and the plots (``plots``)
"""
